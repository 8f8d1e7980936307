"""Goldens for the TypeScript image preprocessing (src/vision/), computed with the official PIL pipeline.

    /usr/bin/python3 -m emu2ref.golden_vision               # (from python/) rewrites fixtures/golden/vision/
    /usr/bin/python3 -m emu2ref.golden_vision --make-images # first re-creates fixtures/images/extra/

Per fixture image (fixtures/images/*.{png,jpg} and fixtures/images/extra/*), keeping data.bin to a few MB:
`<image>.<size>.resized` the resized pixels [S,S,3] uint8 as the official code makes them
(Image.open(path).convert("RGB").resize((S, S), BICUBIC)) at 224 for every image and at 448 for FULL_SIZE_IMAGES;
`<image>.rgb` the decoded pixels [H,W,3] uint8 for images of at most RGB_MAX_PIXELS pixels and for night.jpg
(decoder parity; the only golden for the BMPs);
`<image>.<size>` the normalized tensor [3,S,S] float32 (python/emu2ref/preprocess.py) for NORMALIZED_IMAGE only:
normalization is a per-value map of the resized bytes, so one image pins it down.
The EXIF-rotated JPEG gets `<image>.rgb` (the stored, sideways pixels PIL sees) and `<image>.upright.*`: the same
after ImageOps.exif_transpose, which is what the TypeScript loader produces on purpose.

Box masks: `box_mask.<i>` [448*448/8] uint8, np.packbits of the (three equal) channels of the mask drawn with
cv2.rectangle(thickness=3) exactly as the official Emu2-Gen grounded-generation example (Emu2/README.md, draw_box)
does; the boxes are in meta.box_masks. Needs OpenCV (Debian: apt-get install python3-opencv).

Pooling: `pool.input` [B,1+N,W] random, `pool.output.<q>` = the official pooling (drop CLS, [B,W,g,g],
avg_pool2d(kernel = stride = g / sqrt(q)), flatten row-major) for each q in POOL_QUERIES.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .golden import GoldenWriter
from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, load_rgb, preprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = os.path.join(REPO, "fixtures", "images")
EXTRA = os.path.join(IMAGES, "extra")
OUT = os.path.join(REPO, "fixtures", "golden", "vision")
SIZES = (448, 224)
FULL_SIZE_IMAGES = ("landscape.png", "extra/photo.webp")  # an upscale and a downscale at 448
RGB_MAX_PIXELS = 60_000
RGB_ALWAYS = ("night.jpg",)  # the one real photo JPEG: its decoding is checked on its own
NORMALIZED_IMAGE = ("landscape.png", 224)
EXIF_ROTATED = "extra/rotated_exif6.jpg"
# The three boxes of the official README example, the grounded.yaml fixture's boxes, one reversed, one that
# touches and crosses the canvas edges, and a degenerate one-pixel-wide box.
BOX_MASKS = [
    [22, 14, 224, 224], [224, 10, 448, 224], [120, 264, 320, 438],
    [40, 60, 220, 300], [300, 30, 420, 150],
    [400, 380, 100, 50], [0, 0, 447, 460], [200, 100, 200, 300],
]
BOX_CANVAS = 448
POOL_SHAPE = (2, 1 + 32 * 32, 8)
POOL_QUERIES = (64, 256, 16, 1)
POOL_SEED = 4321


def _scene(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic synthetic photo-like RGB scene: gradients, disc, stripes, a little noise; [H,W,3] uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    img = np.stack([r, g, b], axis=-1)
    disc = (x - width * 0.62) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.22) ** 2
    img[disc] = (240, 200, 30)
    img[((x.astype(int) // 6) % 4 == 0) & (y < height // 5)] = (20, 20, 20)
    img[: height // 6, : width // 8] = (250, 250, 250)  # a bright corner marks the top-left
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_extra_images() -> None:
    """Writes fixtures/images/extra/: one small image per decoding path the loader must get right."""
    os.makedirs(EXTRA, exist_ok=True)
    # RGBA with transparent and half-transparent pixels whose colour is not black: convert("RGB") keeps the colour.
    rgba = np.dstack([_scene(150, 100, 1), np.zeros((100, 150), np.uint8)])
    rgba[..., 3] = np.tile(np.linspace(0, 255, 150).astype(np.uint8), (100, 1))
    rgba[:40, :40, 3] = 0
    Image.fromarray(rgba, "RGBA").save(os.path.join(EXTRA, "alpha.png"))
    # 8-bit grayscale: replicated to three channels.
    gray = Image.fromarray(_scene(120, 90, 2)).convert("L")
    gray.save(os.path.join(EXTRA, "gray.png"))
    # Grayscale with alpha.
    Image.merge("LA", (gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT))).save(
        os.path.join(EXTRA, "gray_alpha.png"))
    # Palette GIF, two frames: only the first counts.
    frame0 = Image.fromarray(_scene(96, 64, 3)).quantize(colors=32, dither=Image.Dither.NONE)
    frame1 = Image.fromarray(_scene(96, 64, 4)[::-1].copy()).quantize(colors=32, dither=Image.Dither.NONE)
    frame0.save(os.path.join(EXTRA, "palette.gif"), save_all=True, append_images=[frame1], duration=100, loop=0)
    # Palette PNG.
    frame0.save(os.path.join(EXTRA, "palette.png"))
    # Lossy WebP larger than 448 so that the 448 resize downscales too.
    Image.fromarray(_scene(520, 470, 5)).save(os.path.join(EXTRA, "photo.webp"), quality=70, method=4)
    # LZW TIFF.
    Image.fromarray(_scene(110, 130, 6)).save(os.path.join(EXTRA, "scan.tiff"), compression="tiff_lzw")
    # CMYK JPEG with a real black channel (grey removed into K): PIL converts it with its own formula, no profile.
    cmy = 255 - _scene(80, 60, 10).astype(np.int32)
    k = cmy.min(axis=-1, keepdims=True)
    cmyk = np.concatenate([cmy - k, k], axis=-1).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(os.path.join(EXTRA, "cmyk.jpg"), quality=90)
    # BMPs (decoded by our own reader, libvips has none): 24-bit, 32-bit with alpha, 8-bit palette, 1-bit.
    Image.fromarray(_scene(70, 50, 11)).save(os.path.join(EXTRA, "rgb24.bmp"))
    Image.fromarray(rgba[:50, :70].copy(), "RGBA").save(os.path.join(EXTRA, "rgba32.bmp"))
    Image.fromarray(_scene(70, 50, 12)).quantize(colors=64).save(os.path.join(EXTRA, "palette8.bmp"))
    Image.fromarray(_scene(70, 50, 13)).convert("1").save(os.path.join(EXTRA, "mono1.bmp"))
    # Sizes where PIL skips one pass at 224: the width (vertical pass only) or the height (horizontal only) is kept.
    Image.fromarray(_scene(224, 170, 8)).save(os.path.join(EXTRA, "keep_width.jpg"), quality=85)
    Image.fromarray(_scene(300, 224, 9)).save(os.path.join(EXTRA, "keep_height.jpg"), quality=85)
    # JPEG whose pixels are stored rotated, with EXIF orientation 6 ("rotate 90 CW to display"): upright is 90x60.
    upright = Image.fromarray(_scene(90, 60, 7))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(os.path.join(IMAGES, EXIF_ROTATED), quality=90, exif=exif)


def fixture_images() -> list[str]:
    names = sorted(f for f in os.listdir(IMAGES) if os.path.isfile(os.path.join(IMAGES, f)))
    names += sorted("extra/" + f for f in os.listdir(EXTRA))
    return names


def add_image(w: GoldenWriter, key: str, image: Image.Image) -> None:
    rgb = image.convert("RGB")
    if rgb.width * rgb.height <= RGB_MAX_PIXELS or key in RGB_ALWAYS:
        w.add(f"{key}.rgb", np.asarray(rgb, dtype=np.uint8))
    if key == EXIF_ROTATED or key.endswith(".bmp"):
        # Compared at the decoded-pixel level only: the loader deliberately returns the upright image, and a BMP
        # differs from the other images only in its decoder.
        return
    for size in SIZES:
        if size == 224 or key in FULL_SIZE_IMAGES:
            w.add(f"{key}.{size}.resized", np.asarray(rgb.resize((size, size), Image.BICUBIC), dtype=np.uint8))
        if (key, size) == NORMALIZED_IMAGE:
            w.add(f"{key}.{size}", preprocess(image, size))


def draw_box(box: list[int]) -> np.ndarray:
    import cv2  # only the box masks need OpenCV (Debian: python3-opencv), as the official example does

    mask = np.zeros((BOX_CANVAS, BOX_CANVAS, 3), dtype=np.uint8)
    mask = cv2.rectangle(mask, (box[0], box[1]), (box[2], box[3]), (255, 255, 255), 3)
    assert (mask[..., 0] == mask[..., 1]).all() and (mask[..., 0] == mask[..., 2]).all()
    return np.packbits(mask[..., 0] > 0)


def official_pool(hidden: torch.Tensor, n_query: int) -> torch.Tensor:
    """Emu2's pooling (emu/emu.py): drop CLS, to [B,W,g,g], avg_pool2d, back to [B,Q,W]."""
    b, n, width = hidden.shape
    grid = int(round((n - 1) ** 0.5))
    x = hidden[:, 1:, :].permute(0, 2, 1).reshape(b, width, grid, grid)
    kernel = grid // int(round(n_query ** 0.5))
    x = F.avg_pool2d(x, kernel_size=kernel, stride=kernel)
    return x.flatten(2).permute(0, 2, 1).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--make-images", action="store_true", help="re-create fixtures/images/extra/ first")
    args = parser.parse_args()
    if args.make_images:
        make_extra_images()

    w = GoldenWriter(OUT)
    images = fixture_images()
    for name in images:
        add_image(w, name, load_rgb(os.path.join(IMAGES, name)))
    add_image(w, EXIF_ROTATED + ".upright", ImageOps.exif_transpose(Image.open(os.path.join(IMAGES, EXIF_ROTATED))))

    for i, box in enumerate(BOX_MASKS):
        w.add(f"box_mask.{i}", draw_box(box))

    generator = torch.Generator().manual_seed(POOL_SEED)
    hidden = torch.randn(POOL_SHAPE, generator=generator, dtype=torch.float32)
    w.add("pool.input", hidden)
    for q in POOL_QUERIES:
        w.add(f"pool.output.{q}", official_pool(hidden, q))

    w.meta = {"images": images, "exif_rotated": EXIF_ROTATED, "sizes": list(SIZES),
              "full_size_images": list(FULL_SIZE_IMAGES), "normalized_image": list(NORMALIZED_IMAGE),"mean": list(OPENAI_CLIP_MEAN),
              "std": list(OPENAI_CLIP_STD), "box_masks": BOX_MASKS, "box_canvas": BOX_CANVAS,
              "pool_queries": list(POOL_QUERIES), "pool_seed": POOL_SEED,
              "pil": Image.__version__, "torch": torch.__version__}
    w.save()
    print(f"wrote {OUT}: {len(images)} images, {len(BOX_MASKS)} box masks, {len(POOL_QUERIES)} pooling cases")


if __name__ == "__main__":
    main()
