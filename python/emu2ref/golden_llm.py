"""Goldens of the visual encoder and the LLM (fixtures/golden/<package>/llm/): what the TypeScript runtime must
reproduce from the fixture images and prompts, with the package's own template, tokenizer and weights.

meta["arrays"] says, for every array, what produced it; meta["prompts"] lists the prompts (template text with
placeholders, images in placeholder order); the settings of every generation run are in meta too.
"""
import copy
import os

import numpy as np
import torch

from .eva_vit import pool_visual_features
from .generation import (beam_search, greedy, left_pad, prepare_prompt_embeds, regress_image, sample,
                         score_continuations, warp_scores)
from .golden import GoldenWriter, read_golden
from .preprocess import load_rgb, preprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
IMAGES = ["landscape.png", "night.jpg", "blocks.png"]
PLACEHOLDER = "[<IMG_PLH>]"
PIXEL_STRIDE = 16
LOGITS_COLUMN_STRIDE = 128
GREEDY = {"max_new_tokens": 12, "min_new_tokens": 1}
BEAM = {"num_beams": 5, "length_penalty": -1.0, "max_new_tokens": 10, "min_new_tokens": 1, "early_stopping": False}
REPETITION_PENALTY = 1.3
# Beam runs that the plain BEAM goldens cannot tell apart from plausible bugs (names -> settings; "eos": "frequent"
# names meta.frequent_eos as eos so that hypotheses finish). beam_modes runs once per early_stopping mode.
BEAM_CASES = {
    "beam_lp2": {"prompt": 0, "num_beams": 5, "max_new_tokens": 10, "length_penalty": 2.0, "min_new_tokens": 1,
                 "repetition_penalty": 1.0, "num_return_sequences": 5, "early_stopping": False, "eos": "frequent"},
    "beam_lp0": {"prompt": 0, "num_beams": 5, "max_new_tokens": 10, "length_penalty": 0.0, "min_new_tokens": 1,
                 "repetition_penalty": 1.0, "num_return_sequences": 3, "early_stopping": False, "eos": "frequent"},
    "beam_repetition": {"prompt": 2, "num_beams": 5, "max_new_tokens": 10, "length_penalty": 2.0, "min_new_tokens": 1,
                        "repetition_penalty": REPETITION_PENALTY, "num_return_sequences": 2, "early_stopping": False,
                        "eos": "frequent"},
    "beam_min_new_tokens": {"prompt": 0, "num_beams": 5, "max_new_tokens": 10, "length_penalty": 0.0,
                            "min_new_tokens": 8, "repetition_penalty": 1.0, "num_return_sequences": 3,
                            "early_stopping": False, "eos": "frequent"},
}
# early_stopping False / True / "never": a prompt and settings where the modes can differ; eos is the first token of
# the prompt's greedy and beam continuations for which all three give different hypotheses (else the first with the
# most distinct results; meta.beam_modes.distinct says how many).
BEAM_MODES = {"prompt": 2, "num_beams": 3, "max_new_tokens": 12, "length_penalty": 1.0, "min_new_tokens": 1,
              "repetition_penalty": 1.0, "num_return_sequences": 3}
EARLY_STOPPING = {"false": False, "true": True, "never": "never"}
# Sampling (seeded SplitMix64 uniforms, python/emu2ref/generation.py sample): each case's seed is the first of 0, 1, ...
# whose every draw lies at least DRAW_MARGIN from a boundary of the cumulative distribution, so that the ONNX vs
# PyTorch logit noise (~1e-6) cannot flip a draw.
SAMPLING_CASES = {
    "sample_temperature": {"temperature": 1.8, "top_k": 0, "top_p": 1.0},
    "sample_top_k": {"temperature": 1.8, "top_k": 5, "top_p": 1.0},
    "sample_top_p": {"temperature": 1.8, "top_k": 0, "top_p": 0.6},
    "sample_all": {"temperature": 1.3, "top_k": 40, "top_p": 0.9, "repetition_penalty": 1.2, "min_new_tokens": 2},
}
SAMPLING_NEW_TOKENS = 12
DRAW_MARGIN = 1e-4
# The warpers on rows with many ties (values on a 0.5 grid), as HF computes them with torch.topk / torch.sort.
WARP_CASES = {"top_k_3": (1.0, 3, 1.0), "top_k_40": (1.0, 40, 1.0), "top_p_0.3": (1.0, 0, 0.3),
              "top_p_0.75": (1.0, 0, 0.75), "temperature_0.7_top_k_20_top_p_0.5": (0.7, 20, 0.5)}
