import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { loadImage, type RgbImage } from "../../src/vision/image.js";
import {
  normalizeImage,
  preprocessBatch,
  preprocessImage,
  resizeBicubic,
  zeroNormalizedImage,
} from "../../src/vision/preprocess.js";
import { maxAbsDiff, meanAbsDiff } from "../helpers/golden.js";
import { readManifest } from "../../src/model/manifest.js";
import { packageDir } from "../helpers/fixtures.js";
import { golden, IMAGES, meta, uint8 } from "./helpers.js";

// Normalization constants from the package, as the runtime reads them (the manifest's test checks them against
// Emu2's); the PIL goldens were normalized with the reference's constants, so a disagreement fails here.
const { mean, std } = readManifest(join(packageDir("emu2-tiny"), "manifest.yaml")).vision;
const config = (size: number) => ({ image_size: size, mean, std });

// PIL is matched exactly (same fixed-point arithmetic), so the bounds are zero, not tolerances.
test("bicubic resize equals PIL's Image.resize((S, S), BICUBIC) on every fixture image at 448 and 224", async () => {
  let cases = 0;
  for (const name of meta.images.filter((n) => n !== meta.exif_rotated)) {
    const image = await loadImage(join(IMAGES, name));
    for (const size of meta.sizes) {
      const key = `${name}.${size}.resized`;
      if (!golden.names().includes(key)) continue;
      const reference = uint8(key);
      const resized = resizeBicubic(image, size, size);
      // In normalized units (what the encoder sees), through the same normalization for both.
      const ours = normalizeImage(resized, mean, std);
      const theirs = normalizeImage({ width: size, height: size, data: reference }, mean, std);
      const levels = { max: maxAbsDiff(resized.data, reference), mean: meanAbsDiff(resized.data, reference) };
      const normalized = { max: maxAbsDiff(ours, theirs), mean: meanAbsDiff(ours, theirs) };
      assert.equal(
        levels.max,
        0,
        `${key}: max abs diff ${levels.max} uint8 levels (mean ${levels.mean.toExponential(2)})`,
      );
      assert.equal(
        normalized.mean,
        0,
        `${key}: normalized max ${normalized.max.toExponential(2)} mean ${normalized.mean.toExponential(2)}`,
      );
      cases++;
    }
  }
  assert.ok(cases >= 14, `only ${cases} resize cases were compared`);
});

test("ToTensor + Normalize equal the reference float32 values exactly", async () => {
  const [name, size] = meta.normalized_image;
  const expected = golden.float32(`${name}.${size}`);
  assert.deepEqual(expected.shape, [3, size, size]);
  const pixels = preprocessImage(await loadImage(join(IMAGES, name)), config(size));
  assert.equal(
    maxAbsDiff(pixels, expected.data),
    0,
    `${name} -> ${size}: mean abs diff ${meanAbsDiff(pixels, expected.data)}`,
  );
});

test("resizing keeps the exact PIL result when only one side changes (PIL skips the other pass)", async () => {
  for (const name of ["extra/keep_width.jpg", "extra/keep_height.jpg"]) {
    const image = await loadImage(join(IMAGES, name));
    assert.ok(image.width === 224 || image.height === 224, `${name} must keep one side at 224`);
    assert.equal(maxAbsDiff(resizeBicubic(image, 224, 224).data, uint8(`${name}.224.resized`)), 0, name);
  }
});

test("an image already at the target size is only normalized", () => {
  const image: RgbImage = { width: 4, height: 4, data: Uint8Array.from({ length: 48 }, (_, i) => (i * 37) % 256) };
  assert.deepEqual(resizeBicubic(image, 4, 4).data, image.data);
  assert.deepEqual(preprocessImage(image, config(4)), normalizeImage(image, mean, std));
});

test("normalizeImage lays out CHW with (v / 255 - mean) / std per channel", () => {
  const image: RgbImage = { width: 2, height: 1, data: Uint8Array.from([0, 128, 255, 10, 20, 30]) };
  const x = normalizeImage(image, mean, std);
  // float32 after every step, as torch computes it.
  const f = Math.fround;
  const expect = (v: number, c: number) => f(f(f(v / 255) - f(mean[c])) / f(std[c]));
  assert.deepEqual(Array.from(x), [
    expect(0, 0),
    expect(10, 0),
    expect(128, 1),
    expect(20, 1),
    expect(255, 2),
    expect(30, 2),
  ]);
});

test("preprocessBatch stacks images into [B,3,S,S] in order", async () => {
  const images = await Promise.all(["landscape.png", "extra/gray.png"].map((n) => loadImage(join(IMAGES, n))));
  const batch = preprocessBatch(images, config(224));
  assert.deepEqual(batch.dims, [2, 3, 224, 224]);
  const each = 3 * 224 * 224;
  assert.deepEqual(batch.data.subarray(0, each), preprocessImage(images[0], config(224)));
  assert.deepEqual(batch.data.subarray(each), preprocessImage(images[1], config(224)));
});

test("the autoencoding null image is zero after normalization", () => {
  const zero = zeroNormalizedImage(448);
  assert.equal(zero.length, 3 * 448 * 448);
  assert.ok(zero.every((v) => v === 0));
});
