"""python/export_package.py end to end: a tiny model saved in the official HF Emu2-Chat layout (sharded .bin + index +
config.json) becomes a package that the emu2 binary validates and chats with.
    cd python && /usr/bin/python3 -m unittest tests.test_export_package   (needs node and the built dist/)"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emu2ref.llama import build_vision_llm  # noqa: E402
from test_vision_llm import official_state, write_hf_bin_shards  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VISION = {"image_size": 448, "patch_size": 14, "width": 32, "layers": 1, "heads": 2, "mlp_hidden": 64}
LLM = {"vocab_size": 32274, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}


@unittest.skipUnless(os.path.exists(os.path.join(ROOT, "dist", "cli", "main.js")), "run npm run build first")
class ExportPackageTest(unittest.TestCase):
    def test_official_checkpoint_becomes_a_working_package(self):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = os.path.join(tmp, "Emu2-Chat")
            os.makedirs(checkpoint)
            vision, llm = build_vision_llm({"vision": VISION, "llm": LLM}, 11)
            write_hf_bin_shards(checkpoint, official_state(vision, llm, "model.", "model.decoder.lm.", ""))
            with open(os.path.join(checkpoint, "config.json"), "w") as f:
                json.dump({"num_attention_heads": LLM["num_heads"], "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
                           "vision_config": {"width": VISION["width"], "head_width": VISION["width"] // VISION["heads"]}}, f)
            out = os.path.join(tmp, "package")
            subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_package.py"), checkpoint, out,
                            "--variant", "emu2-chat", "--dtype", "float32"], check=True, cwd=ROOT, capture_output=True)
            emu2 = [os.environ.get("NODE", "node"), os.path.join(ROOT, "bin", "emu2.js")]
            info = json.loads(subprocess.run(emu2 + ["info", out, "--json"], check=True, capture_output=True, text=True).stdout)
            self.assertEqual(info["manifest"]["variant"], "emu2-chat")
            self.assertEqual(info["manifest"]["vision"]["n_query"], 256)
            self.assertEqual(info["manifest"]["llm"]["hidden_size"], 32)
            answer = subprocess.run(emu2 + ["chat", "-m", out, "-q", "--greedy", "-n", "3", "--image",
                                            os.path.join(ROOT, "fixtures", "images", "blocks.png"), "-p", "What is it?",
                                            "--json"], check=True, capture_output=True, text=True)
            self.assertGreater(json.loads(answer.stdout)["tokens"], 0)


    def test_quantized_split_export_from_a_checkpoint(self):
        """--quantize int4 --quantize-heads --decoder-parts 2 on the streaming checkpoint path: the package validates,
        records its quantization and parts, holds MatMulNBits nodes, and chats with its parts placed by --device-map."""
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = os.path.join(tmp, "Emu2-Chat")
            os.makedirs(checkpoint)
            vision, llm = build_vision_llm({"vision": VISION, "llm": LLM}, 12)
            write_hf_bin_shards(checkpoint, official_state(vision, llm, "model.", "model.decoder.lm.", ""))
            with open(os.path.join(checkpoint, "config.json"), "w") as f:
                json.dump({"num_attention_heads": LLM["num_heads"],
                           "vision_config": {"width": VISION["width"], "head_width": VISION["width"] // VISION["heads"]}}, f)
            out = os.path.join(tmp, "package")
            subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_package.py"), checkpoint, out,
                            "--variant", "emu2-chat", "--dtype", "float32", "--quantize", "int4", "--quantize-heads",
                            "--decoder-parts", "2"], check=True, cwd=ROOT, capture_output=True)
            emu2 = [os.environ.get("NODE", "node"), os.path.join(ROOT, "bin", "emu2.js")]
            info = json.loads(subprocess.run(emu2 + ["info", out, "--json"], check=True, capture_output=True, text=True).stdout)
            self.assertEqual(info["manifest"]["quantization"]["decoder"]["bits"], 4)
            self.assertEqual([p["layers"] for p in info["manifest"]["llm"]["decoder_parts"]], [1, 1])
            part = onnx.load(os.path.join(out, "decoder_part1.onnx"))
            self.assertEqual(sum(n.op_type == "MatMulNBits" for n in part.graph.node), 7)
            weights = {i.name for i in part.graph.initializer}
            self.assertFalse(any(n.op_type == "MatMul" and n.input[1] in weights for n in part.graph.node))
            answer = subprocess.run(emu2 + ["chat", "-m", out, "-q", "--greedy", "-n", "3", "-p", "What is it?",
                                            "--device-map", "part0=cpu,part1=cpu", "--json"],
                                    check=True, capture_output=True, text=True)
            self.assertGreater(json.loads(answer.stdout)["tokens"], 0)

    def test_float16_quantized_packages_answer_as_their_float32_exports(self):
        """--dtype float16 with --quantize int8 and int4 (float16 scales, float16 activations into MatMulNBits): each
        package validates, and its greedy answer on the CPU equals the float32 export's with the same quantization
        flags; on WebGPU (where the adapter has shader-f16, as lavapipe does) it equals the CPU's."""
        import onnx

        emu2 = [os.environ.get("NODE", "node"), os.path.join(ROOT, "bin", "emu2.js")]
        devices = json.loads(subprocess.run(emu2 + ["info", "--devices", "--json"], check=True, capture_output=True,
                                            text=True).stdout)
        webgpu = devices["webgpu"]["available"] and devices["webgpu"].get("float16") is True
        ask = ["chat", "-q", "--greedy", "-n", "6", "--image", os.path.join(ROOT, "fixtures", "images", "blocks.png"),
               "-p", "What is it?", "--json"]
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = os.path.join(tmp, "Emu2-Chat")
            os.makedirs(checkpoint)
            vision, llm = build_vision_llm({"vision": VISION, "llm": LLM}, 13)
            write_hf_bin_shards(checkpoint, official_state(vision, llm, "model.", "model.decoder.lm.", ""))
            with open(os.path.join(checkpoint, "config.json"), "w") as f:
                json.dump({"num_attention_heads": LLM["num_heads"],
                           "vision_config": {"width": VISION["width"], "head_width": VISION["width"] // VISION["heads"]}}, f)
            for flags in (["--quantize", "int8", "--quantize-heads", "--quantize-vision"],
                          ["--quantize", "int4", "--block-size", "16", "--scale-search", "--int8-layers",
                           "v_proj,down_proj,lm_head", "--quantize-heads"]):
                answers = {}
                for dtype in ("float32", "float16"):
                    out = os.path.join(tmp, f"{flags[1]}-{dtype}")
                    subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_package.py"), checkpoint, out,
                                    "--variant", "emu2-chat", "--dtype", dtype, *flags], check=True, cwd=ROOT,
                                   capture_output=True)
                    info = json.loads(subprocess.run(emu2 + ["info", out, "--json"], check=True, capture_output=True,
                                                     text=True).stdout)
                    self.assertTrue(info["valid"], info)
                    self.assertEqual(info["manifest"]["dtype"], dtype)
                    decoder = onnx.load(os.path.join(out, "decoder.onnx"))
                    scales = [i for i in decoder.graph.initializer if i.name.endswith(".scales")]
                    self.assertEqual(len(scales), 14, flags)
                    expected = onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.FLOAT
                    self.assertTrue(all(i.data_type == expected for i in scales), (flags, dtype))
                    answer = json.loads(subprocess.run(emu2 + ask + ["-m", out], check=True, capture_output=True,
                                                       text=True).stdout)
                    self.assertEqual(answer["tokens"], 6, (flags, dtype))
                    answers[dtype] = answer["text"]
                    if dtype == "float16" and webgpu:
                        on_gpu = json.loads(subprocess.run(emu2 + ask + ["-m", out, "--device", "webgpu"], check=True,
                                                           capture_output=True, text=True).stdout)
                        self.assertEqual(on_gpu["text"], answer["text"], flags)
                self.assertEqual(answers["float16"], answers["float32"], flags)


if __name__ == "__main__":
    unittest.main()
