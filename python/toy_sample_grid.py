"""Draws the README's sample grid: toy images with the captions emu2-toy gave them (the JSONL `emu2 caption` writes).

    npx emu2 caption fixtures/toy-eval/images/scene-000*.png --format jsonl -q > /tmp/captions.jsonl
    /usr/bin/python3 python/toy_sample_grid.py /tmp/captions.jsonl docs/emu2-toy/samples.png
"""
import json
import sys
import textwrap

from PIL import Image, ImageDraw

CELL, TEXT, COLUMNS = 160, 30, 5


def main() -> None:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    lines = (len(rows) + COLUMNS - 1) // COLUMNS
    grid = Image.new("RGB", (COLUMNS * CELL, lines * (CELL + TEXT)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, row in enumerate(rows):
        x, y = (i % COLUMNS) * CELL, (i // COLUMNS) * (CELL + TEXT)
        grid.paste(Image.open(row["image"]).convert("RGB").resize((CELL - 8, CELL - 8), Image.NEAREST), (x + 4, y + 4))
        # PIL's default font is 6 pixels a character: wrap to the cell.
        draw.multiline_text((x + 4, y + CELL - 2), textwrap.fill(row["caption"], (CELL - 8) // 6), fill=(0, 0, 0))
    grid.save(sys.argv[2])


if __name__ == "__main__":
    main()
