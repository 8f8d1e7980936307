"""Video input of the Emu2 reference: frames read with PIL, sampled as the runtime samples them, and the prompt text
Emu2-Chat builds from a list of strings and images (emu/chat.py _prepare_inputs, as docs/prompt-format.md quotes it).

- A video is given to the official code as the string "[VIDEO]", its frames (PIL images), then the string "[/VIDEO]".
  "[VIDEO]" is written into the text; every frame inside becomes the video placeholder "[<VID_PLH>]", which expands
  to "[IMG]" + v_query x "[gIMG]" + "[/IMG]"; "[/VIDEO]" only ends the frames and is not written. Images outside a
  video become "[<IMG_PLH>]" -> "[IMG]" + n_query x "<image>" + "[/IMG]".
- Frame features are encode_image(frames, n_query=v_query) (pooled to v_query tokens), project_up, and written over
  the rows whose id is "[gIMG]" in order, a stream of their own beside the images' "<image>" rows (emu/emu.py).
- Sampling (ours; the official code takes frames already extracted): the duration D is cut into N equal segments and
  the frame shown at t_i = (i + 1/2) D / N is taken; a video with fewer frames than N gives all of them. GIF/WebP
  frame delays under 20 ms count as 100 ms, as browsers show them; a folder's frames (natural name order) last 1 each.
"""
import os
import re

from PIL import Image

VIDEO_TOKEN = "[VIDEO]"
VIDEO_END = "[/VIDEO]"
IMAGE_PLACEHOLDER = "[<IMG_PLH>]"
VIDEO_PLACEHOLDER = "[<VID_PLH>]"
FRAME_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".avif", ".bmp"}
MIN_FRAME_DELAY_MS = 20
SHORT_DELAY_AS_MS = 100


def sample_frame_indices(starts, duration, count: int) -> list:
    """Indices of the frames shown at t_i = (2i + 1) D / (2N) for frames starting at `starts` (ascending, first 0)."""
    if count >= len(starts):
        return list(range(len(starts)))
    picked, k = [], 0
    for i in range(count):
        target = (2 * i + 1) * duration
        while k + 1 < len(starts) and starts[k + 1] * 2 * count <= target:
            k += 1
        picked.append(k)
    return picked


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def load_video_frames(path: str, count: int) -> tuple:
    """-> (frame indices, PIL RGB frames) of a folder of frames or an animated GIF/WebP, `count` sampled uniformly."""
    if os.path.isdir(path):
        names = sorted((n for n in os.listdir(path) if os.path.splitext(n)[1].lower() in FRAME_EXTENSIONS),
                       key=_natural_key)
        indices = sample_frame_indices(list(range(len(names))), len(names), count)
        return indices, [Image.open(os.path.join(path, names[k])).convert("RGB") for k in indices]
    image = Image.open(path)
    starts, at = [], 0
    for k in range(getattr(image, "n_frames", 1)):
        image.seek(k)
        delay = int(image.info.get("duration", 0) or 0)
        starts.append(at)
        at += SHORT_DELAY_AS_MS if delay < MIN_FRAME_DELAY_MS else delay
    indices = sample_frame_indices(starts, at, count)
    frames = []
    for k in indices:
        image.seek(k)
        frames.append(image.convert("RGB"))
    return indices, frames


def prepare_inputs(items: list) -> tuple:
    """The official _prepare_inputs over a list of strings and PIL images -> (text, images, video frames)."""
    text, images, frames, in_video = "", [], [], False
    for item in items:
        if isinstance(item, str) and item == VIDEO_END:
            in_video = False
        elif isinstance(item, str):
            if item == VIDEO_TOKEN:
                in_video = True
            text += item
        elif in_video:
            text += VIDEO_PLACEHOLDER
            frames.append(item)
        else:
            text += IMAGE_PLACEHOLDER
            images.append(item)
    return text, images, frames


def expand_placeholders(text: str, n_query: int, v_query: int) -> str:
    return (text.replace(IMAGE_PLACEHOLDER, "[IMG]" + "<image>" * n_query + "[/IMG]")
            .replace(VIDEO_PLACEHOLDER, "[IMG]" + "[gIMG]" * v_query + "[/IMG]"))
