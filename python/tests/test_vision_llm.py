"""Checks of the vision/LLM reference and its export: the decoder's mask against transformers 4.31's own
construction, KV-cache and left-padding invariances, the official key layout, and the streaming export of an
official-layout checkpoint (sharded .bin with an index, safetensors) against the export of the in-memory model.

    cd python && /usr/bin/python3 -m unittest tests.test_vision_llm
"""
import json
import os
import struct
import sys
import tempfile
import unittest
from collections import Counter
from unittest import mock

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu2ref import export_llm  # noqa: E402
from emu2ref.checkpoint import Checkpoint  # noqa: E402
from emu2ref.eva_vit import pool_visual_features  # noqa: E402
from emu2ref.export_llm import export_vision_llm, export_vision_llm_from_checkpoint  # noqa: E402
from emu2ref.llama import attention_mask_4d, build_vision_llm, position_ids_for  # noqa: E402

VISION = {"image_size": 56, "patch_size": 14, "width": 32, "layers": 2, "heads": 2, "mlp_hidden": 64}
LLM = {"vocab_size": 300, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
GRAPHS = ["visual_encoder", "embed_tokens", "project_up", "decoder", "lm_head", "project_down"]


def tiny(seed=3):
    return build_vision_llm({"vision": VISION, "llm": LLM}, seed)


def hf_431_mask(attention_mask, new_tokens, dtype=torch.float32):
    """transformers 4.31 LlamaModel._prepare_decoder_attention_mask (_make_causal_mask + _expand_mask), re-derived."""
    bsz, total = attention_mask.shape
    past = total - new_tokens
    combined = None
    if new_tokens > 1:
        mask = torch.full((new_tokens, new_tokens), torch.finfo(dtype).min)
        cond = torch.arange(new_tokens)
        mask.masked_fill_(cond < (cond + 1).view(new_tokens, 1), 0)
        mask = torch.cat([torch.zeros(new_tokens, past, dtype=dtype), mask.to(dtype)], dim=-1)
        combined = mask[None, None].expand(bsz, 1, new_tokens, total)
    inverted = 1.0 - attention_mask[:, None, None, :].expand(bsz, 1, new_tokens, total).to(dtype)
    expanded = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)
    return expanded if combined is None else expanded + combined


