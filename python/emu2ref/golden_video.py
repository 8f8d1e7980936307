"""Goldens of video input (fixtures/golden/<package>/video/): a fixture clip's frames sampled and read with PIL, their
features pooled to video_n_query, and Emu2-Chat prompts built as the official code builds them from
["[VIDEO]", frames..., "[/VIDEO]", text, image, ...] (video.py), run through the package's LLM.
"""
import os

import numpy as np
import torch

from .eva_vit import pool_visual_features
from .generation import beam_search, greedy, prepare_prompt_embeds
from .golden_llm import BEAM, GREEDY, _Goldens, prompt_text
from .preprocess import load_rgb, preprocess
from .video import VIDEO_END, VIDEO_TOKEN, expand_placeholders, load_video_frames, prepare_inputs

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
VIDEO = "fixtures/videos/red-square-right.gif"
FRAMES = 4
IMAGE = "fixtures/images/blocks.png"
# Each prompt as the official code's input list; "frames" stands for the sampled frames of VIDEO, "image" for IMAGE.
PROMPTS = [
    [VIDEO_TOKEN, "frames", VIDEO_END, "What happened in the video?"],
    [VIDEO_TOKEN, "frames", VIDEO_END, "Compare the video with this picture: ", "image", "What moved?"],
]


@torch.no_grad()
def write_video_goldens(golden_dir: str, vision, llm, tokenizer, package_config: dict) -> None:
    """package_config: as golden_llm's, plus video_n_query and video_token_id ([gIMG])."""
    cfg = package_config
    n_query, v_query, eos, pad = cfg["n_query"], cfg["video_n_query"], cfg["eos_token_id"], cfg["pad_token_id"]
    out = _Goldens(golden_dir)

    def encode(images, n):
        pixels = torch.stack([torch.from_numpy(preprocess(im, cfg["image_size"], cfg["mean"], cfg["std"])) for im in images])
        return pool_visual_features(vision(pixels), n)

    indices, frames = load_video_frames(os.path.join(ROOT, VIDEO), FRAMES)
    frame_features = encode(frames, v_query)
    out.add("frames.features", frame_features,
            f"pool_visual_features(visual_encoder(preprocess(frame)), n_query=video_n_query={v_query}) of the "
            f"frames meta.frame_indices of {VIDEO} [F,Qv,W]")
    out.add("frames.pixels.channel_mean",
            np.stack([np.asarray(f, dtype=np.float32).reshape(-1, 3).mean(0) for f in frames]),
            "mean over the pixels of each sampled frame's 8-bit RGB channels (before preprocessing) [F,3]")
    image = load_rgb(os.path.join(ROOT, IMAGE))

    prompts = []
    for i, spec in enumerate(PROMPTS):
        items = []
        for item in spec:
            items.extend(frames if item == "frames" else [image] if item == "image" else [item])
        content, images, video_frames = prepare_inputs(items)
        text = prompt_text(cfg["template"], content, cfg.get("system_message") or "")
        ids = tokenizer.encode(expand_placeholders(text, n_query, v_query), add_bos=True)
        prompts.append({"items": spec, "text": text, "tokens": len(ids), "images": len(images),
                        "frames": len(video_frames)})
        out.add(f"p{i}.ids", np.array(ids, dtype=np.int64),
                f"tokenizer.encode(prompt {i}: image placeholders -> [IMG] + {n_query} x <image> + [/IMG], frame "
                f"placeholders -> [IMG] + {v_query} x [gIMG] + [/IMG]), bos first")
        input_ids = torch.tensor([ids])
        mask = torch.ones_like(input_ids)
        embeds, mask = prepare_prompt_embeds(llm, input_ids, mask, encode(images, n_query) if images else None,
                                             cfg["image_token_id"], encode(video_frames, v_query),
                                             cfg["video_token_id"])
        hidden, _ = llm.decode(embeds, mask, torch.arange(len(ids))[None], None)
        out.add(f"p{i}.logits_last", llm.lm_head(hidden[:, -1]),
                f"lm_head(decoder(prompt {i} embeddings, frames at [gIMG], images at <image>)) at the last position [1,V]")
        out.add(f"p{i}.greedy", greedy(llm, embeds, mask, GREEDY["max_new_tokens"], eos, pad,
                                       min_new_tokens=GREEDY["min_new_tokens"]),
                f"greedy continuation of prompt {i} (settings meta.greedy) [1,n]")
        seq, score = beam_search(llm, embeds, mask, BEAM["num_beams"], BEAM["max_new_tokens"], eos, pad,
                                 length_penalty=BEAM["length_penalty"], early_stopping=BEAM["early_stopping"],
                                 min_new_tokens=BEAM["min_new_tokens"])
        out.add(f"p{i}.beam", seq, f"beam search continuation of prompt {i} (settings meta.beam) [1,n]")
        out.add(f"p{i}.beam_score", score, "its score")

    out.save({
        "video": VIDEO, "frames_requested": FRAMES, "frame_indices": indices, "image": IMAGE,
        "n_query": n_query, "video_n_query": v_query, "template": cfg["template"], "prompts": prompts,
        "greedy": GREEDY, "beam": BEAM, "eos_token_id": eos, "pad_token_id": pad,
    })
