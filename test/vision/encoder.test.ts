// The visual encoder stage end to end (sharp decode, PIL-exact resize, visual_encoder graph, pooling) against the
// PyTorch reference's features of the fixture images.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { drawBoxMask } from "../../src/vision/box-mask.js";
import { loadImage } from "../../src/vision/image.js";
import { Golden, maxAbsDiff } from "../helpers/golden.js";
import { goldenDir, packageDir, TINY_PACKAGES } from "../helpers/fixtures.js";

for (const name of TINY_PACKAGES) {
  test(`${name}: pooled features of the fixture images are within 1e-4 of PyTorch`, async () => {
    const golden = new Golden(goldenDir(name, "llm"));
    const model = Emu2.open(packageDir(name));
    const encoder = await model.visualEncoder();
    for (const image of golden.meta.images as string[]) {
      const features = await encoder.encodeImage(await loadImage(`fixtures/images/${image}`));
      const expected = golden.float32(`features.${image}`);
      assert.deepEqual(features.dims, expected.shape);
      const diff = maxAbsDiff(features.data, expected.data);
      assert.ok(diff <= 1e-4, `${image}: max abs diff ${diff}`);
    }
    await model.release();
  });
}

test("the all-zero null image and box masks go through the same encoder", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const encoder = await model.visualEncoder();
  const nullFeatures = await encoder.encodeNullImage();
  const mask = await encoder.encodeImage(drawBoxMask([10, 20, 200, 300]));
  assert.deepEqual(nullFeatures.dims, [1, 64, 32]);
  assert.deepEqual(mask.dims, [1, 64, 32]);
  assert.ok(maxAbsDiff(nullFeatures.data, mask.data) > 1e-3);
  await model.release();
});
