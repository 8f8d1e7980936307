"""How fast can emu2-toy's LLM shape learn in-context binding, and what makes it slow? A calibration on a 64-token
vocabulary (no images, no 32k softmax: a few minutes per run on one core), from scratch, with the toy's LLM shape
(python/emu2toy/model.py: hidden 64, 3 layers, 4 heads; --arch for others), AdamW as train_toy.py.

Each sequence is an episode: 2 to 4 classes (tokens drawn from 10) named by labels drawn per sequence (from 24), 4 to
10 demonstrations `<class evidence> <label> .` with the class of each drawn on its own, and the text loss on every
label whose class was shown before (train_toy.py's repeated labels). Copying one of the labels shown so far at random
scores about 1.0 nats there; binding scores 0. The class evidence, by --layout:

- `adjacent`: the class token right before its label (`red dax .`): ordinary induction;
- `gapN` (gap1 .. gap4): the class token, then N fixed filler tokens, then the label (`red . This is a dax .` is gap4,
  the toy's "This is a dax." template after an image);
- `mixed`: a gap of 0 to 4 drawn per demonstration;
- `image`: an image's shape in the toy: an opening token, 4 "quadrant" tokens each the class or a background token
  (at least one the class), a closing token, then the label (`[IMG] q q q q [/IMG] dax .`, the base model's plain
  few-shot layout).

    /usr/bin/python3 python/toy_binding_calibration.py --layout adjacent --steps 1000
    /usr/bin/python3 python/toy_binding_calibration.py --layout gap4 --steps 3000
    /usr/bin/python3 python/toy_binding_calibration.py --layout adjacent:500,gap4:2500   # a curriculum
    /usr/bin/python3 python/toy_binding_calibration.py --layout gap4 --steps 1500 --class-layer 2
    /usr/bin/python3 python/toy_binding_calibration.py --layout image --steps 4000 --class-layer 2 --class-from 2001

--class-layer N adds train_toy.py's class loss: the output of the first N layers, read through the final norm and
lm_head, must name the class at the last evidence token of every demonstration (the token the label is predicted
from).

Prints the training loss and accuracy on the repeated labels of the step's batch every 250 steps.
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from emu2ref.llama import Emu2LLM  # noqa: E402

VOCAB = 64
BOS, PERIOD, BACKGROUND, OPEN, CLOSE = 1, 56, 57, 58, 59
CLASSES = list(range(4, 14))
LABELS = list(range(20, 44))
FILLERS = [50, 51, 52, 53, 54, 55]
IGNORE = -100


def evidence(rng: random.Random, layout: str, cls: int) -> list:
    """The tokens that say which class a demonstration shows, before its label."""
    if layout == "image":
        quadrants = [cls if rng.random() < 0.5 else BACKGROUND for _ in range(4)]
        if cls not in quadrants:
            quadrants[rng.randrange(4)] = cls
        return [OPEN] + quadrants + [CLOSE]
    gap = rng.randint(0, 4) if layout == "mixed" else 0 if layout == "adjacent" else int(layout[3:])
    return [cls] + FILLERS[:gap]


def episode(rng: random.Random, layout: str) -> tuple:
    ways = rng.choice([2, 3, 4])
    classes, labels = rng.sample(CLASSES, ways), rng.sample(LABELS, ways)
    ids, targets, classes_before, seen = [BOS], [IGNORE], [IGNORE], set()
    for _ in range(rng.randint(4, 10)):
        c = rng.randrange(ways)
        before = evidence(rng, layout, classes[c])
        ids += before
        targets += [IGNORE] * len(before)
        classes_before += [IGNORE] * len(before)
        # targets[t] is the token predicted at position t: the label, from the last evidence token.
        targets[-1] = labels[c] if c in seen else IGNORE
        # --class-layer's target there: the class itself, on every demonstration.
        classes_before[-1] = classes[c]
        ids += [labels[c], PERIOD]
        targets += [IGNORE, IGNORE]
        classes_before += [IGNORE, IGNORE]
        seen.add(c)
    return ids, targets, classes_before


def batch(rng: random.Random, layout: str, size: int) -> tuple:
    episodes = [episode(rng, layout) for _ in range(size)]
    length = max(len(ids) for ids, _, _ in episodes)
    ids = torch.zeros(size, length, dtype=torch.long)
    targets = torch.full((size, length), IGNORE)
    classes = torch.full((size, length), IGNORE)
    mask = torch.zeros(size, length, dtype=torch.long)
    for b, (i, t, c) in enumerate(episodes):
        ids[b, :len(i)], targets[b, :len(t)], classes[b, :len(c)], mask[b, :len(i)] = (
            torch.tensor(i), torch.tensor(t), torch.tensor(c), 1)
    return ids, targets, classes, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True,
                        help="adjacent, gap1..gap4, mixed or image; or a curriculum LAYOUT:STEPS,LAYOUT:STEPS")
    parser.add_argument("--steps", type=int, help="steps of a single layout")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arch", default="64,3,4", help="hidden size, layers, heads (default: emu2-toy's)")
    parser.add_argument("--class-layer", type=int, default=0,
                        help="also train the output of this many layers (through the final norm and lm_head) to "
                             "name the class at the token before each label (0: off)")
    parser.add_argument("--class-weight", type=float, default=1.0)
    parser.add_argument("--class-from", type=int, default=1,
                        help="the step from which the class loss applies (later: a model trained without it first)")
    args = parser.parse_args()
    if ":" in args.layout:
        schedule = [(name, int(steps)) for name, steps in (part.split(":") for part in args.layout.split(","))]
    elif args.steps:
        schedule = [(args.layout, args.steps)]
    else:
        parser.error("--steps is needed with a single --layout")
    for name, _ in schedule:
        if name not in ("adjacent", "mixed", "image") and name not in (f"gap{n}" for n in range(1, 5)):
            parser.error(f"--layout {name}: expected adjacent, gap1..gap4, mixed or image")
    hidden, layers, heads = (int(x) for x in args.arch.split(","))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    llm = Emu2LLM(VOCAB, hidden, layers, heads, 2 * hidden, 1e-6, 8)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(1)
    start, step = time.time(), 0
    for layout, steps in schedule:
        for _ in range(steps):
            step += 1
            ids, targets, classes, mask = batch(rng, layout, args.batch_size)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            x = llm.embed_tokens(ids)
            if args.class_layer:
                x, _ = llm.decode(x, mask, positions, layers=(0, args.class_layer))
                class_logits = llm.lm_head(llm.model.norm(x))
                class_loss = torch.nn.functional.cross_entropy(class_logits.reshape(-1, VOCAB), classes.reshape(-1),
                                                        ignore_index=IGNORE)
            hidden_states, _ = llm.decode(x, mask, positions, layers=(args.class_layer, layers))
            logits = llm.lm_head(hidden_states)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1),
                                                     ignore_index=IGNORE)
            with_class = args.class_layer and step >= args.class_from
            total = loss + args.class_weight * class_loss if with_class else loss
            optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
            optimizer.step()
            if step % 250 == 0:
                sel = targets != IGNORE
                accuracy = (logits.argmax(-1)[sel] == targets[sel]).float().mean().item()
                extra = f" class {class_loss.item():.3f}" if with_class else ""
                print(f"layout {layout} step {step} loss {loss.item():.3f} accuracy {accuracy:.2f}{extra} "
                      f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
