"""Writes the toy world's held-out evaluation data: PNG images and JSONL files (one sample a line).

    /usr/bin/python3 python/make_toy_eval.py                 # -> fixtures/toy-eval/ (committed)
    /usr/bin/python3 python/make_toy_eval.py --out DIR --scenes 500

Files (image paths relative to the folder):
    caption.jsonl            {"id", "image", "prompt", "captions": [caption], "shape", "color", "count"}
    vqa.jsonl                {"id", "image", "question", "answers": [answer] * 10}
    caption-train.jsonl, vqa-train.jsonl   the same for other scenes: demonstrations for `emu2 fewshot-eval`
    nonsense-<attr>-train.jsonl / nonsense-<attr>-test.jsonl   {"id", "image", "label"}  (attr: shape, color)
        4 classes named by nonsense words in one fixed mapping, the same in both splits: the demonstration pool
        (train) and the queries (test). The model was trained only on episodes whose word-to-class mapping was drawn
        afresh each time, so without demonstrations it cannot know this one (chance: 25%).
Held-out: the scenes are drawn from string seeds ("eval-..."), which the integer-seeded training batches never use.
"""
import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from emu2toy import data, world  # noqa: E402

OUT = os.path.join(ROOT, "fixtures", "toy-eval")
# Each task's images share the other attribute (python/emu2toy/data.py episode: otherwise a demonstration could match
# the query on the wrong attribute and the task would have no right answer).
NONSENSE = {
    "shape": {"values": ["circle", "square", "triangle", "star"], "labels": ["dax", "blicket", "wug", "zorp"],
              "fixed": {"color": "green"}},
    "color": {"values": ["red", "green", "blue", "yellow"], "labels": ["toma", "fep", "kiki", "vork"],
              "fixed": {"shape": "circle"}},
}


def write_jsonl(path: str, rows: list) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def save(scene: dict, out: str, name: str) -> str:
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rel = f"images/{name}.png"
    world.render(scene).save(os.path.join(out, rel), optimize=True)
    return rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--scenes", type=int, default=100, help="captioned scenes (2 questions each)")
    parser.add_argument("--train-scenes", type=int, default=20, help="captioned scenes of the demonstration pool")
    parser.add_argument("--per-class", type=int, default=(5, 10), nargs=2, metavar=("TRAIN", "TEST"),
                        help="nonsense-label images per class in each split")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    for split, count in (("", args.scenes), ("-train", args.train_scenes)):
        captions, vqa = [], []
        for i in range(count):
            rng = random.Random(f"eval-scene{split}-{i}")
            scene = world.sample_scene(rng)
            name = f"scene{split}-{i:04d}"
            image = save(scene, args.out, name)
            captions.append({"id": name, "image": image, "prompt": data.CAPTION_PROMPT,
                             "captions": [world.caption(scene)], "shape": scene["shape"], "color": scene["color"],
                             "count": scene["count"]})
            for k, (question, answer) in enumerate(rng.sample(world.questions(scene, rng), 2)):
                # Ten answers, as VQA v2's ten annotators: the VQA score (min(matches / 3, 1) over the ten
                # leave-one-out subsets) is then 1 for the right answer; with one it would be 0 for any answer.
                vqa.append({"id": f"{name}-q{k}", "image": image, "question": question, "answers": [answer] * 10})
        write_jsonl(os.path.join(args.out, f"caption{split}.jsonl"), captions)
        write_jsonl(os.path.join(args.out, f"vqa{split}.jsonl"), vqa)

    for attribute, spec in NONSENSE.items():
        for split, per_class in zip(("train", "test"), args.per_class):
            rows = []
            for c, (value, label) in enumerate(zip(spec["values"], spec["labels"])):
                for k in range(per_class):
                    rng = random.Random(f"eval-nonsense-{attribute}-{split}-{c}-{k}")
                    name = f"{attribute}-{split}-{c}-{k:02d}"
                    scene = world.sample_scene_with(rng, {**spec["fixed"], attribute: value})
                    rows.append({"id": name, "image": save(scene, args.out, name), "label": label})
            random.Random(f"order-{attribute}-{split}").shuffle(rows)
            write_jsonl(os.path.join(args.out, f"nonsense-{attribute}-{split}.jsonl"), rows)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
