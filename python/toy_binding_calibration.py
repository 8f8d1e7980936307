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

Two of the toy's features on top of a layout: `--labels pieces` (a label of two tokens whose first piece repeats
across labels, as the toy's nonsense words take 2 or 3 pieces and "dax" and "drell" share their first; every piece of
a repeated label is a target) and `--attributes` (every evidence token shows a color and a shape at once, as every
token of a toy image does; an episode names the colors or the shapes, the other attribute held, and the class is the
word of the named value, which the first demonstrations cannot tell apart).

    /usr/bin/python3 python/toy_binding_calibration.py --layout image --steps 1500 --class-layer 2 --labels pieces

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
from emu2toy import model, world  # noqa: E402
from train_toy import pixels_of  # noqa: E402

# 64 tokens; --attributes adds the 25 color-and-shape tokens from PAIRS on.
VOCAB, ATTRIBUTES_VOCAB = 64, 96
BOS, PERIOD, BACKGROUND, OPEN, CLOSE = 1, 56, 57, 58, 59
CLASSES = list(range(4, 14))
LABELS = list(range(20, 44))
# --labels pieces: a label is two tokens, a first piece of 6 and a second of 18 (the toy's 24 nonsense words take 2
# or 3 pieces, and 7 pairs of them share their first, "dax" and "drell").
FIRST_PIECES, SECOND_PIECES = LABELS[:6], LABELS[6:]
FILLERS = [50, 51, 52, 53, 54, 55]
# --attributes: every evidence token shows a color and a shape at once (one of 25 tokens), as every token of a toy
# image does; an episode names the values of one attribute and holds the other, and the class is the word of that
# value: colors are CLASSES[:5], shapes CLASSES[5:].
COLORS, SHAPES = CLASSES[:5], CLASSES[5:]
PAIRS = 64
# --layout toy-image: the evidence is a real toy image, `[IMG]` and 4 rows of the committed encoder's features
# (frozen; project_up learned), of a scene whose named attribute has the class's value; class words: the toy's colors
# then its shapes.
IMAGE = 60
CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "checkpoints",
                          "emu2-toy.pt")
TOY_CLASS_WORDS = sorted(world.COLORS) + world.SHAPES
IGNORE = -100


def pair_token(color: int, shape: int) -> int:
    return PAIRS + COLORS.index(color) * len(SHAPES) + SHAPES.index(shape)


def evidence(rng: random.Random, layout: str, shown, after: int = 0) -> list:
    """The tokens that say which class a demonstration shows, before its label (`shown`: the class token, or with
    --attributes the token of its color and shape; with toy-image the scene, whose features the IMAGE rows get). An
    image is followed by `after` fillers (--after 3: the toy's "This is a")."""
    if layout == "toy-image":
        return [OPEN] + [IMAGE] * model.N_QUERY + [CLOSE] + FILLERS[:after]
    if layout == "image":
        quadrants = [shown if rng.random() < 0.5 else BACKGROUND for _ in range(4)]
        if shown not in quadrants:
            quadrants[rng.randrange(4)] = shown
        return [OPEN] + quadrants + [CLOSE] + FILLERS[:after]
    gap = rng.randint(0, 4) if layout == "mixed" else 0 if layout == "adjacent" else int(layout[3:])
    return [shown] + FILLERS[:gap]


def episode_classes(rng: random.Random, ways: int, attributes: bool, layout: str = "") -> tuple:
    """The episode's classes (their words, the class loss's targets) and what each shows as evidence: a token, or
    with toy-image a function that draws a scene of the class."""
    if layout == "toy-image":
        attribute = rng.choice(["color", "shape"])
        other = world.OTHER_ATTRIBUTE[attribute]
        fixed = {other: rng.choice(world.attribute_values(other))}
        values = rng.sample(world.attribute_values(attribute), ways)
        classes = [CLASSES[TOY_CLASS_WORDS.index(v)] for v in values]
        return classes, [lambda v=v: world.sample_scene_with(rng, {**fixed, attribute: v}) for v in values]
    if not attributes:
        classes = rng.sample(CLASSES, ways)
        return classes, classes
    if rng.random() < 0.5:
        shape = rng.choice(SHAPES)
        classes = rng.sample(COLORS, ways)
        return classes, [pair_token(c, shape) for c in classes]
    color = rng.choice(COLORS)
    classes = rng.sample(SHAPES, ways)
    return classes, [pair_token(color, s) for s in classes]


