import assert from "node:assert/strict";
import { test } from "node:test";
import { drawBoxMask } from "../../src/vision/box-mask.js";
import { meta, uint8 } from "./helpers.js";

function unpackBits(packed: Uint8Array, count: number): Uint8Array {
  const bits = new Uint8Array(count);
  for (let i = 0; i < count; i++) bits[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1;
  return bits;
}

test("box masks equal the official cv2.rectangle(thickness=3) drawing pixel for pixel", () => {
  const size = meta.box_canvas;
  meta.box_masks.forEach((box, i) => {
    const expected = unpackBits(uint8(`box_mask.${i}`), size * size);
    const mask = drawBoxMask(box, size);
    assert.deepEqual([mask.width, mask.height], [size, size]);
    let wrong = 0;
    for (let p = 0; p < size * size; p++) {
      const value = expected[p] ? 255 : 0;
      if (mask.data[p * 3] !== value || mask.data[p * 3 + 1] !== value || mask.data[p * 3 + 2] !== value) wrong++;
    }
    assert.equal(wrong, 0, `box [${box.join(", ")}]: ${wrong} pixels differ`);
  });
});

test("box coordinates must be integers", () => {
  assert.throws(() => drawBoxMask([1.5, 2, 30, 40]), /must be integer pixel coordinates/);
});
