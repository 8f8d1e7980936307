"""The generation reference against itself: the KV cache changes nothing, a left-padded batch equals its rows,
one beam is greedy, min_new_tokens holds eos back."""
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emu2ref.generation import beam_search, greedy, left_pad, regress_image  # noqa: E402
from emu2ref.llama import build_vision_llm  # noqa: E402

CONFIG = {"vision": dict(image_size=28, patch_size=14, width=16, layers=1, heads=2, mlp_hidden=32),
          "llm": dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, rms_norm_eps=1e-6)}
EOS, PAD = 2, 0


class GenerationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        _, cls.llm = build_vision_llm(CONFIG, 3)
        cls.ids, cls.mask = left_pad([[1, 5, 9, 13], [1, 7], [1, 20, 21]], PAD)
        cls.embeds = cls.llm.embed_tokens(cls.ids)

    def test_cache_equals_full_recompute(self):
        a = greedy(self.llm, self.embeds, self.mask, 8, EOS, PAD)
        b = greedy(self.llm, self.embeds, self.mask, 8, EOS, PAD, full_recompute=True)
        self.assertTrue(torch.equal(a, b))
        sa, score_a = beam_search(self.llm, self.embeds, self.mask, 3, 6, EOS, PAD, length_penalty=-1.0)
        sb, score_b = beam_search(self.llm, self.embeds, self.mask, 3, 6, EOS, PAD, length_penalty=-1.0, full_recompute=True)
        self.assertTrue(torch.equal(sa, sb))
        self.assertTrue(torch.allclose(score_a, score_b, atol=1e-4))
        ra = regress_image(self.llm, self.embeds, self.mask, 10, 8)
        rb = regress_image(self.llm, self.embeds, self.mask, 10, 8, full_recompute=True)
        self.assertLess((ra - rb).abs().max().item(), 1e-4)

    def test_batch_equals_rows(self):
        batch = greedy(self.llm, self.embeds, self.mask, 8, EOS, PAD)
        for row in range(3):
            n = int(self.mask[row].sum())
            alone = greedy(self.llm, self.embeds[row:row + 1, -n:], self.mask[row:row + 1, -n:], 8, EOS, PAD)
            self.assertEqual(batch[row, :alone.shape[1]].tolist(), alone[0].tolist())

    def test_one_beam_is_greedy(self):
        g = greedy(self.llm, self.embeds, self.mask, 6, EOS, PAD)
        b, _ = beam_search(self.llm, self.embeds, self.mask, 1, 6, EOS, PAD, length_penalty=1.0)
        for row in range(3):
            want = [t for t in g[row].tolist() if t != PAD]
            got = [t for t in b[row].tolist() if t != PAD]
            self.assertEqual(got[:len(want)], want)

    def test_min_new_tokens_holds_eos_back(self):
        likely = int(greedy(self.llm, self.embeds[:1], self.mask[:1], 1, EOS, PAD)[0, 0])
        # With the first greedy token declared eos, min_new_tokens=3 must keep it out of the first three steps.
        out = greedy(self.llm, self.embeds[:1], self.mask[:1], 5, likely, PAD, min_new_tokens=3)
        self.assertNotIn(likely, out[0, :3].tolist())
        self.assertEqual(greedy(self.llm, self.embeds[:1], self.mask[:1], 5, likely, PAD)[0, 0].item(), likely)


if __name__ == "__main__":
    unittest.main()