REGRESSION_QUERIES = 64
CANDIDATES = ["yes", "no", "a red car"]
# (content, images in placeholder order): no image, one, two; the chat template wraps each content.
CONTENTS = [
    ("A red car parked by the sea.", []),
    (f"{PLACEHOLDER}Describe the image in details:", ["landscape.png"]),
    (f"{PLACEHOLDER}[day, green, a mountain].{PLACEHOLDER}", ["landscape.png", "night.jpg"]),
]


def prompt_text(template: str, content: str, system_message: str) -> str:
    """base and gen: the content as is; chat: `<system> [USER]: <content> [ASSISTANT]:` (the Emu2-Chat demo's format)."""
    if template == "chat":
        return f"{system_message} [USER]: {content} [ASSISTANT]:"
    return content


def expand_placeholders(text: str, n_query: int) -> str:
    return text.replace(PLACEHOLDER, "[IMG]" + "<image>" * n_query + "[/IMG]")


class _Goldens:
    def __init__(self, folder: str):
        self.writer = GoldenWriter(folder)
        self.described = {}

    def add(self, name: str, array, what: str) -> None:
        self.writer.add(name, array)
        self.described[name] = what

    def save(self, meta: dict) -> None:
        self.writer.meta = {**meta, "arrays": self.described}
        self.writer.save()


def _unpadded(row, pad: int) -> list:
    return [t for t in row if t != pad]


