"""Text generation, image regression and continuation scoring of the Emu2 reference.

Text generation has the semantics of transformers 4.31 `generate()` as emu/emu.py calls it: with `inputs_embeds`
only. 4.31 then starts the generation's `input_ids` empty ([B, 0]), so every length below (min length, max length,
the length in the length penalty, the `cur_len` of the stopping rule) counts generated tokens only, never the
prompt. Emu2 passes `min_length=1`, which with an empty start is `min_new_tokens=1`.

- Logits processors (in 4.31's order): RepetitionPenaltyLogitsProcessor over the generated ids (a score s becomes
  s * p where s < 0, else s / p), then MinLengthLogitsProcessor (eos at -inf while fewer than min_new_tokens ids
  were generated). Greedy applies them to the raw logits, beam search to log_softmax(logits).
- Greedy (greedy_search): argmax; a finished row continues with pad; stops when every row has produced eos or
  after max_new_tokens.
- Beam search (beam_search + BeamSearchScorer + BeamHypotheses): beam scores start [0, -1e9, ...] (float32); each
  step takes torch.topk of the 2 x num_beams best processed log-probs + beam scores over the flattened
  [num_beams * V] row (so ties go as torch.topk orders them); an eos among the first num_beams ranks becomes a
  finished hypothesis scored sum_logprobs / len(hypothesis without eos) ** length_penalty, the others fill the
  num_beams running beams in rank order. A batch row is done when it has num_beams hypotheses and
  early_stopping is True, or (False) the worst kept hypothesis >= best candidate score / cur_len ** length_penalty
  with cur_len the generated length including this step's token (`input_ids.shape[-1] + 1`, 4.31), or ("never")
  the same bound with max_new_tokens in place of cur_len when length_penalty > 0. At the end the running beams of
  unfinished rows are offered as hypotheses; each row returns its num_return_sequences best (popped from the end of
  a stable sort by score), with eos appended when shorter than the longest returned one and max_new_tokens.
- Sampling (sample): the processors, then TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper (4.31's
  order), then one draw per unfinished row from a SplitMix64 stream (noise.py) by inverse CDF, where HF calls
  torch.multinomial: the same seed gives the same ids here and in src/llm/generate.ts.
- Position ids: cumsum(attention_mask) - 1, padded positions 1 (LlamaForCausalLM.prepare_inputs_for_generation).

Image regression follows emu/emu.py generate_image: `[IMG]` is appended; the final (normed) hidden state of the last
position -> project_down is the next visual embedding; project_up of it is the next input (an `<image>` slot); 64
times. The official loop re-runs the whole sequence each step with LlamaModel's default positions (arange, not
cumsum): for a left-padded row that shifts every real position by the same amount, which rotary attention ignores
(it sees position differences only), so the cumsum positions of the runtime give the same result.

Every function runs on the KV cache (llm.decode with past); full_recompute=True re-runs the whole sequence at every
step instead, which the tests use to show the cache changes nothing.
"""
import torch
import torch.nn.functional as F

from .llama import position_ids_for
from .noise import SplitMix64


