import assert from "node:assert/strict";
import { test } from "node:test";
import { initialNoise } from "../../src/diffusion/noise.js";
import { SplitMix64 } from "../../src/util/splitmix64.js";
import { Golden } from "../helpers/golden.js";
import { goldenDir } from "../helpers/fixtures.js";

const golden = new Golden(goldenDir("emu2-tiny", "diffusion"));
const seed = golden.meta.seed as number;

test("SplitMix64 outputs equal the Python reference's 64-bit values", () => {
  const expected = golden.get("noise.splitmix64").data as BigInt64Array;
  const rng = new SplitMix64(seed);
  for (const want of expected) {
    const [hi, lo] = rng.nextHalves();
    assert.equal(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)), want);
  }
});

test("SplitMix64 of seed 0 starts with the published first value", () => {
  // The reference implementation (Vigna, splitmix64.c) seeded with 0 yields 0xE220A8397B1DCDAF first.
  const [hi, lo] = new SplitMix64(0).nextHalves();
  assert.equal(hi, 0xe220a839);
  assert.equal(lo, 0x7b1dcdaf);
});

test("initial noise is bit-identical to the Python reference, and image i uses seed + i", () => {
  const want = golden.float32("noise.batch");
  const [batch, ...rest] = want.shape;
  const perImage = rest.reduce((a, b) => a * b, 1);
  const noise = initialNoise(seed, batch, perImage);
  assert.deepEqual(noise, want.data);
  assert.deepEqual(initialNoise(seed + 1, 1, perImage), want.data.subarray(perImage));
  let sum = 0,
    squares = 0;
  for (const v of noise) {
    sum += v;
    squares += v * v;
  }
  assert.ok(
    Math.abs(sum / noise.length) < 0.1 && Math.abs(squares / noise.length - 1) < 0.1,
    "standard normal moments",
  );
});
