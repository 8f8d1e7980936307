// Image splicing: where the <image> rows are, the count check, and the rows written in order.
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkImageRows, imageRows, mergeFeatureRows, spliceRows } from "../../src/llm/embed.js";

test("<image> rows are found row-major across the batch", () => {
  assert.deepEqual(
    imageRows(
      [
        [5, 9, 9],
        [9, 1, 2],
      ],
      9,
    ),
    [1, 2, 3],
  );
});

test("the number of <image> tokens must equal images x n_query, and the error names both", () => {
  const features = { data: new Float32Array(8), dims: [1, 2, 4] as [number, number, number] };
  checkImageRows(2, features);
  assert.throws(
    () => checkImageRows(3, features),
    /the prompt has 3 <image> tokens but there are 1 image\(s\) x 2 tokens = 2 feature rows/,
  );
  assert.throws(() => checkImageRows(2, null), /the prompt has 2 <image> tokens but there are no image features/);
  checkImageRows(0, null);
});

test("projected rows replace the <image> rows in order; other rows stay", () => {
  const embeds = Float32Array.from([0, 0, 1, 1, 2, 2, 3, 3]); // 4 rows of width 2
  spliceRows(embeds, [1, 3], Float32Array.from([10, 11, 20, 21]), 2);
  assert.deepEqual(Array.from(embeds), [0, 0, 10, 11, 2, 2, 20, 21]);
});

test("mergeFeatureRows: <image> rows take image rows and [gIMG] rows frame rows, each stream in order", () => {
  // ids: 7 = <image>, 5 = [gIMG]; a frame row, two image rows, another frame row.
  const images = { data: Float32Array.from([10, 11, 20, 21]), dims: [1, 2, 2] };
  const frames = { data: Float32Array.from([1, 2, 3, 4]), dims: [2, 1, 2] };
  const merged = mergeFeatureRows([1, 5, 0, 7, 7, 5], 7, images, 5, frames);
  assert.deepEqual(merged.dims, [1, 4, 2]);
  assert.deepEqual(Array.from(merged.data), [1, 2, 10, 11, 20, 21, 3, 4]);
  assert.throws(() => mergeFeatureRows([5, 5, 5], 7, null, 5, frames), /more \[gIMG\] tokens than feature rows/);
  assert.throws(() => mergeFeatureRows([7], 7, images, 5, null), /fewer <image> tokens than feature rows/);
});
