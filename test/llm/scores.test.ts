import assert from "node:assert/strict";
import { test } from "node:test";
import { argmax, firstAbove, loadRow, logSoftmaxInPlace } from "../../src/llm/scores.js";

test("argmax takes the first of tied maxima wherever they sit, and the largest score anywhere in the row", () => {
  // Every pair of positions in a 37-element row: its prefixes take every path of argmax.wat (16 scores at a time,
  // then 4, then one by one, in both passes).
  for (let a = 0; a < 37; a++) {
    for (let b = a + 1; b < 37; b++) {
      const row = Float32Array.from({ length: 37 }, (_, i) => -i);
      row[a] = 5;
      row[b] = 5;
      assert.equal(argmax(row), a, `tie at ${a} and ${b}`);
      row[b] = 6;
      assert.equal(argmax(row), b, `max at ${b}`);
      assert.equal(argmax(row.subarray(0, b + 1)), b, `max last of ${b + 1}`);
    }
  }
  assert.equal(argmax([-Infinity, -Infinity]), 0);
  assert.equal(argmax([7]), 0);
});

test("argmax equals a plain scan on rows of every length up to 70 and of a vocabulary's, NaN skipped", () => {
  let seed = 7;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 8;
  const scan = (row: Float32Array) => {
    let best = -1;
    for (let i = 0; i < row.length; i++) if (!Number.isNaN(row[i]) && (best < 0 || row[i] > row[best])) best = i;
    return Math.max(best, 0);
  };
  // Whole numbers in 0..7 tie often; -Infinity and NaN sit anywhere. 32,274 scores outgrow the module's first
  // memory page (16,384 scores), 100,000 grow it again.
  const lengths = [...Array.from({ length: 71 }, (_, n) => n), 32274, 100000, 40];
  for (const [k, n] of lengths.entries()) {
    const row = Float32Array.from({ length: n }, () => Math.floor(next()));
    for (let i = k % 5; i < n; i += 7) row[i] = i % 2 ? NaN : -Infinity;
    assert.equal(argmax(row), scan(row), `${n} scores`);
  }
  assert.equal(argmax(Float32Array.of(NaN, 1, NaN, 3, 3)), 3);
  assert.equal(argmax(Float32Array.of(NaN, NaN)), 0);
});

test("firstAbove finds the first score whose float32 sum with the base passes the bar, from any start", () => {
  // 37 scores: every start and every place of the first passing score, inside and across groups of four.
  const n = 37;
  for (let at = 0; at < n; at++) {
    const row = Float32Array.from({ length: n }, (_, i) => (i === at ? 1.5 : i > at ? 2 : -3));
    loadRow(row);
    for (let start = 0; start <= n; start++) {
      const expected = start <= at ? at : start < n ? start : n;
      assert.equal(firstAbove(start, n, -1, 0), expected, `first at ${at}, from ${start}`);
    }
    // Equal to the bar does not pass; nothing passes a bar above every sum.
    assert.equal(firstAbove(0, n, -1.5, 0), at + 1 < n ? at + 1 : n);
    assert.equal(firstAbove(0, n, 0, 5), n);
    // A positive base lifts a score over the bar that it alone is under.
    assert.equal(firstAbove(0, n, 2, 3), at);
  }
  // The sum is rounded to float32 before it is compared: 1 + 2^-30 is 1 in float32.
  loadRow(Float32Array.of(1));
  assert.equal(firstAbove(0, 1, 2 ** -30, 1), 1);
});

/** The distance between float32 x and the next float32 away from zero (2^-149 at 0). */
function ulp(x: number): number {
  const a = Math.abs(Math.fround(x));
  return a === 0 ? 2 ** -149 : 2 ** Math.max(Math.floor(Math.log2(a)) - 23, -149);
}

test("log_softmax in place is within 2 float32 ulps of a float64 computation, on rows of every length up to 70 and of a vocabulary's", () => {
  let seed = 11;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (const n of [...Array.from({ length: 71 }, (_, n) => n), 32274, 100000]) {
    for (const scale of [1, 10, 40]) {
      const row = Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
      const out = Float32Array.from(row);
      logSoftmaxInPlace(out);
      const max = Math.max(...row);
      const logSum = Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0));
      for (let i = 0; i < n; i++) {
        const reference = row[i] - max - logSum;
        // (x - max), the log of the sum and their difference are each rounded to float32: 2 ulps of the larger of
        // |x - max| and the log (1.75 measured). Beside them the sum's own rounding in float64, at most n / 2^53.
        const bound = 2 * ulp(Math.max(Math.abs(row[i] - max), logSum)) + n * 2 ** -53;
        assert.ok(
          Math.abs(out[i] - reference) <= bound,
          `${n} scores of scale ${scale}, at ${i}: ${out[i]} vs ${reference}`,
        );
      }
    }
  }
});

test("log_softmax's exp is within 1.5 ulps of exp over [-12, 0]", () => {
  // A row of 0 and 63 scores y: the first log-prob is -log(1 + 63 e^y), where an error in exp(y) shows at full
  // size (1.43 ulps measured; a coefficient of the polynomial off in its third digit gives hundreds).
  for (let k = 0; k <= 12000; k++) {
    const y = Math.fround(-k / 1000);
    const row = new Float32Array(64).fill(y);
    row[0] = 0;
    logSoftmaxInPlace(row);
    const reference = -Math.log1p(63 * Math.exp(y));
    assert.ok(Math.abs(row[0] - reference) <= 1.5 * ulp(reference), `y ${y}: ${row[0]} vs ${reference}`);
  }
});

test("log_softmax: -Infinity stays -Infinity, NaN anywhere makes the row NaN, as in torch", () => {
  const row = Float32Array.of(-Infinity, 0, -Infinity, Math.log(3), -Infinity);
  logSoftmaxInPlace(row);
  assert.deepEqual(
    Array.from(row, (x) => Math.round(x * 1e6) / 1e6),
    [-Infinity, -1.386294, -Infinity, -0.287682, -Infinity],
  );
  for (const scores of [[1, NaN, 2, 3, 4], [-Infinity, -Infinity], [NaN]]) {
    const nan = Float32Array.from(scores);
    logSoftmaxInPlace(nan);
    assert.ok(nan.every(Number.isNaN), `[${scores}] -> [${Array.from(nan)}]`);
  }
  logSoftmaxInPlace(new Float32Array(0));
});
