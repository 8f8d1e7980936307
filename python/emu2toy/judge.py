"""A deterministic pixel classifier of toy-world images (python/emu2toy/world.py), to judge generated images without
a learned model: which color, which shape, how many objects and in which quadrants.

    judge(np.asarray(image)) -> {"color": "red", "shape": "star", "count": 2, "quadrants": [0, 3]}

- Object pixels are the saturated ones (the background is grey: max - min channel near 0; every world color has a
  spread of at least 140).
- color: the world color nearest (RGB distance) to the most object pixels.
- quadrants: those holding at least MIN_PIXELS object pixels (the smallest object the world draws covers about 90);
  count = their number.
- shape: each present quadrant's mask, moved so that its centroid is at the crop's centre, against masks the world's
  own renderer draws of every shape, size and a few rotations (likewise centred); the shape with the highest summed
  intersection-over-union wins.
"""
from functools import lru_cache

import numpy as np

from . import world

CHROMA = 60
MIN_PIXELS = 30
_HALF = world.IMAGE_SIZE // 2
_ROTATIONS = (-0.3, -0.15, 0.0, 0.15, 0.3)


def object_mask(pixels: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 -> [H,W] bool: the saturated pixels."""
    p = pixels.astype(np.int32)
    return (p.max(axis=2) - p.min(axis=2)) > CHROMA


def _centred(mask: np.ndarray) -> np.ndarray:
    """The mask rolled so that its centroid sits at the crop's centre (to the nearest pixel)."""
    ys, xs = np.nonzero(mask)
    dy = int(round(mask.shape[0] / 2 - 0.5 - ys.mean()))
    dx = int(round(mask.shape[1] / 2 - 0.5 - xs.mean()))
    return np.roll(mask, (dy, dx), axis=(0, 1))


@lru_cache(maxsize=1)
def _templates() -> tuple:
    """(shape names [T], centred masks [T,32,32]) of one object of every shape, size and listed rotation."""
    names, masks = [], []
    for shape in world.SHAPES:
        for size in range(14, 21):
            for rotation in _ROTATIONS:
                scene = {"shape": shape, "color": "red", "count": 1, "quadrants": [0], "sizes": [size],
                         "offsets": [(0, 0)], "rotations": [rotation], "background": 40}
                mask = object_mask(np.asarray(world.render(scene)))[:_HALF, :_HALF]
                names.append(shape)
                masks.append(_centred(mask))
    return names, np.stack(masks)


def _quadrant(mask: np.ndarray, q: int) -> np.ndarray:
    y, x = (q // 2) * _HALF, (q % 2) * _HALF
    return mask[y:y + _HALF, x:x + _HALF]


def judge(pixels: np.ndarray) -> dict:
    """[64,64,3] uint8 RGB -> color, shape, count and quadrants (None / 0 / [] when no object pixels)."""
    mask = object_mask(pixels)
    quadrants = [q for q in range(4) if _quadrant(mask, q).sum() >= MIN_PIXELS]
    if not mask.any():
        return {"color": None, "shape": None, "count": 0, "quadrants": []}
    palette = sorted(world.COLORS)
    rgb = np.array([world.COLORS[c] for c in palette], dtype=np.float32)
    distance = ((pixels[mask].astype(np.float32)[:, None, :] - rgb[None]) ** 2).sum(axis=2)
    color = palette[int(np.bincount(distance.argmin(axis=1), minlength=len(palette)).argmax())]
    names, templates = _templates()
    scores = {shape: 0.0 for shape in world.SHAPES}
    for q in quadrants:
        crop = _centred(_quadrant(mask, q))
        inter = (templates & crop).sum(axis=(1, 2))
        union = (templates | crop).sum(axis=(1, 2))
        iou = inter / np.maximum(union, 1)
        for shape in world.SHAPES:
            scores[shape] += max(iou[i] for i, n in enumerate(names) if n == shape)
    shape = max(world.SHAPES, key=lambda s: scores[s]) if quadrants else None
    return {"color": color, "shape": shape, "count": len(quadrants), "quadrants": quadrants}


def agreement(scene: dict, verdict: dict) -> dict:
    """Per attribute, whether the verdict on an image matches the scene it should show."""
    return {"color": verdict["color"] == scene["color"], "shape": verdict["shape"] == scene["shape"],
            "count": verdict["count"] == scene["count"], "quadrants": verdict["quadrants"] == scene["quadrants"]}
