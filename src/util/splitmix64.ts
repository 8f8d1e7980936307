// SplitMix64, the seeded generator of docs/package-format.md, bit-identical to python/emu2ref/noise.py: the initial
// latents of the image pipeline (src/diffusion/noise.ts) and the uniforms of text sampling (src/llm/generate.ts)
// both draw from it. The 64-bit state lives in two uint32 halves so the hot loop needs no BigInt.

const TWO_32 = 2 ** 32;

/** Low 64 bits of (ah:al) * (bh:bl), as [hi, lo] uint32. */
function mul64(ah: number, al: number, bh: number, bl: number): [number, number] {
  const a0 = al & 0xffff,
    a1 = al >>> 16,
    b0 = bl & 0xffff,
    b1 = bl >>> 16;
  const mid = a1 * b0 + a0 * b1; // < 2^33, exact in a double
  const low = a0 * b0 + (mid % 0x10000) * 0x10000; // < 2^33
  const carry = Math.floor(low / TWO_32);
  const hi = a1 * b1 + Math.floor(mid / 0x10000) + carry + Math.imul(ah, bl) + Math.imul(al, bh);
  return [hi >>> 0, low >>> 0];
}

export class SplitMix64 {
  private hi: number;
  private lo: number;

  /** `seed` is a non-negative safe integer (the state is the seed mod 2^64). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new RangeError(`seed must be a non-negative integer below 2^53 (got ${seed})`);
    this.hi = Math.floor(seed / TWO_32) >>> 0;
    this.lo = seed >>> 0;
  }

  /** The next output as [hi, lo] uint32 halves. */
  nextHalves(): [number, number] {
    const lo = this.lo + 0x7f4a7c15;
    this.lo = lo >>> 0;
    this.hi = (this.hi + 0x9e3779b9 + (lo >= TWO_32 ? 1 : 0)) >>> 0;
    let zh = this.hi,
      zl = this.lo;
    [zh, zl] = mul64(zh ^ (zh >>> 30), (zl ^ ((zl >>> 30) | (zh << 2))) >>> 0, 0xbf58476d, 0x1ce4e5b9);
    [zh, zl] = mul64(zh ^ (zh >>> 27), (zl ^ ((zl >>> 27) | (zh << 5))) >>> 0, 0x94d049bb, 0x133111eb);
    return [(zh ^ (zh >>> 31)) >>> 0, (zl ^ ((zl >>> 31) | (zh << 1))) >>> 0];
  }

  /** A double in [0, 1): the top 53 bits of the next output times 2^-53. */
  uniform(): number {
    const [hi, lo] = this.nextHalves();
    return (hi * 2 ** 21 + (lo >>> 11)) * 2 ** -53;
  }
}
