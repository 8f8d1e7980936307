"""The generation reference on a real (tiny, seeded) Emu2 decoder: the KV cache changes nothing, a left-padded batch
equals its rows, one beam is greedy, min_new_tokens holds eos back, beam scores are the length-penalised sums of the
returned tokens' log-probs, image regression equals emu/emu.py's full re-run loop, and continuation scores reuse
the context's cache correctly.

    cd python && /usr/bin/python3 -m unittest tests.test_generation
"""
import os
import sys
import unittest

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu2ref.generation import (BeamHypotheses, beam_search, draw, greedy, left_pad, prepare_prompt_embeds,  # noqa: E402
                                regress_image, sample, score_continuations, warp_scores)
from emu2ref.llama import build_vision_llm  # noqa: E402

CONFIG = {"vision": dict(image_size=28, patch_size=14, width=16, layers=1, heads=2, mlp_hidden=32),
          "llm": dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, rms_norm_eps=1e-6)}
EOS, PAD, IMAGE, BOI = 2, 0, 60, 61
PROMPTS = [[1, 5, 9, 13, 40], [1, 7], [1, 20, 21, 22]]


def unpadded(row):
    return [t for t in row if t != PAD]


class GenerationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        _, cls.llm = build_vision_llm(CONFIG, 3)
        # A flatter next-token distribution than the packages' (their lm_head is scaled for peaked logits), so that
        # beams overtake each other and the cache reorder matters.
        with torch.no_grad():
            cls.llm.lm_head.weight.mul_(0.5)
        cls.ids, cls.mask = left_pad(PROMPTS, PAD)
        cls.embeds, _ = prepare_prompt_embeds(cls.llm, cls.ids, cls.mask, None, IMAGE)
        # Random weights rarely pick the real eos; a token the model does pick, named eos, ends hypotheses.
        first = greedy(cls.llm, cls.embeds, cls.mask, 8, EOS, PAD)
        cls.likely = int(torch.mode(first.flatten()).values)

    def row(self, i):
        n = len(PROMPTS[i])
        return self.embeds[i:i + 1, -n:], self.mask[i:i + 1, -n:]

    def test_prompt_embeds_put_features_on_image_rows_in_order(self):
        ids, mask = left_pad([[1, IMAGE, IMAGE, 5], [1, 6, IMAGE, IMAGE, IMAGE, IMAGE]], PAD)
        features = torch.randn(3, 2, CONFIG["vision"]["width"])
        embeds, _ = prepare_prompt_embeds(self.llm, ids, mask, features, IMAGE)
        up = self.llm.project_up(features)
        torch.testing.assert_close(embeds[0, 3:5], up[0])
        torch.testing.assert_close(embeds[1, 2:4], up[1])
        torch.testing.assert_close(embeds[1, 4:6], up[2])
        torch.testing.assert_close(embeds[0, 5], self.llm.embed_tokens(torch.tensor(5)))
        with self.assertRaises(ValueError):
            prepare_prompt_embeds(self.llm, ids, mask, features[:2], IMAGE)

    def test_greedy_cache_equals_full_recompute(self):
        for kwargs in ({}, {"repetition_penalty": 1.3, "min_new_tokens": 3}, {"eos_token_id": self.likely}):
            args = {"eos_token_id": EOS, **kwargs}
            a = greedy(self.llm, self.embeds, self.mask, 8, pad_token_id=PAD, **args)
            b = greedy(self.llm, self.embeds, self.mask, 8, pad_token_id=PAD, full_recompute=True, **args)
            self.assertTrue(torch.equal(a, b), kwargs)

    def test_beam_cache_equals_full_recompute(self):
        for eos in (EOS, self.likely):
            for lp, stop in ((-1.0, False), (1.0, "never"), (2.0, True)):
                a, sa = beam_search(self.llm, self.embeds, self.mask, 3, 6, eos, PAD, length_penalty=lp,
                                    early_stopping=stop, min_new_tokens=1)
                b, sb = beam_search(self.llm, self.embeds, self.mask, 3, 6, eos, PAD, length_penalty=lp,
                                    early_stopping=stop, min_new_tokens=1, full_recompute=True)
                self.assertTrue(torch.equal(a, b), (eos, lp, stop))
                torch.testing.assert_close(sa, sb, rtol=0, atol=1e-4)

    def test_batch_equals_rows(self):
        for eos in (EOS, self.likely):
            batch = greedy(self.llm, self.embeds, self.mask, 8, eos, PAD, min_new_tokens=1)
            beams, scores = beam_search(self.llm, self.embeds, self.mask, 4, 7, eos, PAD, length_penalty=-1.0,
                                        min_new_tokens=1)
            for i in range(len(PROMPTS)):
                alone = greedy(self.llm, *self.row(i), 8, eos, PAD, min_new_tokens=1)
                self.assertEqual(unpadded(batch[i].tolist()), unpadded(alone[0].tolist()))
                seq, score = beam_search(self.llm, *self.row(i), 4, 7, eos, PAD, length_penalty=-1.0, min_new_tokens=1)
                self.assertEqual(unpadded(beams[i].tolist()), unpadded(seq[0].tolist()))
                torch.testing.assert_close(scores[i], score[0], rtol=0, atol=1e-4)

    def test_one_beam_is_greedy(self):
        g = greedy(self.llm, self.embeds, self.mask, 6, EOS, PAD)
        b, _ = beam_search(self.llm, self.embeds, self.mask, 1, 6, EOS, PAD)
        self.assertTrue(torch.equal(b, g))
        # With an eos the model produces: greedy stops at it; one beam stops there when early_stopping is True.
        g = greedy(self.llm, self.embeds, self.mask, 8, self.likely, PAD, min_new_tokens=1)
        b, _ = beam_search(self.llm, self.embeds, self.mask, 1, 8, self.likely, PAD, early_stopping=True,
                           min_new_tokens=1)
        self.assertIn(self.likely, g.flatten().tolist())
        for i in range(len(PROMPTS)):
            self.assertEqual(unpadded(b[i].tolist()), unpadded(g[i].tolist()))

    def test_min_new_tokens_holds_eos_back(self):
        embeds, mask = self.row(0)
        first = int(greedy(self.llm, embeds, mask, 1, EOS, PAD)[0, 0])
        self.assertEqual(greedy(self.llm, embeds, mask, 5, first, PAD).tolist(), [[first]])
        out = greedy(self.llm, embeds, mask, 5, first, PAD, min_new_tokens=3)[0].tolist()
        self.assertNotIn(first, out[:3])
        seq, _ = beam_search(self.llm, embeds, mask, 3, 5, first, PAD, min_new_tokens=3)
        self.assertNotIn(first, seq[0, :3].tolist())

    def test_beam_scores_are_length_penalised_logprob_sums(self):
        """4.31: the score of a hypothesis is sum(log-probs, eos included) / (generated length without eos) ** lp."""
        for lp in (-1.0, 1.0, 0.5):
            seqs, scores = beam_search(self.llm, self.embeds, self.mask, 3, 6, self.likely, PAD, length_penalty=lp,
                                       min_new_tokens=1)
            for i in range(len(PROMPTS)):
                tokens = unpadded(seqs[i].tolist())
                sums, _ = score_continuations(self.llm, *self.row(i), [tokens], full_recompute=True)
                length = len(tokens) - (1 if tokens[-1] == self.likely else 0)
                self.assertAlmostEqual(scores[i].item(), sums[0, 0].item() / length ** lp, places=3)

    def test_beam_as_wide_as_the_vocabulary_is_exhaustive(self):
        """num_beams = V keeps every first token (the -1e9 start scores keep the beams distinct), so two steps
        find the best of all V x V pairs (eos held back by min_new_tokens, length_penalty 0: plain sums)."""
        vocab = CONFIG["llm"]["vocab_size"]
        embeds, mask = self.row(2)
        for full_recompute in (False, True):
            seq, score = beam_search(self.llm, embeds, mask, vocab, 2, EOS, PAD, length_penalty=0.0, min_new_tokens=2,
                                     full_recompute=full_recompute)
            with torch.no_grad():
                first = F.log_softmax(self.llm.lm_head(self.llm.decode(embeds, mask, torch.arange(4)[None])[0][0, -1]), -1)
                firsts = torch.arange(vocab)
                both = torch.cat([embeds.expand(vocab, -1, -1), self.llm.embed_tokens(firsts)[:, None]], dim=1)
                hidden, _ = self.llm.decode(both, torch.ones(vocab, 5, dtype=torch.long), torch.arange(5)[None].expand(vocab, -1))
                second = F.log_softmax(self.llm.lm_head(hidden[:, -1]), -1)
            total = first[:, None] + second
            total[EOS, :] = -float("inf")
            total[:, EOS] = -float("inf")
            best = int(total.argmax())
            self.assertEqual(seq[0].tolist(), [best // vocab, best % vocab])
            self.assertAlmostEqual(score[0].item(), total.max().item(), places=4)

    def test_sampling_top_k_1_is_greedy_and_the_seed_fixes_the_draws(self):
        greedy_ids = greedy(self.llm, self.embeds, self.mask, 6, EOS, PAD)
        self.assertTrue(torch.equal(sample(self.llm, self.embeds, self.mask, 6, EOS, PAD, seed=3, top_k=1), greedy_ids))
        a = sample(self.llm, self.embeds, self.mask, 6, EOS, PAD, seed=3, temperature=2.0)
        self.assertTrue(torch.equal(a, sample(self.llm, self.embeds, self.mask, 6, EOS, PAD, seed=3, temperature=2.0)))
        self.assertFalse(torch.equal(a, sample(self.llm, self.embeds, self.mask, 6, EOS, PAD, seed=4, temperature=2.0)))

    def test_warpers_and_draw(self):
        scores = torch.tensor([[0.0, 2.0, 1.0, 2.0, -1.0]])
        self.assertEqual(warp_scores(scores, 1.0, 2, 1.0).isinf().tolist(), [[True, False, True, False, True]])
        # Probabilities 1/4 each: the cumulative sums 0.25, 0.5 reach 1 - 0.5, so the two lowest indices go.
        self.assertEqual(warp_scores(torch.zeros(1, 4), 1.0, 0, 0.5).isinf().tolist(), [[True, True, False, False]])
        torch.testing.assert_close(warp_scores(scores, 2.0, 0, 1.0), scores / 2)
        self.assertEqual(draw(torch.tensor([0.0, -float("inf"), 0.0]), 0.49)[0], 0)
        self.assertEqual(draw(torch.tensor([0.0, -float("inf"), 0.0]), 0.51)[0], 2)

    def test_beam_hypotheses_follow_transformers_431(self):
        hyps = BeamHypotheses(num_beams=2, length_penalty=1.0, early_stopping=False, max_new_tokens=10)
        hyps.add([5, 6], -2.0)
        hyps.add([5, 6, 7, 8], -6.0)
        hyps.add([5], -0.2)  # better than the worst (-1.5): replaces it
        self.assertEqual(sorted(s for s, _ in hyps.beams), [-1.0, -0.2])
        self.assertEqual(hyps.worst_score, -1.0)
        # Best running sum -2.1 with 2 tokens generated counting this step's (4.31's input_ids.shape[-1] + 1):
        # -2.1 / 2 = -1.05 <= -1.0, so done; the pre-4.27 length (1) would give -2.1 and not be done either way.
        self.assertTrue(hyps.is_done(-2.1, 2))
        self.assertFalse(hyps.is_done(-1.9, 2))
        never = BeamHypotheses(num_beams=1, length_penalty=1.0, early_stopping="never", max_new_tokens=10)
        never.add([5, 6], -2.0)
        self.assertFalse(never.is_done(-9.0, 3))  # -9 / 10 (max length) > -1
        self.assertTrue(never.is_done(-11.0, 3))
        with self.assertRaises(ValueError):
            BeamHypotheses(1, -1.0, False, 10).add([], -1.0)

    def test_regression_equals_official_loop(self):
        """emu/emu.py generate_image: re-run prompt + [IMG] + k <image> each step, the last k <image> rows holding
        project_up of the previous outputs, LlamaModel's default arange positions; take [IMG] and those rows."""
        n = 6
        ids, mask = left_pad([[1, 5, 9, 13, 40], [1, 7]], PAD)
        embeds, _ = prepare_prompt_embeds(self.llm, ids, mask, None, IMAGE)
        cached = regress_image(self.llm, embeds, mask, BOI, n)
        full = regress_image(self.llm, embeds, mask, BOI, n, full_recompute=True)
        torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)
        targets = None
        with torch.no_grad():
            for k in range(n):
                step_ids = torch.cat([ids, torch.tensor([[BOI] + [IMAGE] * k] * 2)], dim=1)
                step_mask = torch.cat([mask, torch.ones(2, k + 1, dtype=torch.long)], dim=1)
                step = self.llm.embed_tokens(step_ids)
                if targets is not None:
                    step[:, -k:] = self.llm.project_up(targets)
                positions = torch.arange(step_ids.shape[1])[None].expand(2, -1)
                hidden, _ = self.llm.decode(step, step_mask, positions, None)
                targets = self.llm.project_down(hidden[:, -(k + 1):])
        torch.testing.assert_close(cached, targets, rtol=0, atol=1e-5)

    def test_continuation_scores(self):
        candidates = [[17], [30, 31, 32], [self.likely, 4]]
        sums, means = score_continuations(self.llm, self.embeds, self.mask, candidates)
        full_sums, full_means = score_continuations(self.llm, self.embeds, self.mask, candidates, full_recompute=True)
        torch.testing.assert_close(sums, full_sums, rtol=0, atol=1e-4)
        torch.testing.assert_close(means, full_means, rtol=0, atol=1e-5)
        # By hand for row 1 and the second candidate: one decode of prompt + candidate, log_softmax, pick.
        embeds, mask = self.row(1)
        ids = torch.tensor([candidates[1]])
        whole = torch.cat([embeds, self.llm.embed_tokens(ids)], dim=1)
        with torch.no_grad():
            hidden, _ = self.llm.decode(whole, torch.ones(1, whole.shape[1], dtype=torch.long),
                                        torch.arange(whole.shape[1])[None], None)
            logprobs = F.log_softmax(self.llm.lm_head(hidden[0, -4:-1]), dim=-1)
        want = logprobs[torch.arange(3), ids[0]]
        self.assertAlmostEqual(sums[1, 1].item(), want.sum().item(), places=4)
        self.assertAlmostEqual(means[1, 1].item(), want.mean().item(), places=5)


if __name__ == "__main__":
    unittest.main()
