"""Goldens of the encoder and the LLM (fixtures/golden/<package>/llm/): what the TypeScript runtime must reproduce
from the fixture images and prompts, with the package's own template and tokenizer. meta lists every case."""
import os

import numpy as np
import torch

from .eva_vit import pool_visual_features
from .generation import beam_search, greedy, left_pad, prompt_embeds, regress_image, score_continuations
from .golden import GoldenWriter
from .preprocess import load_rgb, preprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
IMAGES = ["landscape.png", "night.jpg", "blocks.png"]
PLH = "[<IMG_PLH>]"
GREEDY_TOKENS = 12
BEAM = {"num_beams": 5, "length_penalty": -1.0, "max_new_tokens": 10, "min_new_tokens": 1}


def _prompts(template: str, system: str) -> list:
    contents = [
        ("A red car parked by the sea.", []),
        (f"{PLH}Describe the image in details:", ["landscape.png"]),
        (f"{PLH}[day, green, a mountain].{PLH}", ["landscape.png", "night.jpg"]),
    ]
    if template == "chat":
        return [(f"{system} [USER]: {text} [ASSISTANT]:", images) for text, images in contents]
    return contents


def write_llm_goldens(golden_dir: str, vision, llm, tokenizer, package_config: dict) -> dict:
    """Returns {"cond": [1,Q,W] regression of the first prompt, "uncond": [1,Q,W] regression of the empty prompt}
    (the visual decoder's goldens use them)."""
    cfg = package_config
    n_query, eos, pad = cfg["n_query"], cfg["eos_token_id"], cfg["pad_token_id"]
    w = GoldenWriter(golden_dir)
    meta = {"images": IMAGES, "n_query": n_query, "greedy_max_new_tokens": GREEDY_TOKENS, "beam": BEAM, "prompts": []}

    features = {}
    with torch.no_grad():
        for name in IMAGES:
            pixels = torch.from_numpy(preprocess(load_rgb(os.path.join(ROOT, "fixtures", "images", name)),
                                                 cfg["image_size"], cfg["mean"], cfg["std"]))[None]
            hidden = vision(pixels)
            features[name] = pool_visual_features(hidden, n_query)
            w.add(f"features.{name}", features[name])
            if name == IMAGES[0]:
                w.add(f"last_hidden_state.{name}", hidden)

    def embeds_for(ids_list, images_list):
        ids, mask = left_pad(ids_list, pad)
        feats = [features[n] for images in images_list for n in images]
        stacked = torch.cat(feats) if feats else None
        return prompt_embeds(llm, ids, stacked, cfg["image_token_id"]), mask

    prompts = _prompts(cfg["template"], cfg.get("system_message") or "")
    all_ids = []
    for i, (text, images) in enumerate(prompts):
        ids = tokenizer.encode(tokenizer.expand_image_placeholders(text, n_query))
        all_ids.append(ids)
        meta["prompts"].append({"text": text, "images": images})
        w.add(f"p{i}.ids", np.array(ids, dtype=np.int64))
        embeds, mask = embeds_for([ids], [images])
        with torch.no_grad():
            hidden, _ = llm.decode(embeds, mask, torch.arange(len(ids))[None], None)
            if i < 2:
                w.add(f"p{i}.logits_last", llm.lm_head(hidden[:, -1]))
        w.add(f"p{i}.greedy", greedy(llm, embeds, mask, GREEDY_TOKENS, eos, pad, min_new_tokens=1))
        seq, score = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], eos, pad,
                                 length_penalty=BEAM["length_penalty"], min_new_tokens=BEAM["min_new_tokens"])
        w.add(f"p{i}.beam", seq)
        w.add(f"p{i}.beam_score", score)

    # Random weights never produce eos; naming a token the model likes as eos exercises the hypothesis bookkeeping.
    embeds, mask = embeds_for([all_ids[0]], [prompts[0][1]])
    frequent = int(torch.mode(greedy(llm, embeds, mask, GREEDY_TOKENS, eos, pad)[0]).values)
    meta["beam_frequent_eos"] = frequent
    seq, score = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], frequent, pad,
                             length_penalty=BEAM["length_penalty"], min_new_tokens=BEAM["min_new_tokens"])
    w.add("p0.beam_frequent_eos", seq)
    w.add("p0.beam_frequent_eos_score", score)
    meta["repetition_penalty"] = 1.3
    embeds, mask = embeds_for([all_ids[1]], [prompts[1][1]])
    w.add("p1.greedy_repetition_penalty", greedy(llm, embeds, mask, GREEDY_TOKENS, eos, pad, min_new_tokens=1,
                                                 repetition_penalty=1.3))

    # A left-padded batch of the three prompts (greedy) must equal the prompts run one by one.
    embeds, mask = embeds_for(all_ids, [p[1] for p in prompts])
    w.add("batch.greedy", greedy(llm, embeds, mask, GREEDY_TOKENS, eos, pad, min_new_tokens=1))

    # Image regression: the first prompt, and the empty prompt <s>[IMG] (the CFG null condition).
    embeds, mask = embeds_for([all_ids[0]], [prompts[0][1]])
    cond = regress_image(llm, embeds, mask, cfg["img_token_id"], 64)
    empty_ids = tokenizer.encode("")
    embeds, mask = embeds_for([empty_ids], [[]])
    uncond = regress_image(llm, embeds, mask, cfg["img_token_id"], 64)
    w.add("regress.cond", cond)
    w.add("regress.uncond", uncond)
    meta["regress"] = {"cond_prompt": 0, "uncond_ids": empty_ids, "n_query": 64}

    candidates = [" yes", " no", " a red car"]
    cand_ids = [tokenizer.encode(c, add_bos=False) for c in candidates]
    embeds, mask = embeds_for([all_ids[1]], [prompts[1][1]])
    meta["score"] = {"context_prompt": 1, "candidates": candidates, "candidate_ids": cand_ids}
    w.add("score.logprobs", score_continuations(llm, embeds, mask, cand_ids))

    w.meta = meta
    w.save()
    return {"cond": cond, "uncond": uncond}