@torch.no_grad()
def write_llm_goldens(golden_dir: str, vision, llm, tokenizer, package_config: dict) -> dict:
    """package_config: n_query, image_size, mean, std, image_token_id (<image>), img_token_id ([IMG]),
    eos_token_id, pad_token_id, template (base | chat | gen), system_message (chat).
    Returns {"cond": [1,64,W] regression of prompt 0, "uncond": [1,64,W] regression of the empty prompt}
    (the visual decoder's goldens start from them)."""
    cfg = package_config
    n_query, eos, pad = cfg["n_query"], cfg["eos_token_id"], cfg["pad_token_id"]
    out = _Goldens(golden_dir)

    features = {}
    for name in IMAGES:
        pixels = torch.from_numpy(preprocess(load_rgb(os.path.join(ROOT, "fixtures", "images", name)),
                                             cfg["image_size"], cfg["mean"], cfg["std"]))[None]
        hidden = vision(pixels)
        features[name] = pool_visual_features(hidden, n_query)
        out.add(f"pixel_values.{name}.every_{PIXEL_STRIDE}th", pixels[:, :, ::PIXEL_STRIDE, ::PIXEL_STRIDE],
                f"preprocess(fixtures/images/{name}) [1,3,S,S] at rows and columns 0, {PIXEL_STRIDE}, ... "
                "(the full tensor is 2.4 MB; fixtures/golden/vision checks preprocessing in full)")
        out.add(f"pixel_values.{name}.channel_mean", pixels.mean(dim=(2, 3)),
                f"mean over all pixels of each channel of preprocess(fixtures/images/{name}), [1,3]")
        out.add(f"features.{name}", features[name],
                f"pool_visual_features(visual_encoder(pixel_values of {name}), n_query={n_query}) [1,Q,W]")
        if name == IMAGES[0]:
            out.add(f"last_hidden_state.{name}", hidden, f"visual_encoder(pixel_values of {name}) [1,1+N,W]")

    def embeds_for(ids_rows, images_rows):
        ids, mask = left_pad(ids_rows, pad)
        rows = [features[n] for images in images_rows for n in images]
        return prepare_prompt_embeds(llm, ids, mask, torch.cat(rows) if rows else None, cfg["image_token_id"])

    prompts, all_ids, alone = [], [], []
    for i, (content, images) in enumerate(CONTENTS):
        text = prompt_text(cfg["template"], content, cfg.get("system_message") or "")
        ids = tokenizer.encode(expand_placeholders(text, n_query), add_bos=True)
        prompts.append({"text": text, "images": images, "tokens": len(ids)})
        all_ids.append(ids)
        out.add(f"p{i}.ids", np.array(ids, dtype=np.int64),
                f"tokenizer.encode(prompt {i} with each placeholder -> [IMG] + {n_query} x <image> + [/IMG]), bos first")
        embeds, mask = embeds_for([ids], [images])
        hidden, _ = llm.decode(embeds, mask, torch.arange(len(ids))[None], None)
        out.add(f"p{i}.logits_last", llm.lm_head(hidden[:, -1]),
                f"lm_head(decoder(prompt {i} embeddings, images spliced)) at the last position [1,V]")
        if i == 0:
            logits = llm.lm_head(hidden)
            out.add("p0.logits.argmax", logits.argmax(-1), "argmax over V of the prompt-0 logits at every position [1,T]")
            out.add("p0.logits.logsumexp", torch.logsumexp(logits, -1),
                    "logsumexp over V of the prompt-0 logits at every position [1,T]")
            out.add(f"p0.logits.every_{LOGITS_COLUMN_STRIDE}th", logits[:, :, ::LOGITS_COLUMN_STRIDE],
                    f"the prompt-0 logits at every position, vocabulary columns 0, {LOGITS_COLUMN_STRIDE}, ... [1,T,*]")
        tokens = greedy(llm, embeds, mask, GREEDY["max_new_tokens"], eos, pad, min_new_tokens=GREEDY["min_new_tokens"])
        out.add(f"p{i}.greedy", tokens, f"greedy continuation of prompt {i} (settings meta.greedy) [1,n]")
        seq, score = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], eos, pad,
                                 length_penalty=BEAM["length_penalty"], early_stopping=BEAM["early_stopping"],
                                 min_new_tokens=BEAM["min_new_tokens"])
        out.add(f"p{i}.beam", seq, f"beam search continuation of prompt {i} (settings meta.beam) [1,n]")
        out.add(f"p{i}.beam_score", score, "its score: sum of log-probs / generated length ** length_penalty [1]")
        alone.append((tokens[0].tolist(), seq[0].tolist(), score[0].item()))

    # Prompt 2's greedy continuation repeats tokens in both tiny packages, so the penalty changes it.
    embeds, mask = embeds_for([all_ids[2]], [CONTENTS[2][1]])
    out.add("p2.greedy_repetition_penalty",
            greedy(llm, embeds, mask, GREEDY["max_new_tokens"], eos, pad, min_new_tokens=GREEDY["min_new_tokens"],
                   repetition_penalty=REPETITION_PENALTY),
            f"greedy continuation of prompt 2 with repetition_penalty {REPETITION_PENALTY} (meta.greedy otherwise)")

    # Random weights never produce the real eos. Naming as eos a token the model does produce exercises stopping,
    # the finished-hypothesis bookkeeping, the length penalty on finished hypotheses and eos appending.
    embeds, mask = embeds_for([all_ids[0]], [CONTENTS[0][1]])
    frequent_eos = int(torch.mode(greedy(llm, embeds, mask, GREEDY["max_new_tokens"], eos, pad)[0]).values)
    out.add("p0.greedy_frequent_eos", greedy(llm, embeds, mask, GREEDY["max_new_tokens"], frequent_eos, pad,
                                             min_new_tokens=GREEDY["min_new_tokens"]),
            "greedy continuation of prompt 0 with eos_token_id = meta.frequent_eos")
    for stop, suffix in ((False, ""), (True, "_early_stopping_true"), ("never", "_early_stopping_never")):
        seq, score = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], frequent_eos, pad,
                                 length_penalty=BEAM["length_penalty"], early_stopping=stop,
                                 min_new_tokens=BEAM["min_new_tokens"])
        out.add(f"p0.beam_frequent_eos{suffix}", seq,
                f"beam search of prompt 0 with eos_token_id = meta.frequent_eos, early_stopping {stop!r} "
                "(meta.beam otherwise)")
        out.add(f"p0.beam_frequent_eos{suffix}_score", score, "its score")

    # The three prompts as one left-padded batch must give what each gives alone.
    embeds, mask = embeds_for(all_ids, [images for _, images in CONTENTS])
    ids, _ = left_pad(all_ids, pad)
    out.add("batch.ids", ids, "prompts 0, 1, 2 left padded with pad_token_id [3,T]")
    out.add("batch.attention_mask", mask, "their attention mask [3,T]")
    batch_greedy = greedy(llm, embeds, mask, GREEDY["max_new_tokens"], eos, pad, min_new_tokens=GREEDY["min_new_tokens"])
    out.add("batch.greedy", batch_greedy, "greedy continuation of the batch (meta.greedy) [3,n]")
    batch_beam, batch_scores = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], eos, pad,
                                           length_penalty=BEAM["length_penalty"], min_new_tokens=BEAM["min_new_tokens"])
    out.add("batch.beam", batch_beam, "beam search continuation of the batch (meta.beam) [3,n]")
    out.add("batch.beam_score", batch_scores, "their scores [3]")
    for i, (tokens, seq, score) in enumerate(alone):
        if (_unpadded(batch_greedy[i].tolist(), pad) != _unpadded(tokens, pad)
                or _unpadded(batch_beam[i].tolist(), pad) != _unpadded(seq, pad)
                or abs(batch_scores[i].item() - score) > 1e-4):
            raise AssertionError(f"batch row {i} differs from prompt {i} run alone")

    # Beam search cases (BEAM_CASES) and the early_stopping modes (BEAM_MODES).
    def run_beam(case, eos_token_id, early_stopping):
        embeds, mask = embeds_for([all_ids[case["prompt"]]], [CONTENTS[case["prompt"]][1]])
        return beam_search(llm, embeds, mask, case["num_beams"], case["max_new_tokens"], eos_token_id, pad,
                           length_penalty=case["length_penalty"], early_stopping=early_stopping,
                           min_new_tokens=case["min_new_tokens"], repetition_penalty=case["repetition_penalty"],
                           num_return_sequences=case["num_return_sequences"])

    for name, case in BEAM_CASES.items():
        seqs, scores = run_beam(case, frequent_eos, case["early_stopping"])
        out.add(f"{name}.sequences", seqs, f"beam search of prompt {case['prompt']} with meta.beam_cases.{name}: "
                "the num_return_sequences best hypotheses, best first, eos appended where shorter [n,L]")
        out.add(f"{name}.scores", scores, "their length-penalised scores [n]")
    modes_prompt = embeds_for([all_ids[BEAM_MODES["prompt"]]], [CONTENTS[BEAM_MODES["prompt"]][1]])
    continuations = greedy(llm, *modes_prompt, GREEDY["max_new_tokens"], eos, pad).flatten().tolist()
    continuations += beam_search(llm, *modes_prompt, 5, BEAM_MODES["max_new_tokens"], eos, pad, length_penalty=2.0,
                                 num_return_sequences=5)[0].flatten().tolist()
    best_modes = None
    for candidate in dict.fromkeys(t for t in continuations if t not in (eos, pad)):
        runs = {mode: run_beam(BEAM_MODES, candidate, stop) for mode, stop in EARLY_STOPPING.items()}
        distinct = len({(tuple(s.flatten().tolist()), tuple(c.tolist())) for s, c in runs.values()})
        if best_modes is None or distinct > best_modes[1]:
            best_modes = (candidate, distinct, runs)
        if distinct == len(EARLY_STOPPING):
            break
    modes_eos, modes_distinct, runs = best_modes
    for mode, (seqs, scores) in runs.items():
        out.add(f"beam_modes.{mode}.sequences", seqs, f"beam search of prompt {BEAM_MODES['prompt']} with "
                f"meta.beam_modes, eos_token_id = meta.beam_modes.eos, early_stopping {mode} [n,L]")
        out.add(f"beam_modes.{mode}.scores", scores, "their scores [n]")

    # Sampling: SAMPLING_CASES on prompt 0, and sample_all on the three prompts as one batch.
    def seeded(case, ids_rows, images_rows):
        for seed in range(100):
            margins = []
            ids = sample(llm, *embeds_for(ids_rows, images_rows), SAMPLING_NEW_TOKENS, eos, pad, seed,
                         margins=margins, **case)
            if min(margins) >= DRAW_MARGIN:
                return seed, ids
        raise AssertionError(f"no seed below 100 keeps every draw {DRAW_MARGIN} from a boundary")

    sampling_seeds = {}
    for name, case in SAMPLING_CASES.items():
        sampling_seeds[name], ids = seeded(case, [all_ids[0]], [CONTENTS[0][1]])
        out.add(f"{name}.ids", ids, f"sampled continuation of prompt 0 with meta.sampling.{name}, "
                f"seed meta.sampling_seeds.{name} [1,{SAMPLING_NEW_TOKENS}]")
    sampling_seeds["sample_batch"], ids = seeded(SAMPLING_CASES["sample_all"], all_ids, [im for _, im in CONTENTS])
    out.add("sample_batch.ids", ids, "sampled continuations of prompts 0, 1, 2 as one left-padded batch with "
            "meta.sampling.sample_all, seed meta.sampling_seeds.sample_batch [3,n]")

    # The warpers on rows full of ties.
    rows = torch.round(torch.randn(4, 2000, generator=torch.Generator().manual_seed(17)) * 4) / 2
    # Eight equal scores and -inf elsewhere: probabilities of exactly 1/8, so cumulative sums meet 1 - top_p exactly.
    exact = torch.full((1, 2000), -float("inf"))
    exact[0, 100:108] = 0.0
    rows = torch.cat([rows, exact])
    out.add("warp.input", rows, "scores [5,2000]: four rows on a 0.5 grid (many ties), then eight zeros among -inf")
    for name, (temperature, top_k, top_p) in WARP_CASES.items():
        out.add(f"warp.{name}", warp_scores(rows, temperature, top_k, top_p),
                f"warp_scores(warp.input, temperature {temperature}, top_k {top_k}, top_p {top_p}) [5,2000]")

    # Image regression: prompt 0 + [IMG], and the empty prompt <s> + [IMG] (the classifier-free guidance null).
    embeds, mask = embeds_for([all_ids[0]], [CONTENTS[0][1]])
    cond = regress_image(llm, embeds, mask, cfg["img_token_id"], REGRESSION_QUERIES)
    empty_ids = tokenizer.encode("", add_bos=True)
    embeds, mask = embeds_for([empty_ids], [[]])
    uncond = regress_image(llm, embeds, mask, cfg["img_token_id"], REGRESSION_QUERIES)
    out.add("regress.cond", cond, f"regress_image(prompt 0 + [IMG], {REGRESSION_QUERIES} steps) [1,64,W]")
    out.add("regress.uncond", uncond, f"regress_image(meta.regress.uncond_ids + [IMG], {REGRESSION_QUERIES} steps)")

    # Classification by ranking: candidate continuations of prompt 1.
    candidate_ids = [tokenizer.encode(c, add_bos=False) for c in CANDIDATES]
    embeds, mask = embeds_for([all_ids[1]], [CONTENTS[1][1]])
    sums, means = score_continuations(llm, embeds, mask, candidate_ids)
    out.add("score.sum", sums, "sum of log-probs of each meta.score.candidate_ids after prompt 1 [1,K]")
    out.add("score.mean", means, "mean of the same log-probs [1,K]")

    out.save({
        "template": cfg["template"], "n_query": n_query, "images": IMAGES, "prompts": prompts,
        "eos_token_id": eos, "pad_token_id": pad, "image_token_id": cfg["image_token_id"],
        "img_token_id": cfg["img_token_id"], "greedy": GREEDY, "beam": BEAM,
        "repetition_penalty": REPETITION_PENALTY, "frequent_eos": frequent_eos,
        "regress": {"cond_prompt": 0, "uncond_ids": empty_ids, "n_query": REGRESSION_QUERIES},
        "score": {"context_prompt": 1, "candidates": CANDIDATES, "candidate_ids": candidate_ids},
        "beam_cases": BEAM_CASES,
        "beam_modes": {**BEAM_MODES, "eos": modes_eos, "distinct": modes_distinct},
        "sampling": SAMPLING_CASES, "sampling_new_tokens": SAMPLING_NEW_TOKENS, "sampling_seeds": sampling_seeds,
        "warp": {name: {"temperature": t, "top_k": k, "top_p": p} for name, (t, k, p) in WARP_CASES.items()},
    })
    return {"cond": cond, "uncond": uncond}


