// HF 4.31 logits processors and warpers on small rows whose expected values are worked out by hand.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  applyMinNewTokens,
  applyProcessors,
  applyRepetitionPenalty,
  drawFromProbs,
  logitsProcessors,
  logitsWarpers,
  logSoftmax,
  softmax,
  warpTemperature,
  warpTopK,
  warpTopP,
  type SamplingSettings,
} from "../../src/llm/processors.js";

const logs = (probs: number[]) => Float32Array.from(probs, Math.log);

test("repetition penalty divides positive and multiplies negative scores of generated tokens, once per token", () => {
  const scores = Float32Array.from([2, -1, 0.5, 3]);
  applyRepetitionPenalty(scores, [0, 1, 1], 2);
  assert.deepEqual(Array.from(scores), [1, -2, 0.5, 3]);
});

test("min new tokens forbids eos until enough tokens exist; the processor list runs both in HF's order", () => {
  const scores = Float32Array.from([1, 1, 1]);
  applyMinNewTokens(scores, 1, 2, 2);
  assert.equal(scores[2], -Infinity);
  const allowed = Float32Array.from([1, 1, 1]);
  applyMinNewTokens(allowed, 2, 2, 2);
  assert.equal(allowed[2], 1);
  const both = applyProcessors(
    logitsProcessors({ repetitionPenalty: 2, minNewTokens: 5 }, 3),
    Float32Array.from([2, -1, 0.5, 3]),
    [0, 1, 1],
  );
  assert.deepEqual(Array.from(both), [1, -2, 0.5, -Infinity]);
  // Built once from the settings, only with the processors that change something (as HF's LogitsProcessorList).
  assert.equal(logitsProcessors({ repetitionPenalty: 1, minNewTokens: 0 }, 3).length, 0);
  assert.equal(logitsWarpers({ temperature: 1, topK: 0, topP: 1 }).length, 0);
  assert.equal(logitsWarpers({ temperature: 0.7, topK: 5, topP: 0.9 }).length, 3);
});

test("log_softmax and softmax", () => {
  // logsumexp(1, 2, 3) = 3 + ln(1 + e^-1 + e^-2) = 3.4076059644
  const ls = logSoftmax(Float32Array.from([1, 2, 3]));
  [-2.4076059644, -1.4076059644, -0.4076059644].forEach((v, i) => assert.ok(Math.abs(ls[i] - v) < 1e-6));
  assert.deepEqual(Array.from(softmax(Float32Array.from([-Infinity, 0]))), [0, 1]);
});

test("temperature divides the scores", () => {
  assert.deepEqual(Array.from(warpTemperature(Float32Array.from([2, 4, -1]), 2)), [1, 2, -0.5]);
});

test("top-k keeps the k largest scores and anything tied with the k-th; 0 or k >= V keep everything", () => {
  assert.deepEqual(Array.from(warpTopK(Float32Array.from([1, 3, 2, 3]), 2)), [-Infinity, 3, -Infinity, 3]);
  assert.deepEqual(Array.from(warpTopK(Float32Array.from([1, 3, 2, 0]), 2)), [-Infinity, 3, 2, -Infinity]);
  assert.deepEqual(Array.from(warpTopK(Float32Array.from([1, 2]), 5)), [1, 2]);
  assert.deepEqual(Array.from(warpTopK(Float32Array.from([1, 2]), 0)), [1, 2]);
});

test("top-p drops the least likely tokens whose cumulative probability stays <= 1 - top_p, keeping the most likely", () => {
  // Probabilities 0.1, 0.2, 0.3, 0.4: ascending cumulative 0.1, 0.3, 0.6, 1.0.
  const scores = logs([0.1, 0.2, 0.3, 0.4]);
  // top_p 0.5 -> bound 0.5: tokens 0 and 1 go.
  assert.deepEqual(
    Array.from(warpTopP(scores, 0.5)).map((s) => s === -Infinity),
    [true, true, false, false],
  );
  // top_p 0.05 -> bound 0.95: all but the most likely go.
  assert.deepEqual(
    Array.from(warpTopP(scores, 0.05)).map((s) => s === -Infinity),
    [true, true, true, false],
  );
  // Probabilities in another order: the mask follows the tokens, not the positions.
  assert.deepEqual(
    Array.from(warpTopP(logs([0.4, 0.1, 0.3, 0.2]), 0.5)).map((s) => s === -Infinity),
    [false, true, false, true],
  );
  assert.deepEqual(Array.from(warpTopP(scores, 1)), Array.from(scores));
});

test("a draw walks the probabilities in index order and never lands on a removed token", () => {
  const probs = Float32Array.from([0, 0.5, 0, 0.5]);
  assert.equal(drawFromProbs(probs, 0), 1);
  assert.equal(drawFromProbs(probs, 0.49), 1);
  assert.equal(drawFromProbs(probs, 0.51), 3);
  assert.equal(drawFromProbs(probs, 0.9999999999), 3);
  // top-k 2 keeps tokens 2 and 3 with probabilities 3/7 = 0.4286 and 4/7.
  const scores = logs([1, 2, 3, 4]);
  const sampleToken = (row: Float32Array, settings: SamplingSettings, uniform: number) =>
    drawFromProbs(softmax(applyProcessors(logitsWarpers(settings), row, [])), uniform);
  assert.equal(sampleToken(scores, { temperature: 1, topK: 2, topP: 1 }, 0.42), 2);
  assert.equal(sampleToken(scores, { temperature: 1, topK: 2, topP: 1 }, 0.43), 3);
  // top-p 0.5 on 0.1..0.4 keeps tokens 2 and 3: the smallest uniform lands on 2.
  assert.equal(sampleToken(scores, { temperature: 1, topK: 0, topP: 0.5 }, 0), 2);
  // A high temperature flattens: ln(1..4)/100 gives nearly uniform probabilities, so 0.3 lands on token 1.
  assert.equal(sampleToken(scores, { temperature: 100, topK: 0, topP: 1 }, 0.3), 1);
});
