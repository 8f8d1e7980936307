"""python/export_toy.py --quantize: a toy checkpoint (here the untrained seeded model, so the test needs no committed
checkpoint) becomes a quantized package whose manifest records the plan, whose graphs hold MatMulNBits weights at the
bits asked (int8 layers of an int4 decoder included) and that the emu2 binary validates.
    cd python && /usr/bin/python3 -m unittest tests.test_export_toy   (needs node and the built dist/)"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import onnx  # noqa: E402
import torch  # noqa: E402

from emu2toy import model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@unittest.skipUnless(os.path.exists(os.path.join(ROOT, "dist", "cli", "main.js")), "run npm run build first")
class ExportToyTest(unittest.TestCase):
    def test_quantized_toy_export(self):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = os.path.join(tmp, "toy.pt")
            vision, llm = model.build(7)
            torch.save(model.checkpoint_state(vision, llm, 7, [1, 2, 450, 29871]), checkpoint)
            out = os.path.join(tmp, "toy-int4")
            done = subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_toy.py"), "--checkpoint",
                                   checkpoint, "--out", out, "--quantize", "int4", "--block-size", "16",
                                   "--int8-layers", "v_proj,down_proj,lm_head", "--quantize-heads"],
                                  cwd=ROOT, capture_output=True, text=True)
            self.assertEqual(done.returncode, 0, done.stderr[-2000:])
            emu2 = [os.environ.get("NODE", "node"), os.path.join(ROOT, "bin", "emu2.js")]
            info = json.loads(subprocess.run(emu2 + ["info", out, "--json"], check=True, capture_output=True,
                                             text=True).stdout)
            self.assertTrue(info["valid"], info)
            quantization = info["manifest"]["quantization"]
            self.assertEqual(quantization["decoder"]["int8_layers"], ["v_proj", "down_proj"])
            self.assertEqual((quantization["lm_head"]["bits"], quantization["project_up"]["bits"]), (8, 4))
            decoder = onnx.load(os.path.join(out, "decoder.onnx"))
            bits = {n.input[1].split(".")[-3]: [a.i for a in n.attribute if a.name == "bits"][0]
                    for n in decoder.graph.node if n.op_type == "MatMulNBits"}
            self.assertEqual(bits, {"q_proj": 4, "k_proj": 4, "v_proj": 8, "o_proj": 4, "gate_proj": 4,
                                    "up_proj": 4, "down_proj": 8})
            done = subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_toy.py"), "--checkpoint",
                                   checkpoint, "--out", out, "--quantize", "int8", "--int8-layers", "v_proj"],
                                  cwd=ROOT, capture_output=True, text=True)
            self.assertEqual(done.returncode, 2)
            self.assertEqual(done.stderr.strip().splitlines(), ["export_toy.py: --int8-layers keeps layers of an int4 "
                                                                "package at int8: it needs --quantize int4"])


if __name__ == "__main__":
    unittest.main()
