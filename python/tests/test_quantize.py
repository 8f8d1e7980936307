"""The MatMulNBits quantizer (emu2ref/quantize.py): packing against hand-computed bytes, the round-trip error bound,
one-node graphs run by ONNX Runtime (onnxruntime-node) against numpy with the dequantized weights, and the
exporter's one-line errors for bad quantization and --decoder-parts flags.

    cd python && /usr/bin/python3 -m unittest tests.test_quantize   (the ONNX Runtime checks need node and npm ci)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emu2ref import quantize as qz  # noqa: E402
from emu2ref.quantize import Quantization  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PackingTest(unittest.TestCase):
    def test_int4_symmetric_bytes_by_hand(self):
        # Scale = max|w| / 7 = 0.5; q = w / 0.5 + 8 = 1..15 then 8 (zeros); two per byte, low nibble first.
        w = np.zeros((1, 32), np.float32)
        w[0, :15] = 0.5 * np.arange(-7, 8)
        packed, scales, zero_points = qz.quantize(w, Quantization(4, symmetric=True))
        self.assertIsNone(zero_points)
        self.assertEqual(packed.shape, (1, 1, 16))
        self.assertEqual(list(packed[0, 0]), [0x21, 0x43, 0x65, 0x87, 0xA9, 0xCB, 0xED, 0x8F] + [0x88] * 8)
        self.assertEqual(scales.tolist(), [0.5])

    def test_int4_asymmetric_zero_points_by_hand(self):
        # Block 0 spans [-1, 2]: scale 3/15, zero point round(1 / 0.2) = 5. Block 1 spans [-3, 0]: zero point 15.
        # Both zero points of the row share one byte, block 0 in the low nibble.
        w = np.concatenate([np.linspace(-1, 2, 32), np.linspace(-3, 0, 32)]).astype(np.float32)[None]
        packed, scales, zero_points = qz.quantize(w, Quantization(4))
        np.testing.assert_allclose(scales, [0.2, 0.2], rtol=1e-6)
        self.assertEqual(zero_points.tolist(), [[0xF5]])
        self.assertEqual(packed.shape, (1, 2, 16))
        self.assertEqual(packed[0, 0, 0] & 0x0F, 0)   # -1 -> q 0
        self.assertEqual(packed[0, 0, 15] >> 4, 15)   # 2 -> q 15
        self.assertEqual(packed[0, 1, 15] >> 4, 15)   # 0 -> its zero point 15

    def test_int8_is_one_byte_per_value(self):
        w = (0.1 * np.arange(32, dtype=np.float32))[None]
        packed, scales, zero_points = qz.quantize(w, Quantization(8))
        self.assertEqual(packed.shape, (1, 1, 32))
        self.assertEqual(zero_points.tolist(), [[0]])
        self.assertEqual([int(packed[0, 0, i]) for i in (0, 1, 30, 31)], [0, 8, 247, 255])
        np.testing.assert_allclose(scales, [3.1 / 255], rtol=1e-6)


class RoundTripTest(unittest.TestCase):
    def test_error_is_at_most_half_a_step(self):
        w = np.random.default_rng(0).standard_normal((48, 256)).astype(np.float32)
        w[3, 64:96] = 0.0   # an all-zero block (of 32) stays zero
        w[5, 7] = 30.0      # an outlier costs only its own block
        for q in (Quantization(8), Quantization(4), Quantization(8, 64, True), Quantization(4, 128, True)):
            packed, scales, zero_points = qz.quantize(w, q)
            back = qz.dequantize(packed, scales, zero_points, q, w.shape[1])
            step = np.repeat(scales.reshape(48, -1), q.block_size, axis=1)
            self.assertTrue(np.all(np.abs(back - w) <= step / 2 * (1 + 1e-5) + 1e-7), q)
            if q.block_size == 32:
                self.assertTrue(np.all(back[3, 64:96] == 0), q)
            relative = np.sqrt(np.mean((back - w) ** 2) / np.mean(w ** 2))
            self.assertLess(relative, 0.012 if q.bits == 8 else 0.2, q)

    def test_row_chunks_do_not_change_the_result(self):
        from unittest import mock

        w = np.random.default_rng(2).standard_normal((37, 64)).astype(np.float32)
        for q in (Quantization(4), Quantization(8, symmetric=True)):
            whole = qz.quantize(w, q)
            with mock.patch.object(qz, "ROWS_PER_CHUNK", 5):
                chunked = qz.quantize(w, q)
            for a, b in zip(whole, chunked):
                np.testing.assert_array_equal(a, b)

    def test_scale_search_never_loses_to_the_full_range_and_stores_the_scales_it_used(self):
        w = np.random.default_rng(3).standard_normal((64, 128)).astype(np.float32)
        w[7, 5] = 12.0   # an outlier: the search clips its block's range
        # Measured: the search's total squared error is 0.934, 0.925, 0.977 of the full range's.
        for bits, block, ratio in ((4, 16, 0.94), (4, 32, 0.93), (8, 32, 0.98)):
            errors = []
            for search in (False, True):
                q = Quantization(bits, block, scale_search=search)
                back = qz.dequantize(*qz.quantize(w, q), q, w.shape[1])
                errors.append(((back - w) ** 2).reshape(64, -1, block).sum(axis=2))
            self.assertTrue(np.all(errors[1] <= errors[0] * (1 + 1e-6)), (bits, block))
            self.assertLess(errors[1].sum(), ratio * errors[0].sum(), (bits, block))

    def test_int8_layers_of_an_int4_graph(self):
        q = Quantization(4, 16, int8_layers=("v_proj", "down_proj"))
        self.assertEqual(q.for_layer("llm.model.layers.3.self_attn.v_proj.weight").bits, 8)
        self.assertEqual(q.for_layer("1.mlp.down_proj").bits, 8)
        self.assertEqual(q.for_layer("llm.model.layers.3.self_attn.q_proj.weight").bits, 4)
        self.assertEqual(q.for_layer("llm.model.layers.3.self_attn.v_proj.weight").block_size, 16)
        with self.assertRaisesRegex(ValueError, "int8 layer wq: expected some of q_proj"):
            Quantization(4, int8_layers=("wq",))

    def test_block_size_must_divide_the_width(self):
        with self.assertRaisesRegex(ValueError, "block size 64 does not divide the input width 96"):
            qz.quantize(np.zeros((2, 96), np.float32), Quantization(4, 64))


_RUN_GRAPH = """
const ort = require("onnxruntime-node");
const [model, k, rows] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const a = Float32Array.from({ length: rows * k }, (_, i) => Math.sin(i * 0.37));
ort.InferenceSession.create(model).then((s) => s.run({ A: new ort.Tensor("float32", a, [1, rows, k]) }))
  .then((out) => process.stdout.write(JSON.stringify(Array.from(out.Y.data))));