@torch.no_grad()
def write_quantized_llm_goldens(golden_dir: str, llm, plan: dict, float_golden_dir: str, image_token_id: int) -> None:
    """Goldens of a quantized variant of a package: the last-position logits of the float package's golden prompts
    (same ids, same float image features) computed by the LLM whose linear layers hold dequantize(quantize(W)) for
    the graphs in plan (graph name -> quantize.Quantization): the numbers its MatMulNBits graphs must reproduce."""
    from .quantize import round_trip_linear_weights

    meta, arrays = read_golden(float_golden_dir)
    llm = copy.deepcopy(llm)
    parts = {"decoder": llm.model.layers, "lm_head": llm.lm_head, "project_up": llm.project_up,
             "project_down": llm.project_down}
    for graph, q in plan.items():
        if graph in parts:
            round_trip_linear_weights(parts[graph], q)
    out = _Goldens(golden_dir)
    for i, prompt in enumerate(meta["prompts"]):
        ids = torch.from_numpy(arrays[f"p{i}.ids"].astype(np.int64))[None]
        features = [torch.from_numpy(arrays[f"features.{name}"].copy()) for name in prompt["images"]]
        embeds, mask = prepare_prompt_embeds(llm, ids, torch.ones_like(ids), torch.cat(features) if features else None,
                                             image_token_id)
        hidden, _ = llm.decode(embeds, mask, torch.arange(ids.shape[1])[None], None)
        out.add(f"p{i}.logits_last", llm.lm_head(hidden[:, -1]),
                f"lm_head(decoder(prompt {i})) at the last position, LLM weights dequantize(quantize(W)), features "
                "of the float package's goldens [1,V]")
    out.save({"prompts": meta["prompts"],
              "quantization": {graph: q.manifest_entry() for graph, q in plan.items()}})
