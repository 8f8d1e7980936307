"""Text generation and image regression of the Emu2 reference, with the semantics of transformers 4.31's generate()
as Emu2 calls it (inputs_embeds only, so the generation's input_ids start empty and every length below counts
generated tokens only):

- processors on the log-softmaxed scores (beam search) or raw logits (greedy): RepetitionPenaltyLogitsProcessor over
  the generated ids, MinLengthLogitsProcessor (eos at -inf while fewer than min_new_tokens were generated);
- greedy: argmax; finished rows continue with pad;
- beam search (BeamSearchScorer, early_stopping=False): beam scores start [0, -1e9, ...]; each step the top
  2 x num_beams of log_softmax + processors + beam score over num_beams x V; an eos candidate within the first
  num_beams ranks becomes a hypothesis scored sum_logprobs / len(hypothesis without eos) ** length_penalty; a batch
  row is done when it has num_beams hypotheses and the worst is >= best_running / cur_len ** length_penalty
  (cur_len = generated length before the step's token, the 4.31 form); at the end the running beams are added as
  hypotheses and the best one is returned with eos appended when it is shorter than max_new_tokens;
- image regression (emu/emu.py generate_image): `[IMG]` appended, the final normed hidden state of the last
  position -> project_down is the next visual embedding, project_up of it is the next input, 64 times.

Every function runs on the KV cache (llm.decode with past); full_recompute=True re-runs the whole sequence each step,
which the tests use to show the cache changes nothing.
"""
import torch
import torch.nn.functional as F

from .export_llm import position_ids_for


def prompt_embeds(llm, input_ids, image_features, image_token_id: int):
    """Embed ids and put project_up(features) [K,Q,W] on the <image> rows in order of appearance."""
    embeds = llm.embed_tokens(input_ids)
    if image_features is not None and image_features.numel() > 0:
        rows = input_ids == image_token_id
        if rows.sum().item() != image_features.shape[0] * image_features.shape[1]:
            raise ValueError("<image> tokens do not match the image features")
        embeds = embeds.clone()
        embeds[rows] = llm.project_up(image_features).reshape(-1, embeds.shape[-1])
    return embeds


def left_pad(sequences, pad_id: int):
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, length - len(s):] = torch.tensor(s)
        mask[i, length - len(s):] = 1
    return ids, mask


class _Runner:
    """One forward step with the KV cache, or by recomputing everything (full_recompute)."""

    def __init__(self, llm, embeds, mask, full_recompute: bool):
        self.llm, self.embeds, self.mask, self.full = llm, embeds, mask, full_recompute
        self.past = None

    def first(self):
        hidden, self.past = self.llm.decode(self.embeds, self.mask, position_ids_for(self.mask, self.mask.shape[1]), None)
        return hidden[:, -1]

    def step(self, new_embeds):
        self.mask = torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=torch.long)], dim=1)
        self.embeds = torch.cat([self.embeds, new_embeds], dim=1)
        if self.full:
            hidden, self.past = self.llm.decode(self.embeds, self.mask, position_ids_for(self.mask, self.mask.shape[1]), None)
        else:
            hidden, self.past = self.llm.decode(new_embeds, self.mask, position_ids_for(self.mask, 1), self.past)
        return hidden[:, -1]

    def reorder(self, index):
        self.embeds, self.mask = self.embeds[index], self.mask[index]
        self.past = [(k[index], v[index]) for k, v in self.past]


def _process(scores, generated, repetition_penalty: float, min_new_tokens: int, eos_token_id: int):
    if repetition_penalty != 1.0 and generated.shape[1] > 0:
        picked = torch.gather(scores, 1, generated)
        picked = torch.where(picked < 0, picked * repetition_penalty, picked / repetition_penalty)
        scores = scores.scatter(1, generated, picked)
    if generated.shape[1] < min_new_tokens:
        scores = scores.clone()
        scores[:, eos_token_id] = -float("inf")
    return scores


@torch.no_grad()
def greedy(llm, embeds, mask, max_new_tokens: int, eos_token_id: int, pad_token_id: int, min_new_tokens: int = 0,
           repetition_penalty: float = 1.0, full_recompute: bool = False):
    runner = _Runner(llm, embeds, mask, full_recompute)
    batch = embeds.shape[0]
    generated = torch.zeros((batch, 0), dtype=torch.long)
    unfinished = torch.ones(batch, dtype=torch.long)
    hidden = runner.first()
    for _ in range(max_new_tokens):
        scores = _process(llm.lm_head(hidden), generated, repetition_penalty, min_new_tokens, eos_token_id)
        tokens = scores.argmax(-1) * unfinished + pad_token_id * (1 - unfinished)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        unfinished = unfinished * (tokens != eos_token_id).long()
        if unfinished.max() == 0 or generated.shape[1] == max_new_tokens:
            break
        hidden = runner.step(llm.embed_tokens(tokens[:, None]))
    return generated


def _add_hypothesis(hyps: list, worst: float, score: float, tokens, num_beams: int) -> float:
    """BeamHypotheses.add: keep the num_beams best (score, tokens); returns the new worst kept score."""
    if len(hyps) < num_beams or score > worst:
        hyps.append((score, tokens))
        if len(hyps) > num_beams:
            ranked = sorted((s, i) for i, (s, _) in enumerate(hyps))
            del hyps[ranked[0][1]]
            return ranked[1][0]
        return min(score, worst)
    return worst


