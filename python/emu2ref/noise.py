"""The seeded initial-latent generator of docs/package-format.md: SplitMix64 -> uniform doubles -> Box-Muller
normals in pairs, filled row-major in float64 and stored as float32. Image i of a batch uses seed + i."""
import math

import numpy as np

_MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & _MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0 ** -53


def normals(seed: int, count: int) -> np.ndarray:
    """`count` standard normals (float64) from one seed."""
    rng = SplitMix64(seed)
    out = np.empty(count, dtype=np.float64)
    for i in range(0, count, 2):
        u1, u2 = rng.uniform(), rng.uniform()
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        t = 2.0 * math.pi * u2
        out[i] = r * math.cos(t)
        if i + 1 < count:
            out[i + 1] = r * math.sin(t)
    return out


def initial_noise(seed: int, shape) -> np.ndarray:
    """Float32 noise of `shape` [B, ...]; image i is drawn from seed + i."""
    per_image = int(np.prod(shape[1:]))
    return np.stack([normals(seed + i, per_image).astype(np.float32).reshape(shape[1:]) for i in range(shape[0])])
