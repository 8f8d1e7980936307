"""The README's memory table is python/memory_table.py's output, and its totals match the known sizes of the models.

    cd python && /usr/bin/python3 -m unittest tests.test_memory_table
"""
import os
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import memory_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MemoryTableTest(unittest.TestCase):
    def test_readme_has_the_scripts_table(self):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "python", "memory_table.py"), "--check"],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_float16_emu2_is_its_parameter_count_times_two(self):
        with open(os.path.join(ROOT, "configs", "models", "emu2.yaml")) as f:
            manifest = yaml.safe_load(f)
        float16 = memory_table.model_bytes(manifest, 16)
        # The Emu2 paper (arXiv 2312.13286): about 37B parameters, 74 GB in bf16 (vision 1.9B + LLaMA-33B's 32.5B + heads).
        self.assertAlmostEqual(float16["weights"] / 1e9, 73.8, delta=0.3)
        # 60 layers x 6656 x (key + value) x 2 bytes = 1.6 MB per token.
        self.assertEqual(float16["kv"], 60 * 6656 * 2 * 2 * 2048)
        int4 = memory_table.model_bytes(manifest, 4)
        # The LLM's linear layers (about 32.4B weights) shrink from 2 bytes to 0.5 + 2.5/32 per weight.
        self.assertAlmostEqual((float16["weights"] - int4["weights"]) / 1e9, 32.4e9 * (2 - 0.5 - 2.5 / 32) / 1e9,
                               delta=0.5)


if __name__ == "__main__":
    unittest.main()
