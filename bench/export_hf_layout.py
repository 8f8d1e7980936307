"""The LLaMA text decoder of an emu2 package in the layout transformers.js loads (a Hugging Face ONNX folder), for
`npm run bench`'s transformers.js peer: the package's embed_tokens, decoder and lm_head graphs joined into one
onnx/model.onnx (input_ids, attention_mask, position_ids, past_key_values.* -> logits, present.*), with the
config.json that names it a llama model. Same weights, same operators: only the graph boundaries go, and the
presents transformers.js feeds back are made as Hugging Face's LLaMA makes them, each past concatenated with the
decoder's new rows (new_key_values: an emu2 decoder gives only those, its cache appends them itself).

    /usr/bin/python3 bench/export_hf_layout.py fixtures/models/emu2-tiny /tmp/emu2-tiny-hf
"""
import argparse
import json
import os
import sys

import onnx
import yaml
from onnx import compose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package")
    parser.add_argument("out")
    args = parser.parse_args()
    with open(os.path.join(args.package, "manifest.yaml")) as f:
        manifest = yaml.safe_load(f)
    llm, tokenizer = manifest["llm"], manifest["tokenizer"]
    if manifest["dtype"] != "float32" or "decoder_file" not in llm:
        sys.exit(f"{args.package}: a float32 package with one decoder graph is expected")
    load = lambda role: onnx.load(os.path.join(args.package, llm[f"{role}_file"]))  # noqa: E731
    embed, decoder, head = load("embed_tokens"), load("decoder"), load("lm_head")
    for model in (embed, decoder, head):
        # compose needs one opset and IR version across the parts; the exporter writes them all alike.
        model.ir_version = decoder.ir_version
    joined = compose.merge_models(embed, decoder, io_map=[("inputs_embeds", "inputs_embeds")], prefix1="embed/")
    joined = compose.merge_models(joined, head, io_map=[("last_hidden_state", "hidden_states")], prefix2="head/")
    # The prefixes keep the parts' internal names apart; the joined graph's own input and output keep the names
    # transformers.js feeds and reads.
    for old_name, new_name in (("embed/input_ids", "input_ids"), ("head/logits", "logits")):
        for value in list(joined.graph.input) + list(joined.graph.output):
            if value.name == old_name:
                value.name = new_name
        for node in joined.graph.node:
            node.input[:] = [new_name if n == old_name else n for n in node.input]
            node.output[:] = [new_name if n == old_name else n for n in node.output]
    for output in list(joined.graph.output):
        if output.name.startswith("new_key_values."):
            entry = output.name[len("new_key_values."):]
            joined.graph.node.append(onnx.helper.make_node(
                "Concat", [f"past_key_values.{entry}", output.name], [f"present.{entry}"], axis=2))
            output.name = f"present.{entry}"
            output.type.tensor_type.shape.dim[2].dim_param = "total"
    onnx.checker.check_model(joined)
    os.makedirs(os.path.join(args.out, "onnx"), exist_ok=True)
    onnx.save(joined, os.path.join(args.out, "onnx", "model.onnx"))
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": llm["hidden_size"],
              "num_hidden_layers": llm["num_layers"], "num_attention_heads": llm["num_heads"],
              "num_key_value_heads": llm["num_heads"], "head_dim": llm["head_dim"],
              "intermediate_size": llm["intermediate_size"], "vocab_size": tokenizer["vocab_size"],
              "max_position_embeddings": llm["max_position_embeddings"], "rms_norm_eps": llm["rms_norm_eps"],
              "bos_token_id": tokenizer["bos_token_id"], "eos_token_id": tokenizer["eos_token_id"],
              "pad_token_id": tokenizer["pad_token_id"], "use_cache": True}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
                   "pad_token_id": config["pad_token_id"]}, f, indent=1)


if __name__ == "__main__":
    main()