def episode_labels(rng: random.Random, ways: int, pieces: bool) -> list:
    """Each class's label, a list of tokens: one, or with --labels pieces a first and a second piece (distinct
    labels, first pieces repeating as they will)."""
    if not pieces:
        return [[label] for label in rng.sample(LABELS, ways)]
    pairs = rng.sample([(a, b) for a in FIRST_PIECES for b in SECOND_PIECES], ways)
    return [list(pair) for pair in pairs]


def episode(rng: random.Random, layout: str, pieces: bool = False, attributes: bool = False,
            scenes: list = None, after: int = 0, prefix: int = 0) -> tuple:
    """ids, targets and class targets of one episode; with toy-image its scenes are appended to `scenes`. `prefix`
    filler tokens first stand for the toy's chat preamble (its system message and `[USER]:`)."""
    ways = rng.choice([2, 3, 4])
    classes, shown = episode_classes(rng, ways, attributes, layout)
    labels = episode_labels(rng, ways, pieces)
    start = [BOS] + [FILLERS[i % len(FILLERS)] for i in range(prefix)]
    ids, targets, classes_before, seen = start, [IGNORE] * len(start), [IGNORE] * len(start), set()
    for _ in range(rng.randint(4, 10)):
        c = rng.randrange(ways)
        if layout == "toy-image":
            scenes.append(shown[c]())
        before = evidence(rng, layout, shown[c], after)
        ids += before
        targets += [IGNORE] * len(before)
        classes_before += [IGNORE] * len(before)
        # targets[t] is the token predicted at position t: each piece of the label, from the token before it.
        if c in seen:
            targets[-1] = labels[c][0]
        # --class-layer's target there: the class itself, on every demonstration.
        classes_before[-1] = classes[c]
        ids += labels[c] + [PERIOD]
        targets += (labels[c][1:] if c in seen else [IGNORE] * (len(labels[c]) - 1)) + [IGNORE, IGNORE]
        classes_before += [IGNORE] * (len(labels[c]) + 1)
        seen.add(c)
    return ids, targets, classes_before