class DecoderSemanticsTest(unittest.TestCase):
    def test_mask_equals_transformers_431(self):
        for new, mask in ((3, [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]), (1, [[1, 1, 1], [0, 1, 1]]), (4, [[0, 1, 1, 1]])):
            mask = torch.tensor(mask)
            torch.testing.assert_close(attention_mask_4d(mask, new), hf_431_mask(mask, new).expand(-1, 1, -1, -1),
                                       rtol=0, atol=0)

    def test_kv_cache_steps_equal_the_full_sequence(self):
        _, llm = tiny()
        embeds = torch.randn(1, 6, LLM["hidden_size"], generator=torch.Generator().manual_seed(0))
        mask = torch.ones(1, 6, dtype=torch.long)
        with torch.no_grad():
            full, _ = llm.decode(embeds, mask, position_ids_for(mask, 6), [])
            head, past = llm.decode(embeds[:, :4], mask[:, :4], position_ids_for(mask[:, :4], 4), [])
            step5, past = llm.decode(embeds[:, 4:5], mask[:, :5], position_ids_for(mask[:, :5], 1), past)
            step6, past = llm.decode(embeds[:, 5:], mask, position_ids_for(mask, 1), past)
        torch.testing.assert_close(torch.cat([head, step5, step6], 1), full, rtol=1e-5, atol=1e-5)
        self.assertEqual(list(past[0][0].shape), [1, LLM["num_heads"], 6, 8])

    def test_past_apart_equals_the_concatenated_cache(self):
        """The exported decoder's form (Attention.forward's past_apart) against HF's concatenated cache: the same
        hidden states and, as its presents, the concatenation's last rows; with a past and with an empty one (the
        first step), over a left-padded batch."""
        _, llm = tiny()
        g = torch.Generator().manual_seed(2)
        mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
        embeds = torch.randn(2, 5, LLM["hidden_size"], generator=g)
        empty = [(torch.zeros(2, LLM["num_heads"], 0, 8),) * 2] * LLM["num_layers"]
        with torch.no_grad():
            first, past = llm.decode(embeds[:, :3], mask[:, :3], position_ids_for(mask[:, :3], 3), [])
            first_apart, rows = llm.decode(embeds[:, :3], mask[:, :3], position_ids_for(mask[:, :3], 3), empty,
                                           past_apart=True)
            step, presents = llm.decode(embeds[:, 3:], mask, position_ids_for(mask, 2), past)
            step_apart, new_rows = llm.decode(embeds[:, 3:], mask, position_ids_for(mask, 2), past, past_apart=True)
        torch.testing.assert_close(first_apart, first, rtol=0, atol=1e-6)
        torch.testing.assert_close(step_apart, step, rtol=0, atol=1e-6)
        # Layer 0's rows are equal; a later layer's come from hidden states that differ in the last float bits.
        for (k, v), (k_all, v_all), (k0, v0), (k0_all, v0_all) in zip(new_rows, presents, rows, past):
            torch.testing.assert_close(k, k_all[:, :, 3:], rtol=0, atol=1e-6)
            torch.testing.assert_close(v, v_all[:, :, 3:], rtol=0, atol=1e-6)
            torch.testing.assert_close(k0, k0_all, rtol=0, atol=1e-6)
            torch.testing.assert_close(v0, v0_all, rtol=0, atol=1e-6)

    def test_left_padding_does_not_change_the_real_tokens(self):
        _, llm = tiny()
        embeds = torch.randn(1, 4, LLM["hidden_size"], generator=torch.Generator().manual_seed(1))
        padded = torch.cat([torch.randn(1, 2, LLM["hidden_size"]), embeds], 1)
        mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
        with torch.no_grad():
            alone, _ = llm.decode(embeds, torch.ones(1, 4, dtype=torch.long), torch.arange(4)[None], [])
            with_pad, _ = llm.decode(padded, mask, position_ids_for(mask, 6), [])
        torch.testing.assert_close(with_pad[:, 2:], alone, rtol=1e-5, atol=1e-5)

    def test_logits_are_not_flat(self):
        _, llm = tiny()
        with torch.no_grad():
            hidden, _ = llm.decode(llm.embed_tokens(torch.tensor([[1, 5, 9]])), torch.ones(1, 3, dtype=torch.long),
                                   torch.arange(3)[None], [])
            probs = llm.lm_head(hidden).softmax(-1)
        self.assertGreater(probs.max().item(), 20.0 / LLM["vocab_size"])


class KeyLayoutTest(unittest.TestCase):
    def test_vision_keys_are_the_official_eva_vit_keys(self):
        vision, _ = tiny()
        block = ["norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight", "attn.proj.weight",
                 "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                 "mlp.fc2.bias"]
        expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
        expected |= {f"blocks.{i}.{k}" for i in range(VISION["layers"]) for k in block}
        self.assertEqual(set(vision.state_dict()), expected)

    def test_llm_keys_are_the_official_llama_keys(self):
        _, llm = tiny()
        layer = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                 "input_layernorm.weight", "post_attention_layernorm.weight"]
        expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "project_up.weight",
                    "project_down.weight"}
        expected |= {f"model.layers.{i}.{k}" for i in range(LLM["num_layers"]) for k in layer}
        self.assertEqual(set(llm.state_dict()), expected)

    def test_pooling_matches_a_loop_over_the_grid(self):
        hidden = torch.randn(2, 1 + 16 * 16, 3)
        pooled = pool_visual_features(hidden, 64)
        grid = hidden[:, 1:].reshape(2, 16, 16, 3)
        expected = torch.stack([grid[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].mean((1, 2))
                                for r in range(8) for c in range(8)], 1)
        torch.testing.assert_close(pooled, expected)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32"}[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def official_state(vision, llm, visual_prefix, lm_prefix, head_prefix):
    """The tiny model's weights under the official keys (checkpoint.py), with transformers < 4.31's inv_freq."""
    state = {f"{visual_prefix}visual.{k}": v for k, v in vision.state_dict().items()}
    for k, v in llm.state_dict().items():
        state[(head_prefix if k.startswith("project_") else lm_prefix) + k] = v
    for i in range(LLM["num_layers"]):
        state[f"{lm_prefix}model.layers.{i}.self_attn.rotary_emb.inv_freq"] = llm.rotary.inv_freq.clone()
    return {k: v.detach().clone() for k, v in state.items()}