def left_pad(sequences, pad_token_id: int):
    """Token id lists -> (input_ids [B,T] left padded with pad_token_id, attention_mask [B,T]), as Emu2's tokenizer
    (padding_side "left", padding "longest")."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, length - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, length - len(s):] = 1
    return ids, mask


@torch.no_grad()
def prepare_prompt_embeds(llm, input_ids, attention_mask, image_features, image_token_id: int,
                          video_features=None, video_token_id=None):
    """-> (inputs_embeds [B,T,H], attention_mask): embed_tokens(input_ids) with the rows whose id is `<image>`
    replaced, in row-major order of appearance, by project_up(image_features [K,Q,W]) flattened to [K*Q, H]
    (emu/emu.py: text_embeds[input_ids == IMAGE] = project_up(features).view(-1, c)); likewise the rows whose id is
    `[gIMG]` (video_token_id) by project_up(video_features [F,Qv,W]), video frames pooled to v_query (video.py)."""
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
    if (attention_mask[:, 1:] < attention_mask[:, :-1]).any():
        raise ValueError("attention_mask is not left padded (a 0 follows a 1)")
    embeds = llm.embed_tokens(input_ids)
    slots = (input_ids == image_token_id) & (attention_mask == 1)
    count = 0 if image_features is None else image_features.shape[0] * image_features.shape[1]
    if int(slots.sum()) != count:
        raise ValueError(f"{int(slots.sum())} <image> tokens but {count} image feature rows")
    if count:
        embeds = embeds.clone()
        embeds[slots] = llm.project_up(image_features).reshape(count, embeds.shape[-1]).to(embeds.dtype)
    if video_token_id is not None:
        frame_slots = (input_ids == video_token_id) & (attention_mask == 1)
        frame_rows = 0 if video_features is None else video_features.shape[0] * video_features.shape[1]
        if int(frame_slots.sum()) != frame_rows:
            raise ValueError(f"{int(frame_slots.sum())} [gIMG] tokens but {frame_rows} video frame feature rows")
        if frame_rows:
            embeds = embeds.clone()
            embeds[frame_slots] = llm.project_up(video_features).reshape(frame_rows, embeds.shape[-1]).to(embeds.dtype)
    return embeds, attention_mask


class _Sequence:
    """The decoder over a growing sequence: the prompt, then one new input per step; with the KV cache, or by
    recomputing everything (full_recompute)."""

    def __init__(self, llm, inputs_embeds, attention_mask, full_recompute: bool):
        self.llm, self.full = llm, full_recompute
        self.embeds, self.mask = inputs_embeds, attention_mask
        self.past = None

    def start(self):
        """-> final hidden state of the last prompt position [B,H]."""
        hidden, self.past = self.llm.decode(self.embeds, self.mask, position_ids_for(self.mask, self.mask.shape[1]), None)
        return hidden[:, -1]

    def step(self, new_embeds):
        """new_embeds [B,1,H] -> final hidden state at the new position [B,H]."""
        self.mask = torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=self.mask.dtype)], dim=1)
        self.embeds = torch.cat([self.embeds, new_embeds], dim=1)
        if self.full:
            hidden, _ = self.llm.decode(self.embeds, self.mask, position_ids_for(self.mask, self.mask.shape[1]), None)
        else:
            hidden, self.past = self.llm.decode(new_embeds, self.mask, position_ids_for(self.mask, 1), self.past)
        return hidden[:, -1]

    def reorder(self, rows):
        """Beam search: row i continues what row rows[i] was."""
        self.embeds, self.mask = self.embeds[rows], self.mask[rows]
        if not self.full:
            self.past = [(k[rows], v[rows]) for k, v in self.past]


def process_scores(scores, generated, eos_token_id: int, min_new_tokens: int, repetition_penalty: float):
    """transformers 4.31's processors as generate() builds them for Emu2: repetition penalty, then min length."""
    if repetition_penalty != 1.0 and generated.shape[1] > 0:
        picked = torch.gather(scores, 1, generated)
        picked = torch.where(picked < 0, picked * repetition_penalty, picked / repetition_penalty)
        scores = scores.scatter(1, generated, picked)
    if generated.shape[1] < min_new_tokens:
        scores = scores.clone()
        scores[:, eos_token_id] = -float("inf")
    return scores


@torch.no_grad()
def greedy(llm, inputs_embeds, attention_mask, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
           min_new_tokens: int = 0, repetition_penalty: float = 1.0, full_recompute: bool = False):
    """-> generated ids [B, n] (n <= max_new_tokens; rows that ended continue with pad), as 4.31 greedy_search."""
    seq = _Sequence(llm, inputs_embeds, attention_mask, full_recompute)
    batch = inputs_embeds.shape[0]
    generated = torch.zeros((batch, 0), dtype=torch.long)
    unfinished = torch.ones(batch, dtype=torch.long)
    hidden = seq.start()
    while True:
        scores = process_scores(llm.lm_head(hidden), generated, eos_token_id, min_new_tokens, repetition_penalty)
        tokens = scores.argmax(-1) * unfinished + pad_token_id * (1 - unfinished)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        unfinished = unfinished * (tokens != eos_token_id).long()
        if unfinished.max() == 0 or generated.shape[1] >= max_new_tokens:
            return generated
        hidden = seq.step(llm.embed_tokens(tokens[:, None]))


