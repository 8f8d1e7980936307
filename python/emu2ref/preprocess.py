"""Image preprocessing exactly as the official Emu2 code builds it (emu/chat.py, emu/constants.py):
torchvision Resize((S, S), BICUBIC) on a PIL image (which is PIL's own bicubic resize, aspect not kept, no crop),
ToTensor, Normalize(mean, std)."""
import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_rgb(path: str) -> Image.Image:
    # The official code calls Image.open(path).convert("RGB"): no EXIF transpose, alpha dropped (not composited).
    return Image.open(path).convert("RGB")


def preprocess(image: Image.Image, size: int = 448, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> np.ndarray:
    """PIL RGB image -> float32 [3, size, size]."""
    resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    x = np.asarray(resized, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)
