// The seeded initial-latent generator of docs/package-format.md, bit-identical to python/emu2ref/noise.py:
// SplitMix64 (src/util/splitmix64.ts) -> uniform doubles (53 bits) -> Box-Muller normals in pairs, computed in
// float64, stored as float32.
import { SplitMix64 } from "../util/splitmix64.js";

/** Fills `out` with standard normals from one seed, row-major, Box-Muller pairs (cos first, then sin). */
export function fillNormals(seed: number, out: Float32Array): void {
  const rng = new SplitMix64(seed);
  for (let i = 0; i < out.length; i += 2) {
    const u1 = rng.uniform();
    const u2 = rng.uniform();
    const r = Math.sqrt(-2 * Math.log(1 - u1));
    const t = 2 * Math.PI * u2;
    out[i] = r * Math.cos(t);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(t);
  }
}

/** Noise of `batch` images of `perImage` values each; image i uses seed + i, so a batch equals its images one by one. */
export function initialNoise(seed: number, batch: number, perImage: number): Float32Array {
  const out = new Float32Array(batch * perImage);
  for (let i = 0; i < batch; i++) fillNormals(seed + i, out.subarray(i * perImage, (i + 1) * perImage));
  return out;
}