def batch(rng: random.Random, layout: str, size: int, pieces: bool = False, attributes: bool = False,
          after: int = 0, prefix: int = 0) -> tuple:
    scenes = []
    episodes = [episode(rng, layout, pieces, attributes, scenes, after, prefix) for _ in range(size)]
    length = max(len(ids) for ids, _, _ in episodes)
    ids = torch.zeros(size, length, dtype=torch.long)
    targets = torch.full((size, length), IGNORE)
    classes = torch.full((size, length), IGNORE)
    mask = torch.zeros(size, length, dtype=torch.long)
    for b, (i, t, c) in enumerate(episodes):
        ids[b, :len(i)], targets[b, :len(t)], classes[b, :len(c)], mask[b, :len(i)] = (
            torch.tensor(i), torch.tensor(t), torch.tensor(c), 1)
    pixels = pixels_of(scenes) if scenes else None
    return ids, targets, classes, mask, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True,
                        help="adjacent, gap1..gap4, mixed, image or toy-image; or a curriculum LAYOUT:STEPS,LAYOUT:STEPS")
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
    parser.add_argument("--labels", choices=["single", "pieces"], default="single",
                        help="labels of one token, or of two pieces whose first repeats across labels (the toy's)")
    parser.add_argument("--attributes", action="store_true",
                        help="evidence tokens show a color and a shape at once; an episode names one attribute")
    parser.add_argument("--after", type=int, default=0, choices=range(len(FILLERS) + 1),
                        help="image and toy-image: filler tokens between the image and its label (3: the toy's "
                             "\"This is a\")")
    parser.add_argument("--prefix", type=int, default=0, help="filler tokens before the first demonstration")
    parser.add_argument("--vocab", type=int, help="the vocabulary's size (default 64, 96 with --attributes; 32274: "
                                                  "the toy's, its softmax included)")
    parser.add_argument("--vocab-init-std", type=float,
                        help="draw embed_tokens and lm_head from N(0, this) as emu2-toy's model.build does (0.02)")
    args = parser.parse_args()
    if ":" in args.layout:
        schedule = [(name, int(steps)) for name, steps in (part.split(":") for part in args.layout.split(","))]
    elif args.steps:
        schedule = [(args.layout, args.steps)]
    else:
        parser.error("--steps is needed with a single --layout")
    for name, _ in schedule:
        if name not in ("adjacent", "mixed", "image", "toy-image") and name not in (f"gap{n}" for n in range(1, 5)):
            parser.error(f"--layout {name}: expected adjacent, gap1..gap4, mixed, image or toy-image")
    hidden, layers, heads = (int(x) for x in args.arch.split(","))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    needed = ATTRIBUTES_VOCAB if args.attributes else VOCAB
    vocab = args.vocab or needed
    if vocab < needed:
        parser.error(f"--vocab {vocab}: the episodes use token ids up to {needed}")
    toy_image = any(name == "toy-image" for name, _ in schedule)
    llm = Emu2LLM(vocab, hidden, layers, heads, 2 * hidden, 1e-6, model.VISION["width"] if toy_image else 8)
    vision = model.load_checkpoint(CHECKPOINT)[0].requires_grad_(False) if toy_image else None
    if args.vocab_init_std:
        # The toy's own initialization of the vocabulary matrices (model.build), instead of PyTorch's defaults
        # (embeddings N(0, 1), lm_head uniform within 1/sqrt(hidden)).
        with torch.no_grad():
            llm.model.embed_tokens.weight.normal_(0.0, args.vocab_init_std)
            llm.lm_head.weight.normal_(0.0, args.vocab_init_std)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(1)
    start, step = time.time(), 0
    for layout, steps in schedule:
        for _ in range(steps):
            step += 1
            ids, targets, classes, mask, pixels = batch(rng, layout, args.batch_size, args.labels == "pieces",
                                                        args.attributes, args.after, args.prefix)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            x = llm.embed_tokens(ids)
            if pixels is not None:
                with torch.no_grad():
                    features = model.encode_images(vision, pixels)
                rows = llm.project_up(features).reshape(-1, hidden)
                x = x.masked_scatter((ids == IMAGE)[..., None], rows)
            if args.class_layer:
                x, _ = llm.decode(x, mask, positions, layers=(0, args.class_layer))
                marked = classes != IGNORE
                class_logits = llm.lm_head(llm.model.norm(x[marked]))
                class_loss = torch.nn.functional.cross_entropy(class_logits, classes[marked])
            hidden_states, _ = llm.decode(x, mask, positions, layers=(args.class_layer, layers))
            # Logits at the supervised positions only (as model.losses computes them): the same loss, and a 32k
            # vocabulary's softmax stays affordable.
            sel = targets != IGNORE
            logits = llm.lm_head(hidden_states[sel])
            loss = torch.nn.functional.cross_entropy(logits, targets[sel])
            with_class = args.class_layer and step >= args.class_from
            total = loss + args.class_weight * class_loss if with_class else loss
            optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
            optimizer.step()
            if step % 250 == 0:
                accuracy = (logits.argmax(-1) == targets[sel]).float().mean().item()
                extra = f" class {class_loss.item():.3f}" if with_class else ""
                print(f"layout {layout} step {step} loss {loss.item():.3f} accuracy {accuracy:.2f}{extra} "
                      f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
