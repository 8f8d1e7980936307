"""Draws the small deterministic fixture images under fixtures/images/ (run: /usr/bin/python3 tools/make_fixture_images.py)."""
import os

from PIL import Image, ImageDraw

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "images")


def scene(w: int, h: int, sky, ground, sun, shape_color) -> Image.Image:
    im = Image.new("RGB", (w, h), sky)
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(h * 0.62), w, h], fill=ground)
    d.ellipse([int(w * 0.65), int(h * 0.08), int(w * 0.85), int(h * 0.08) + int(w * 0.2)], fill=sun)
    d.polygon([(int(w * 0.15), int(h * 0.62)), (int(w * 0.35), int(h * 0.25)), (int(w * 0.55), int(h * 0.62))], fill=shape_color)
    for i in range(0, w, max(1, w // 24)):
        d.line([(i, int(h * 0.7)), (i + w // 48, h)], fill=(ground[0] // 2, ground[1] // 2, ground[2] // 2), width=1)
    return im


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    scene(320, 240, (120, 170, 235), (70, 140, 60), (250, 220, 80), (150, 90, 60)).save(os.path.join(OUT, "landscape.png"))
    scene(200, 300, (30, 30, 70), (90, 90, 100), (240, 240, 240), (200, 40, 40)).save(os.path.join(OUT, "night.jpg"), quality=90)
    im = Image.new("RGB", (256, 256), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for k, c in enumerate([(220, 30, 30), (30, 160, 30), (30, 30, 220), (230, 200, 20)]):
        d.rectangle([20 + k * 55, 40 + k * 30, 70 + k * 55, 120 + k * 30], fill=c)
    im.save(os.path.join(OUT, "blocks.png"))


if __name__ == "__main__":
    main()
