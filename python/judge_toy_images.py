"""Judges images drawn for the toy world's held-out scenes (the JSON lines tools/toy-images.ts prints) with the pixel
classifier of python/emu2toy/judge.py, against each scene's record, and draws a sample grid.

    node --import tsx tools/toy-images.ts --out /tmp/ae --limit 100 > /tmp/ae.jsonl
    npx emu2 caption /tmp/ae --json -q > /tmp/ae-captions.jsonl          # optional: the toy captions its images
    /usr/bin/python3 python/judge_toy_images.py /tmp/ae.jsonl [--captions /tmp/ae-captions.jsonl] \
        [--grid docs/emu2-toy/autoencode.png]

Prints, on stdout, the fraction of images whose color, shape, count and quadrants are right, and of those with both
color and shape right; with --captions, also the fraction whose caption by the toy itself (`emu2 caption --json`'s
lines) names the scene's color, its shape, and both. The scene records are remade from the ids: fixtures/toy-eval's "scene-NNNN" is drawn from
random.Random("eval-scene-N") (python/make_toy_eval.py). --grid: source and drawn image pairs, judged verdict below.
"""
import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from emu2toy import judge, world  # noqa: E402

CELL, TEXT, PAIRS_PER_LINE = 96, 28, 5


def scene_of(sample_id: str) -> dict:
    prefix = "scene-"
    if not sample_id.startswith(prefix) or not sample_id[len(prefix):].isdigit():
        raise ValueError(f"id {sample_id!r}: expected scene-NNNN (fixtures/toy-eval/caption.jsonl)")
    return world.sample_scene(random.Random(f"eval-scene-{int(sample_id[len(prefix):])}"))


def describe(verdict: dict) -> str:
    if verdict["count"] == 0:
        return "nothing"
    return f"{verdict['count']} {verdict['color']} {verdict['shape']}"


def caption_names(caption: str, scene: dict) -> dict:
    """Whether a caption names the scene's color and its shape (singular or plural), as whole words."""
    words = caption.lower().replace(".", " ").split()
    return {"color": scene["color"] in words,
            "shape": scene["shape"] in words or world.plural(scene["shape"], 2) in words}


def read_captions(path: str) -> dict:
    """`emu2 caption --json` lines -> {image file name: caption}."""
    captions = {}
    for number, line in enumerate(open(path), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "image" not in record or "caption" not in record:
            raise SystemExit(f"{path}:{number}: expected an emu2 caption --json line with image and caption")
        captions[os.path.basename(record["image"])] = record["caption"]
    return captions


def grid(rows: list, out: str, count: int = 20) -> None:
    rows = rows[:count]
    lines = (len(rows) + PAIRS_PER_LINE - 1) // PAIRS_PER_LINE
    image = Image.new("RGB", (PAIRS_PER_LINE * 2 * CELL, lines * (CELL + TEXT)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, (row, verdict) in enumerate(rows):
        x, y = (i % PAIRS_PER_LINE) * 2 * CELL, (i // PAIRS_PER_LINE) * (CELL + TEXT)
        image.paste(Image.open(row["source"]).convert("RGB").resize((CELL - 4, CELL - 4), Image.NEAREST), (x + 2, y))
        image.paste(Image.open(row["image"]).convert("RGB").resize((CELL - 4, CELL - 4), Image.NEAREST),
                    (x + CELL + 2, y))
        draw.text((x + 2, y + CELL - 2), row["caption"][:30], fill=(0, 0, 0))
        draw.text((x + 2, y + CELL + 11), "-> " + describe(verdict), fill=(0, 0, 160))
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jsonl")
    parser.add_argument("--grid", help="PNG of the first 20 source/drawn pairs")
    parser.add_argument("--captions", help="`emu2 caption --json` of the drawn images (the toy's own reading)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    if not rows:
        raise SystemExit(f"{args.jsonl}: no images")
    judged, right = [], []
    for row in rows:
        verdict = judge.judge(np.asarray(Image.open(row["image"]).convert("RGB")))
        judged.append((row, verdict))
        right.append(judge.agreement(scene_of(row["id"]), verdict))
    for key in ("color", "shape", "count", "quadrants"):
        print(f"{key}\t{100 * np.mean([r[key] for r in right]):.1f}%")
    print(f"color+shape\t{100 * np.mean([r['color'] and r['shape'] for r in right]):.1f}%")
    if args.captions:
        captions = read_captions(args.captions)
        missing = [row["image"] for row in rows if os.path.basename(row["image"]) not in captions]
        if missing:
            raise SystemExit(f"{args.captions}: no caption of {missing[0]} ({len(missing)} images missing)")
        named = [caption_names(captions[os.path.basename(row["image"])], scene_of(row["id"])) for row in rows]
        for key in ("color", "shape"):
            print(f"toy caption {key}\t{100 * np.mean([n[key] for n in named]):.1f}%")
        print(f"toy caption color+shape\t{100 * np.mean([n['color'] and n['shape'] for n in named]):.1f}%")
    print(f"images\t{len(rows)}")
    if args.grid:
        grid(judged, args.grid)


if __name__ == "__main__":
    main()
