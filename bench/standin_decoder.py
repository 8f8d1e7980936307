"""The real-width stand-in of `npm run bench:quantized`: a decoder graph of LLaMA-33B width (Emu2's LLM: hidden 6656,
52 heads, intermediate 17920) with `--layers` layers of seeded random weights, exported by the package exporter as
float32, int8 or int4 (MatMulNBits, block 32, asymmetric, the decoder's linear layers as `--quantize` does;
-acc4: `--accuracy-level 4`). Prints
one JSON line: the export's peak resident set (the streaming export should need about one float32 layer). A
decoder already there in the exporter's current form (bench/export_form.py) is kept, and nothing printed.

    /usr/bin/python3 bench/standin_decoder.py ~/.cache/emu2-bench/int4 --variant int4 --layers 1
    /usr/bin/python3 bench/standin_decoder.py ~/.cache/emu2-bench --bandwidth   # the read-bandwidth probe graph
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from emu2ref.eva_vit import EvaViT  # noqa: E402
from emu2ref.export_llm import export_vision_llm  # noqa: E402
from emu2ref.llama import Emu2LLM  # noqa: E402
from emu2ref.quantize import Quantization  # noqa: E402
from export_form import decoder_is_current  # noqa: E402

WIDTH = {"hidden_size": 6656, "num_heads": 52, "intermediate_size": 17920}


def bandwidth_graph(path: str) -> None:
    """ReduceSum of a float32 vector: reads every byte once, the memory-bound kernel the bench times."""
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "read",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--variant", choices=["float32", "int8", "int4", "int8-acc4", "int4-acc4"])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bandwidth", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.bandwidth:
        bandwidth_graph(os.path.join(args.out, "read.onnx"))
        return
    if decoder_is_current(os.path.join(args.out, "decoder.onnx"), args.layers):
        return
    if os.path.exists(os.path.join(args.out, "decoder.onnx")):
        print(f"re-exporting {args.out}: its decoder is an earlier export's", file=sys.stderr)
    start = time.time()
    torch.manual_seed(0)
    # Random weights at 1/sqrt(fan_in), as build_vision_llm; the vision tower and vocabulary are token-sized (the
    # decoder graph holds none of their weights).
    vision = EvaViT(image_size=28, patch_size=14, width=32, layers=1, heads=2, mlp_hidden=32).eval()
    llm = Emu2LLM(vocab_size=32, num_layers=args.layers, rms_norm_eps=1e-6, vision_width=32, **WIDTH).eval()
    with torch.no_grad():
        for name, p in llm.model.layers.named_parameters():
            p.copy_(torch.randn(p.shape) / p.shape[-1] ** 0.5 if p.dim() == 2 else 1.0 + 0.1 * torch.randn(p.shape))
    bits, _, accuracy = args.variant.partition("-acc")
    plan = {} if bits == "float32" else {"decoder": Quantization(int(bits[3:]), accuracy_level=int(accuracy or 0))}
    export_vision_llm(args.out, vision, llm, "float32", quantization=plan, only={"decoder"})
    print(json.dumps({"variant": args.variant, "layers": args.layers, "export_s": round(time.time() - start, 1),
                      "export_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
