"""Pretrains emu2-toy's visual encoder on the toy world's labels: the toy's stand-in for EVA-CLIP, the pretrained
encoder Emu2 starts from. Trained only through the LLM's captions (python/train_toy.py), the encoder learned color at
once but shape barely (a linear probe on its features: shape 51%, color 100%): the caption loss reaches the encoder
weakly, through the LLM. Here each of the encoder's visual embeddings (one per quadrant: the 4 pooled tokens) is
classified directly as the shape and the color in its quadrant, or empty; the heads are discarded.

    /usr/bin/python3 python/pretrain_toy_encoder.py --out /tmp/emu2-toy-enc.pt

--out is a small checkpoint equal to --init-from (without it, model.build(--model-seed): the seeded initial encoder
and LLM) except the visual encoder, so train_toy.py can continue from it (with --freeze-vision, so the space the
visual decoder is trained on stays put). Seeded, CPU; batch n is drawn from
random.Random(seed, n). Every 250 steps the held-out per-token accuracy goes to stderr and to <out>-loss.csv.
"""
import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from emu2toy import model, world  # noqa: E402
from train_toy import pixels_of  # noqa: E402

COLORS = sorted(world.COLORS)
# Per quadrant token: one of the classes, or the last index for an empty quadrant.
HEADS = {"shape": len(world.SHAPES) + 1, "color": len(COLORS) + 1}


def labelled_batch(rng: random.Random, size: int):
    scenes = [world.sample_scene(rng) for _ in range(size)]
    labels = {"shape": torch.full((size, 4), len(world.SHAPES)), "color": torch.full((size, 4), len(COLORS))}
    for i, scene in enumerate(scenes):
        for quadrant in scene["quadrants"]:  # row-major quadrants, the order of the pooled tokens
            labels["shape"][i, quadrant] = world.SHAPES.index(scene["shape"])
            labels["color"][i, quadrant] = COLORS.index(scene["color"])
    return pixels_of(scenes), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-from", help="small checkpoint whose encoder and LLM to start from (default: new ones)")
    parser.add_argument("--model-seed", type=int, default=2024,
                        help="without --init-from: the seed of the new encoder and LLM (train_toy.py's --seed)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.init_from:
        vision, llm, state = model.load_checkpoint(args.init_from)
        model_seed, trained_ids, vocab_std = state["seed"], state["trained_ids"].tolist(), model.vocab_init_std(state)
    else:
        vision, llm = model.build(args.model_seed)
        model_seed, trained_ids, vocab_std = args.model_seed, [], (model.VOCAB_INIT_STD, model.VOCAB_INIT_STD)
    vision.train()
    width = model.VISION["width"]
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, n) for name, n in HEADS.items()})
    optimizer = torch.optim.AdamW(list(vision.parameters()) + list(heads.parameters()), lr=args.lr)
    held_pixels, held_labels = labelled_batch(random.Random(f"held-out-{args.seed}"), 300)
    curve = [("step", "loss", "shape_accuracy", "color_accuracy")]
    for step in range(1, args.steps + 1):
        pixels, labels = labelled_batch(random.Random(args.seed * 1_000_003 + step), args.batch_size)
        features = model.encode_images(vision, pixels)
        loss = sum(F.cross_entropy(heads[k](features).flatten(0, 1), labels[k].flatten()) for k in heads)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                features = model.encode_images(vision, held_pixels)
                accuracy = {k: float((heads[k](features).argmax(-1) == held_labels[k]).float().mean()) for k in heads}
            print(f"step {step} loss {float(loss):.4f} held-out per-quadrant accuracy "
                  + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()), file=sys.stderr, flush=True)
            curve.append((step, f"{float(loss):.4f}", f"{accuracy['shape']:.4f}", f"{accuracy['color']:.4f}"))
    vision.eval()
    torch.save(model.checkpoint_state(vision, llm, model_seed, trained_ids, *vocab_std), args.out)
    with open(os.path.splitext(args.out)[0] + "-loss.csv", "w") as f:
        f.write("".join(",".join(map(str, row)) + "\n" for row in curve))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
