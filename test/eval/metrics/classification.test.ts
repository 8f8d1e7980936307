// ROC-AUC (ties averaged) and accuracy. ROC-AUC reference values: official_reference.py computes each case twice in
// numpy (Mann-Whitney U with average ranks, and the trapezoid under the ROC curve as sklearn does) and they agree.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { accuracy, rocAuc } from "../../../src/eval/metrics/classification.js";

const HERE = "test/eval/metrics";
const cases = JSON.parse(readFileSync(`${HERE}/cases.json`, "utf8")) as {
  roc_auc: { name: string; scores: number[]; labels: number[] }[];
};
const official = JSON.parse(readFileSync(`${HERE}/official.json`, "utf8")) as { roc_auc: Record<string, number> };

test("ROC-AUC equals the reference on every case, ties between classes counting one half", () => {
  for (const c of cases.roc_auc)
    assert.ok(Math.abs(rocAuc(c.scores, c.labels) - official.roc_auc[c.name]) < 1e-12, c.name);
  assert.equal(rocAuc([0.5, 0.5], [0, 1]), 0.5);
});

test("ROC-AUC does not depend on the order of the samples", () => {
  const c = cases.roc_auc[0];
  const order = c.scores.map((_, i) => i).reverse();
  assert.equal(
    rocAuc(
      order.map((i) => c.scores[i]),
      order.map((i) => c.labels[i]),
    ),
    rocAuc(c.scores, c.labels),
  );
});

test("ROC-AUC refuses a single class", () => {
  assert.throws(() => rocAuc([0.1, 0.2], [1, 1]), /both positive and negative/);
});

test("accuracy", () => {
  assert.equal(accuracy(["yes", "no", "no", 1], ["yes", "yes", "no", "1"]), 0.75);
  assert.throws(() => accuracy(["a"], []), /1 predictions for 0 labels/);
});
