import assert from "node:assert/strict";
import { test } from "node:test";
import { positionIds } from "../../src/llm/graphs.js";

test("position ids: cumsum(mask) - 1, padded positions 1", () => {
  assert.deepEqual(positionIds([0, 0, 1, 1, 1]), [1, 1, 0, 1, 2]);
  assert.deepEqual(positionIds([1, 1, 1]), [0, 1, 2]);
});