"""


@unittest.skipUnless(os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")), "run npm ci first")
class OnnxRuntimeTest(unittest.TestCase):
    """One MatMulNBits node with the packed weights, run by ONNX Runtime, against numpy's A @ dequantized(W)^T."""

    def run_one_node(self, w: np.ndarray, q: Quantization, rows: int = 3) -> float:
        n, k = w.shape
        packed, scales, zero_points = qz.quantize(w, q)
        inits = [numpy_helper.from_array(packed, "w.quant"), numpy_helper.from_array(scales, "w.scales")]
        if zero_points is not None:
            inits.append(numpy_helper.from_array(zero_points, "w.zero_points"))
        node = qz.matmul_nbits_node("A", "w", "Y", n, k, q, zero_points is not None, "w/MatMulNBits")
        graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, rows, k])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, rows, n])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(qz.MS_DOMAIN, 1)])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "one.onnx")
            onnx.save(model, path)
            out = subprocess.run(["node", "-e", _RUN_GRAPH, path, str(k), str(rows)], check=True, cwd=ROOT,
                                 capture_output=True, text=True).stdout
        a = np.sin(np.arange(rows * k) * 0.37).astype(np.float32).reshape(rows, k)
        expected = a @ qz.dequantize(packed, scales, zero_points, q, k).T
        return float(np.abs(np.array(json.loads(out)).reshape(rows, n) - expected).max())

    def test_matmulnbits_equals_numpy_with_the_dequantized_weights(self):
        w = np.random.default_rng(1).standard_normal((24, 256)).astype(np.float32)
        for q in (Quantization(4), Quantization(8), Quantization(4, 64, True), Quantization(8, 128, True),
                  Quantization(4, 16, scale_search=True), Quantization(8, 16, True, scale_search=True)):
            self.assertLess(self.run_one_node(w, q), 2e-5, q)