def warp_scores(scores, temperature: float, top_k: int, top_p: float):
    """transformers 4.31's sampling warpers in generate()'s order, as torch computes them: TemperatureLogitsWarper
    (when != 1), TopKLogitsWarper (when != 0: below the k-th largest -> -inf, ties with it kept), TopPLogitsWarper
    (when < 1: ascending sort, softmax, cumsum; cumulative <= 1 - top_p -> -inf, the most likely token kept).
    HF sorts with torch.sort, which orders equal scores in an implementation-defined way (on torch 1.13's CPU
    kernel neither by index nor against it), so which of several tied tokens at the top-p cut survives is not
    defined there; here, as in src/llm/processors.ts, equal scores keep index order (stable sort): the lower index
    is removed first."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k != 0:
        k = min(max(top_k, 1), scores.shape[-1])
        scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -float("inf"))
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False, stable=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), -float("inf"))
    return scores


def draw(scores_row, uniform: float):
    """The project's draw (src/llm/processors.ts drawFromProbs; torch.multinomial's stream is not portable): the
    probabilities softmax(scores) in float64 rounded to float32, walked in index order with a float64 running sum;
    the first token whose cumulative probability exceeds `uniform` (zero-probability tokens never drawn).
    -> (token, distance of `uniform` from the nearest edge of the token's cumulative interval)."""
    row = scores_row.double()
    probs = torch.exp(row - row.max())
    probs = (probs / probs.sum()).float().double()
    cumulative = torch.cumsum(probs, 0)
    hits = ((cumulative > uniform) & (probs > 0)).nonzero()
    token = int(hits[0]) if len(hits) else int((probs > 0).nonzero()[-1])
    return token, min(uniform - (cumulative[token] - probs[token]).item(), abs(cumulative[token].item() - uniform))


@torch.no_grad()
def sample(llm, inputs_embeds, attention_mask, max_new_tokens: int, eos_token_id: int, pad_token_id: int, seed: int,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_new_tokens: int = 0,
           repetition_penalty: float = 1.0, margins: list = None):
    """-> generated ids [B, n], as 4.31 sample() with the processors and warpers above; the uniforms come from one
    SplitMix64(seed) stream (python/emu2ref/noise.py), one per unfinished row per step, in row order. `margins`,
    when given, receives every draw's distance from the edge of its interval (see draw)."""
    rng = SplitMix64(seed)

    def pick(row):
        token, margin = draw(row, rng.uniform())
        if margins is not None:
            margins.append(margin)
        return token

    seq = _Sequence(llm, inputs_embeds, attention_mask, False)
    batch = inputs_embeds.shape[0]
    generated = torch.zeros((batch, 0), dtype=torch.long)
    unfinished = [True] * batch
    hidden = seq.start()
    while True:
        scores = process_scores(llm.lm_head(hidden), generated, eos_token_id, min_new_tokens, repetition_penalty)
        scores = warp_scores(scores, temperature, top_k, top_p)
        tokens = torch.tensor([pick(scores[b]) if unfinished[b] else pad_token_id for b in range(batch)],
                              dtype=torch.long)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        unfinished = [u and int(t) != eos_token_id for u, t in zip(unfinished, tokens)]
        if not any(unfinished) or generated.shape[1] >= max_new_tokens:
            return generated
        hidden = seq.step(llm.embed_tokens(tokens[:, None]))


class BeamHypotheses:
    """The finished hypotheses of one batch row (4.31 BeamHypotheses): at most num_beams, the worst dropped."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping, max_new_tokens: int):
        self.num_beams, self.length_penalty = num_beams, length_penalty
        self.early_stopping, self.max_new_tokens = early_stopping, max_new_tokens
        self.beams = []  # (score, token list) in insertion order
        self.worst_score = 1e9

    def add(self, tokens: list, sum_logprobs: float) -> None:
        try:
            score = sum_logprobs / (len(tokens) ** self.length_penalty)
        except ZeroDivisionError:
            raise ValueError("eos as the first generated token: transformers 4.31 divides by a zero length here "
                             "(use min_new_tokens >= 1, as Emu2 does)") from None
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, tokens))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.beams) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            return self.worst_score >= best_sum_logprobs / self.max_new_tokens ** self.length_penalty
        return self.worst_score >= best_sum_logprobs / cur_len ** self.length_penalty

    def best(self, n: int = 1):
        """The n best (score, tokens), best first: 4.31 finalize pops the end of a stable sort by score n times."""
        return list(reversed(sorted(self.beams, key=lambda b: b[0])[-n:]))


@torch.no_grad()
def beam_search(llm, inputs_embeds, attention_mask, num_beams: int, max_new_tokens: int, eos_token_id: int,
                pad_token_id: int, length_penalty: float = 1.0, early_stopping=False, min_new_tokens: int = 0,
                repetition_penalty: float = 1.0, num_return_sequences: int = 1, full_recompute: bool = False):
    """-> (sequences [B * n, L] int64, scores [B * n] float32): each row's n = num_return_sequences best hypotheses,
    best first, as 4.31 BeamSearchScorer.finalize returns them, and their length-penalised scores.
    early_stopping: False | True | "never"."""
    if early_stopping not in (False, True, "never"):
        raise ValueError(f"early_stopping must be False, True or 'never', not {early_stopping!r}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences {num_return_sequences} must be between 1 and num_beams {num_beams}")
    batch = inputs_embeds.shape[0]
    rows = torch.arange(batch).repeat_interleave(num_beams)
    seq = _Sequence(llm, inputs_embeds[rows], attention_mask[rows], full_recompute)
    beam_scores = torch.zeros((batch, num_beams), dtype=torch.float32)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    generated = torch.zeros((batch * num_beams, 0), dtype=torch.long)
    hyps = [BeamHypotheses(num_beams, length_penalty, early_stopping, max_new_tokens) for _ in range(batch)]
    done = [False] * batch
    hidden = seq.start()
    while True:
        logprobs = F.log_softmax(llm.lm_head(hidden).float(), dim=-1)
        scores = process_scores(logprobs, generated, eos_token_id, min_new_tokens, repetition_penalty)
        scores = scores + beam_scores[:, None]
        vocab = scores.shape[-1]
        top_scores, top_ids = torch.topk(scores.view(batch, num_beams * vocab), 2 * num_beams, dim=1, largest=True,
                                         sorted=True)
        sources = torch.div(top_ids, vocab, rounding_mode="floor")
        tokens = top_ids % vocab
        cur_len = generated.shape[1] + 1
        next_scores = torch.zeros((batch, num_beams), dtype=torch.float32)
        next_tokens = torch.zeros((batch, num_beams), dtype=torch.long)
        next_rows = torch.zeros((batch, num_beams), dtype=torch.long)
        for b in range(batch):
            if done[b]:
                # 4.31 pads a finished row: score 0, pad token, continuing global row 0 (never read again).
                next_tokens[b] = pad_token_id
                continue
            filled = 0
            for rank in range(2 * num_beams):
                row = b * num_beams + int(sources[b, rank])
                token = int(tokens[b, rank])
                if token == eos_token_id:
                    if rank < num_beams:
                        hyps[b].add(generated[row].tolist(), top_scores[b, rank].item())
                else:
                    next_scores[b, filled], next_tokens[b, filled], next_rows[b, filled] = top_scores[b, rank], token, row
                    filled += 1
                if filled == num_beams:
                    break
            if filled < num_beams:
                raise ValueError(f"fewer than {num_beams} candidates other than eos among the top {2 * num_beams}")
            done[b] = done[b] or hyps[b].is_done(top_scores[b].max().item(), cur_len)
        order = next_rows.view(-1)
        generated = torch.cat([generated[order], next_tokens.view(-1, 1)], dim=1)
        beam_scores = next_scores.view(-1)
        if all(done) or generated.shape[1] >= max_new_tokens:
            break
        seq.reorder(order)
        hidden = seq.step(llm.embed_tokens(next_tokens.view(-1, 1)))

    best = []
    for b in range(batch):
        if not done[b]:
            for beam in range(num_beams):
                row = b * num_beams + beam
                hyps[b].add(generated[row].tolist(), beam_scores[row].item())
        best.extend(hyps[b].best(num_return_sequences))
    longest = max(len(tokens) for _, tokens in best)
    width = min(longest + 1, max_new_tokens)
    out = torch.full((len(best), width), pad_token_id, dtype=torch.long)
    for b, (_, tokens) in enumerate(best):
        out[b, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        if len(tokens) < width:
            out[b, len(tokens)] = eos_token_id
    return out, torch.tensor([score for score, _ in best], dtype=torch.float32)


@torch.no_grad()
def regress_image(llm, inputs_embeds, attention_mask, img_token_id: int, n_query: int = 64,
                  full_recompute: bool = False):
    """-> [B, n_query, W]: the visual embeddings Emu2 regresses after the prompt + `[IMG]`."""
    batch = inputs_embeds.shape[0]
    boi = llm.embed_tokens(torch.full((batch, 1), img_token_id, dtype=torch.long))
    seq = _Sequence(llm, torch.cat([inputs_embeds, boi], dim=1),
                    torch.cat([attention_mask, torch.ones(batch, 1, dtype=attention_mask.dtype)], dim=1), full_recompute)
    hidden = seq.start()
    out = []
    for i in range(n_query):
        visual = llm.project_down(hidden)
        out.append(visual)
        if i + 1 < n_query:
            hidden = seq.step(llm.project_up(visual)[:, None])
    return torch.stack(out, dim=1)


@torch.no_grad()
def score_continuations(llm, inputs_embeds, attention_mask, candidates, full_recompute: bool = False):
    """Classification by ranking: for each context row and each candidate token list, the log-probs
    of the candidate's tokens after the context, from log_softmax of the raw logits. The context runs once and its
    KV cache serves every candidate (full_recompute: context + candidate from scratch each time).
    -> (sums [B, K], means [B, K]) float32."""
    batch = inputs_embeds.shape[0]
    if any(len(c) == 0 for c in candidates):
        raise ValueError("an empty candidate has no tokens to score")
    context_hidden, context_past = llm.decode(inputs_embeds, attention_mask,
                                              position_ids_for(attention_mask, attention_mask.shape[1]), None)
    sums = torch.zeros((batch, len(candidates)), dtype=torch.float32)
    means = torch.zeros((batch, len(candidates)), dtype=torch.float32)
    for k, candidate in enumerate(candidates):
        ids = torch.tensor([candidate], dtype=torch.long).expand(batch, -1)
        mask = torch.cat([attention_mask, torch.ones(batch, len(candidate), dtype=attention_mask.dtype)], dim=1)
        if full_recompute:
            full, _ = llm.decode(torch.cat([inputs_embeds, llm.embed_tokens(ids)], dim=1), mask,
                                 position_ids_for(mask, mask.shape[1]), None)
            predicting = full[:, -len(candidate) - 1:-1]
        else:
            # The hidden state that predicts candidate token j is the context's last one for j = 0, else token j-1's.
            predicting = context_hidden[:, -1:]
            if len(candidate) > 1:
                inner, _ = llm.decode(llm.embed_tokens(ids[:, :-1]), mask[:, :-1],
                                      position_ids_for(mask[:, :-1], len(candidate) - 1), context_past)
                predicting = torch.cat([predicting, inner], dim=1)
        logprobs = F.log_softmax(llm.lm_head(predicting).float(), dim=-1)
        picked = torch.gather(logprobs, 2, ids[:, :, None])[:, :, 0]
        sums[:, k] = picked.sum(dim=1)
        means[:, k] = picked.mean(dim=1)
    return sums, means