def write_hf_bin_shards(folder, state, shards=3):
    keys = sorted(state)
    weight_map = {}
    for s in range(shards):
        name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[s::shards]}
        torch.save(part, os.path.join(folder, name))
        weight_map.update({k: name for k in part})
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def initializers(path):
    model = onnx.load(path)
    return model, {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


class CheckpointExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.vision, cls.llm = tiny()
        cls.reference = os.path.join(cls.tmp.name, "reference")
        export_vision_llm(cls.reference, cls.vision, cls.llm)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assert_same_graphs(self, out_dir):
        for graph in GRAPHS:
            ref_model, ref = initializers(os.path.join(self.reference, f"{graph}.onnx"))
            model, got = initializers(os.path.join(out_dir, f"{graph}.onnx"))
            self.assertEqual([(n.op_type, list(n.input), list(n.output)) for n in model.graph.node],
                             [(n.op_type, list(n.input), list(n.output)) for n in ref_model.graph.node], graph)
            self.assertEqual([i.name for i in model.graph.input], [i.name for i in ref_model.graph.input])
            self.assertEqual(sorted(got), sorted(ref), graph)
            for name in ref:
                np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{graph} {name}")

    def export(self, checkpoint, name):
        out = os.path.join(self.tmp.name, name)
        sections = export_vision_llm_from_checkpoint(checkpoint, out, dtype="float32", variant="emu2-chat",
                                                     vision_heads=VISION["heads"], llama_config=self.llama_config())
        return out, sections

    def llama_config(self):
        path = os.path.join(self.tmp.name, "config.json")
        with open(path, "w") as f:
            json.dump({"num_attention_heads": LLM["num_heads"], "rms_norm_eps": 1e-6}, f)
        return path

    def test_the_decoder_attends_its_past_without_copying_it(self):
        """No presents and no Concat of a past input: ONNX Runtime runs every node whatever is fetched, so either
        would copy the whole cache on every token."""
        model = onnx.load(os.path.join(self.reference, "decoder.onnx"), load_external_data=False)
        self.assertEqual([o.name for o in model.graph.output],
                         ["last_hidden_state"] + export_llm.new_rows_names(LLM["num_layers"]))
        past = {i.name for i in model.graph.input if i.name.startswith("past_key_values.")}
        self.assertEqual(len(past), 2 * LLM["num_layers"])
        readers = [n.op_type for n in model.graph.node if past & set(n.input)]
        self.assertGreater(len(readers), 0)
        self.assertNotIn("Concat", readers)

    def test_a_decoder_layer_computes_no_shapes(self):
        """A layer's reshapes, rotation and split of the attention weights have fixed shapes (llama.py's _SplitHeads,
        _MergeHeads, _RotateHalf, _SplitAtPast): a shape traced as a computation costs a handful of nodes per use,
        a fixed cost of every decoder run that on a small model outweighs the arithmetic. One Shape per layer
        remains, the length of its past. The nodes one more layer adds are the layer's."""
        ops = {}
        for layers in (1, 2):
            vision, llm = build_vision_llm({"vision": VISION, "llm": {**LLM, "num_layers": layers}}, 3)
            out = os.path.join(self.tmp.name, f"decoder-{layers}")
            export_vision_llm(out, vision, llm, only={"decoder"})
            graph = onnx.load(os.path.join(out, "decoder.onnx"), load_external_data=False).graph
            ops[layers] = Counter(node.op_type for node in graph.node)
        layer = ops[2] - ops[1]
        self.assertEqual(layer["Shape"], 1)
        self.assertEqual({op: layer[op] for op in ("Gather", "Unsqueeze", "ConstantOfShape", "Range", "Where")},
                         {"Gather": 0, "Unsqueeze": 0, "ConstantOfShape": 0, "Range": 0, "Where": 0})

    def test_hf_layout_in_sharded_bin_files(self):
        folder = os.path.join(self.tmp.name, "hf")
        os.makedirs(folder)
        write_hf_bin_shards(folder, official_state(self.vision, self.llm, "model.", "model.decoder.lm.", ""))
        # The HF repos' EmuConfig: LLaMA fields and a vision_config, read for what the weights cannot tell.
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"num_attention_heads": LLM["num_heads"], "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
                       "vision_config": {"width": VISION["width"], "head_width": VISION["width"] // VISION["heads"]}},
                      f)
        ckpt = Checkpoint(folder)
        self.assertEqual((ckpt.vision_prefix, ckpt.lm_prefix, ckpt.head_prefix), ("model.", "model.decoder.lm.", ""))
        out = os.path.join(self.tmp.name, "from-hf")
        sections = export_vision_llm_from_checkpoint(folder, out, dtype="float32", variant="emu2-chat")
        self.assert_same_graphs(out)
        self.assertEqual(sections["vision"]["n_query"], 256)
        self.assertEqual(sections["llm"]["num_heads"], LLM["num_heads"])
        self.assertEqual(sections["vision"]["width"], VISION["width"])

    def test_emu2_gen_layout_in_safetensors(self):
        root = os.path.join(self.tmp.name, "gen")
        os.makedirs(os.path.join(root, "multimodal_encoder"))
        state = official_state(self.vision, self.llm, "", "decoder.lm.", "")
        write_safetensors(os.path.join(root, "multimodal_encoder", "model.safetensors"), state)
        out, _ = self.export(root, "from-gen")
        self.assert_same_graphs(out)

    def test_large_graphs_keep_their_weights_in_aligned_external_data(self):
        folder = os.path.join(self.tmp.name, "external")
        with mock.patch.object(export_llm, "EXTERNAL_THRESHOLD", 1000):
            export_vision_llm(folder, self.vision, self.llm)
        model = onnx.load(os.path.join(folder, "decoder.onnx"), load_external_data=False)
        for init in model.graph.initializer:
            self.assertEqual(init.data_location, TensorProto.EXTERNAL)
            entries = {e.key: e.value for e in init.external_data}
            self.assertEqual(entries["location"], "decoder.onnx_data")
            self.assertEqual(int(entries["offset"]) % export_llm.EXTERNAL_ALIGNMENT, 0)
        _, got = initializers(os.path.join(folder, "decoder.onnx"))
        _, ref = initializers(os.path.join(self.reference, "decoder.onnx"))
        self.assertEqual(sorted(got), sorted(ref))
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name])

    def test_float16_graphs_are_half_precision_throughout(self):
        folder = os.path.join(self.tmp.name, "half")
        export_vision_llm(folder, self.vision, self.llm, dtype="float16")
        for graph in GRAPHS:
            model = onnx.load(os.path.join(folder, f"{graph}.onnx"))
            onnx.checker.check_model(model)
            onnx.shape_inference.infer_shapes(model, strict_mode=True)
            for value in list(model.graph.input) + list(model.graph.output):
                self.assertIn(value.type.tensor_type.elem_type, (TensorProto.FLOAT16, TensorProto.INT64), value.name)
            for init in model.graph.initializer:
                self.assertEqual(init.data_type, TensorProto.FLOAT16, init.name)
            self.assertNotIn(TensorProto.DOUBLE, [a.i for n in model.graph.node if n.op_type == "Cast"
                                                  for a in n.attribute])
        # The decoder keeps transformers' float32 islands: RMSNorm statistics and softmax.
        decoder = onnx.load(os.path.join(folder, "decoder.onnx"))
        softmax_inputs = {n.input[0] for n in decoder.graph.node if n.op_type == "Softmax"}
        to_float = {n.output[0] for n in decoder.graph.node if n.op_type == "Cast"
                    and n.attribute[0].i == TensorProto.FLOAT}
        self.assertTrue(softmax_inputs and softmax_inputs <= to_float)


if __name__ == "__main__":
    unittest.main()
