import assert from "node:assert/strict";
import { test } from "node:test";
import { poolVisualFeatures } from "../../src/vision/pool.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { golden, meta } from "./helpers.js";

test("pooling equals the official drop-CLS + avg_pool2d + row-major flatten (torch) for every n_query", () => {
  const input = golden.float32("pool.input");
  const dims = input.shape as [number, number, number];
  for (const q of meta.pool_queries) {
    const expected = golden.float32(`pool.output.${q}`);
    const pooled = poolVisualFeatures(input.data, dims, q);
    assert.deepEqual(pooled.dims, expected.shape);
    const diff = maxAbsDiff(pooled.data, expected.data);
    assert.ok(diff < 1e-6, `n_query ${q}: max abs diff ${diff}`);
  }
});

test("pooling averages grid cells, not neighbours in token order", () => {
  // 1 image, CLS + a 4x4 grid, one channel holding the patch index; 4 queries -> 2x2 cells.
  const values = Float32Array.from([100, ...Array.from({ length: 16 }, (_, i) => i)]);
  const pooled = poolVisualFeatures(values, [1, 17, 1], 4);
  assert.deepEqual(Array.from(pooled.data), [
    (0 + 1 + 4 + 5) / 4,
    (2 + 3 + 6 + 7) / 4,
    (8 + 9 + 12 + 13) / 4,
    (10 + 11 + 14 + 15) / 4,
  ]);
});

test("pooling rejects shapes that do not fit", () => {
  assert.throws(() => poolVisualFeatures(new Float32Array(17), [1, 17, 1], 3), /n_query 3 must be a square/);
  assert.throws(
    () => poolVisualFeatures(new Float32Array(17), [1, 17, 1], 9),
    /n_query 9 must be a square whose side divides the 4x4/,
  );
  assert.throws(
    () => poolVisualFeatures(new Float32Array(16), [1, 16, 1], 4),
    /15 patch tokens \(after CLS\) are not a square grid/,
  );
  assert.throws(() => poolVisualFeatures(new Float32Array(10), [1, 17, 1], 4), /has 10 values/);
});