class ExporterFlagsTest(unittest.TestCase):
    def run_exporter(self, *flags):
        return subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_package.py"), *flags],
                              capture_output=True, text=True, cwd=ROOT)

    def test_unknown_bits_is_one_line(self):
        done = self.run_exporter("ckpt", "out", "--variant", "emu2-chat", "--quantize", "int3")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stderr.strip().splitlines(),
                         ["export_package.py: argument --quantize: invalid choice: 'int3' (choose from 'int4', 'int8')"])

    def test_bad_block_size_and_int8_layers_are_one_line(self):
        cases = [(["--quantize", "int4", "--block-size", "48"],
                  "export_package.py: argument --block-size: invalid choice: 48 (choose from 16, 32, 64, 128)"),
                 (["--quantize", "int4", "--int8-layers", "v_proj,wq"],
                  "export_package.py: argument --int8-layers: wq: expected layers among q_proj,k_proj,v_proj,o_proj,"
                  "gate_proj,up_proj,down_proj,lm_head,project_up,project_down"),
                 (["--quantize", "int8", "--int8-layers", "v_proj"],
                  "export_package.py: --int8-layers keeps layers of an int4 package at int8: it needs --quantize int4"),
                 (["--quantize", "int4", "--int8-layers", "lm_head"],
                  "export_package.py: --int8-layers lm_head: the heads stay float without --quantize-heads"),
                 (["--scale-search"], "export_package.py: --quantize-heads, --quantize-vision, --scale-search and "
                                      "--int8-layers need --quantize int8|int4")]
        for flags, line in cases:
            done = self.run_exporter("ckpt", "out", "--variant", "emu2-chat", *flags)
            self.assertEqual(done.returncode, 2, flags)
            self.assertEqual(done.stderr.strip().splitlines(), [line])

    def test_block_size_that_does_not_divide_a_width_is_one_line(self):
        from emu2ref.llama import build_vision_llm
        from test_vision_llm import official_state, write_hf_bin_shards

        with tempfile.TemporaryDirectory() as tmp:
            # Hidden size 32, intermediate 96: block 64 divides neither.
            vision, llm = build_vision_llm({"vision": {"image_size": 56, "patch_size": 14, "width": 64, "layers": 1,
                                                       "heads": 2, "mlp_hidden": 128},
                                            "llm": {"vocab_size": 300, "hidden_size": 32, "num_layers": 2,
                                                    "num_heads": 4, "intermediate_size": 96,
                                                    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}}, 2)
            write_hf_bin_shards(tmp, official_state(vision, llm, "model.", "model.decoder.lm.", ""))
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"num_attention_heads": 4, "vision_config": {"width": 64, "head_width": 32}}, f)
            out = os.path.join(tmp, "package")
            done = self.run_exporter(tmp, out, "--variant", "emu2-chat", "--quantize", "int4", "--block-size", "64")
            self.assertEqual(done.returncode, 2)
            self.assertEqual(done.stderr.strip().splitlines(),
                             ["export_package.py: block size 64 does not divide the input width 32 of the LLM hidden "
                              "size (decoder)"])
            self.assertFalse(os.path.exists(out))
            done = self.run_exporter(tmp, out, "--variant", "emu2-chat", "--decoder-parts", "3")
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertEqual(done.stderr.strip().splitlines(),
                             ["export_package.py: --decoder-parts 3: expected 1 to the LLM's 2 layers"])

    def test_decoder_parts_are_consecutive_and_nearly_equal(self):
        from emu2ref.export_llm import decoder_part_ranges

        self.assertEqual(decoder_part_ranges(60, 2), [(0, 30), (30, 60)])
        self.assertEqual(decoder_part_ranges(5, 3), [(0, 2), (2, 4), (4, 5)])
        self.assertEqual(decoder_part_ranges(2, 1), [(0, 2)])


if __name__ == "__main__":
    unittest.main()