@torch.no_grad()
def beam_search(llm, embeds, mask, num_beams: int, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
                length_penalty: float = 1.0, min_new_tokens: int = 0, repetition_penalty: float = 1.0,
                full_recompute: bool = False):
    """-> (sequences [B, L] padded with pad, scores [B]) for the best hypothesis of each batch row."""
    batch = embeds.shape[0]
    index = torch.arange(batch).repeat_interleave(num_beams)
    runner = _Runner(llm, embeds[index], mask[index], full_recompute)
    beam_scores = torch.zeros(batch, num_beams)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    generated = torch.zeros((batch * num_beams, 0), dtype=torch.long)
    hyps = [[] for _ in range(batch)]  # (score, tokens) per batch row
    worst = [1e9] * batch
    done = [False] * batch
    hidden = runner.first()
    vocab = None
    for step in range(max_new_tokens):
        logits = llm.lm_head(hidden)
        vocab = logits.shape[-1]
        scores = _process(F.log_softmax(logits, dim=-1), generated, repetition_penalty, min_new_tokens, eos_token_id)
        scores = scores + beam_scores[:, None]
        top_scores, top_tokens = torch.topk(scores.view(batch, num_beams * vocab), 2 * num_beams, dim=1, largest=True,
                                            sorted=True)
        next_indices = torch.div(top_tokens, vocab, rounding_mode="floor")
        next_tokens = top_tokens % vocab
        new_scores = torch.zeros(batch, num_beams)
        new_tokens = torch.full((batch, num_beams), pad_token_id, dtype=torch.long)
        new_index = torch.zeros((batch, num_beams), dtype=torch.long)
        cur_len = generated.shape[1]
        for b in range(batch):
            if done[b]:
                new_index[b] = b * num_beams
                continue
            filled = 0
            for rank in range(2 * num_beams):
                token, score, source = next_tokens[b, rank].item(), top_scores[b, rank].item(), next_indices[b, rank].item()
                row = b * num_beams + source
                if token == eos_token_id:
                    if rank >= num_beams:
                        continue
                    hyp = generated[row].clone()
                    worst[b] = _add_hypothesis(hyps[b], worst[b], score / (hyp.shape[-1] ** length_penalty), hyp, num_beams)
                else:
                    new_scores[b, filled], new_tokens[b, filled], new_index[b, filled] = score, token, row
                    filled += 1
                if filled == num_beams:
                    break
            best_running = top_scores[b].max().item()
            done[b] = done[b] or (len(hyps[b]) >= num_beams and worst[b] >= best_running / (cur_len ** length_penalty)
                                  if cur_len > 0 else False)
        order = new_index.view(-1)
        generated = torch.cat([generated[order], new_tokens.view(-1, 1)], dim=1)
        beam_scores = new_scores.view(-1)
        if all(done) or generated.shape[1] >= max_new_tokens:
            break
        runner.reorder(order)
        hidden = runner.step(llm.embed_tokens(new_tokens.view(-1, 1)))
    results, result_scores = [], []
    for b in range(batch):
        if not done[b]:
            for beam in range(num_beams):
                row = b * num_beams + beam
                score = beam_scores[row].item() / (generated.shape[1] ** length_penalty)
                worst[b] = _add_hypothesis(hyps[b], worst[b], score, generated[row].clone(), num_beams)
        best_score, best = max(hyps[b], key=lambda h: h[0])
        tokens = best.tolist()
        if len(tokens) < max_new_tokens:
            tokens.append(eos_token_id)
        results.append(tokens)
        result_scores.append(best_score)
    width = max(len(t) for t in results)
    out = torch.full((batch, width), pad_token_id, dtype=torch.long)
    for b, t in enumerate(results):
        out[b, :len(t)] = torch.tensor(t)
    return out, torch.tensor(result_scores)


@torch.no_grad()
def regress_image(llm, embeds, mask, img_token_id: int, n_query: int = 64, full_recompute: bool = False):
    """-> [B, n_query, W]: the visual embeddings Emu2 regresses after `[IMG]`."""
    boi = llm.embed_tokens(torch.full((embeds.shape[0], 1), img_token_id, dtype=torch.long))
    runner = _Runner(llm, torch.cat([embeds, boi], dim=1), torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=torch.long)], 1),
                     full_recompute)
    hidden = runner.first()
    out = []
    for i in range(n_query):
        visual = llm.project_down(hidden)
        out.append(visual)
        if i + 1 < n_query:
            hidden = runner.step(llm.project_up(visual)[:, None])
    return torch.stack(out, dim=1)


@torch.no_grad()
def score_continuations(llm, embeds, mask, candidates):
    """Sum of log-probs of each candidate's tokens after the context (classification by ranking); -> [len(candidates)]
    per batch row 0. Each candidate is run after the same context."""
    scores = []
    for candidate in candidates:
        ids = torch.tensor([candidate])
        full = torch.cat([embeds[:1], llm.embed_tokens(ids)], dim=1)
        full_mask = torch.cat([mask[:1], torch.ones(1, len(candidate), dtype=torch.long)], dim=1)
        hidden, _ = llm.decode(full, full_mask, position_ids_for(full_mask, full_mask.shape[1]), None)
        logp = F.log_softmax(llm.lm_head(hidden[0, -len(candidate) - 1:-1]), dim=-1)
        scores.append(logp[torch.arange(len(candidate)), ids[0]].sum().item())
    return torch.tensor(scores)
