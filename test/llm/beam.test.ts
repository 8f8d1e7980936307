// Beam bookkeeping (transformers 4.31 BeamHypotheses / BeamSearchScorer.process) on small hand-worked cases.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BeamHypotheses, advanceGroup, topCandidates } from "../../src/llm/beam.js";

const f = Math.fround;

test("hypotheses keep the num_beams best by sum / length ** length_penalty and track the worst", () => {
  const hyps = new BeamHypotheses(2, 1, false, 10);
  hyps.add([5], -1, true); // -1
  hyps.add([5, 6], -3, true); // -1.5
  hyps.add([7], -2, true); // -2: worse than the worst of a full set, not kept
  assert.equal(hyps.size, 2);
  hyps.add([8, 9], -1, false); // -0.5 replaces -1.5
  assert.deepEqual(
    hyps.best(2).map((h) => [h.tokens, h.score, h.eos]),
    [
      [[8, 9], -0.5, false],
      [[5], -1, true],
    ],
  );
  // Length penalty -1 multiplies by the length: -1 * 2 = -2 ranks below -1.5 * 1.
  const negative = new BeamHypotheses(2, -1, false, 10);
  negative.add([1, 2], -1, true);
  negative.add([3], -1.5, true);
  assert.deepEqual(
    negative.best(2).map((h) => h.score),
    [-1.5, -2],
  );
});

test("ties: the hypothesis added last wins (finalize pops the end of a stable sort)", () => {
  const hyps = new BeamHypotheses(2, 1, false, 10);
  hyps.add([1], -1, true);
  hyps.add([2], -1, true);
  assert.deepEqual(hyps.best(1)[0].tokens, [2]);
});

test("is_done: never before num_beams hypotheses; early_stopping true / false / never", () => {
  const make = (earlyStopping: boolean | "never") => {
    const hyps = new BeamHypotheses(2, 1, earlyStopping, 10);
    hyps.add([1], -1, true);
    assert.equal(hyps.isDone(-100, 2), false);
    hyps.add([2], -1, true); // worst -1
    return hyps;
  };
  assert.equal(make(true).isDone(0, 2), true);
  // false: the best running candidate could reach best_sum / cur_len: -3 / 2 = -1.5 <= -1 -> done; -1 / 2 > -1 -> not.
  assert.equal(make(false).isDone(-3, 2), true);
  assert.equal(make(false).isDone(-1, 2), false);
  // never, length penalty > 0: the bound uses max_new_tokens: -3 / 10 = -0.3 > -1 -> not done.
  assert.equal(make("never").isDone(-3, 2), false);
  assert.equal(make("never").isDone(-20, 2), true);
});

test("eos as the first token cannot be scored (HF divides by 0 ** length_penalty)", () => {
  assert.throws(() => new BeamHypotheses(2, -1, false, 10).add([], -1, true), /first token/);
});

test("top candidates over a group: beam score + log-prob, descending, ties to the lower flat index", () => {
  const rows = [Float32Array.from([-1, -2, -0.5]), Float32Array.from([-0.1, -3, -0.2])];
  const top = topCandidates(rows, [0, -1], 4);
  assert.deepEqual(top, [
    { score: -0.5, beam: 0, token: 2 },
    { score: -1, beam: 0, token: 0 },
    { score: f(f(-0.1) + -1), beam: 1, token: 0 },
    { score: f(f(-0.2) + -1), beam: 1, token: 2 },
  ]);
  const tied = topCandidates([Float32Array.from([-1, -1]), Float32Array.from([-1, -1])], [0, 0], 3);
  assert.deepEqual(
    tied.map((c) => [c.beam, c.token]),
    [
      [0, 0],
      [0, 1],
      [1, 0],
    ],
  );
});

test("top candidates equal a full sort of every beam's scores, over rows of ties, -Infinity and many sizes", () => {
  let seed = 11;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  // Quarter steps tie often; sizes below, at and above the count and a vocabulary's; -Infinity rows as a processor
  // leaves them (min_new_tokens masking eos), and a beam at -1e9 (the first step's others).
  for (const n of [1, 3, 9, 10, 11, 37, 300, 32000]) {
    const rows = Array.from({ length: 5 }, (_, beam) =>
      Float32Array.from({ length: n }, (_, token) =>
        beam === 3 && token % 3 ? -Infinity : -Math.floor(next() * 40) / 4,
      ),
    );
    const beamScores = [0, -1.25, -0.75, -1e9, f(-2.3)];
    const all = rows.flatMap((row, beam) =>
      Array.from(row, (score, token) => ({ score: f(score + beamScores[beam]), beam, token, flat: beam * n + token })),
    );
    all.sort((a, b) => b.score - a.score || a.flat - b.flat);
    const expected = all.slice(0, 10).map(({ score, beam, token }) => ({ score, beam, token }));
    assert.deepEqual(topCandidates(rows, beamScores, 10), expected, `${n} scores per beam`);
  }
});

test("a step: eos in the top num_beams finishes its beam, eos below is skipped, the next num_beams others continue", () => {
  const hyps = new BeamHypotheses(2, 1, false, 10);
  const candidates = [
    { score: -0.5, beam: 1, token: 9 },
    { score: -0.7, beam: 0, token: 4 },
    { score: -0.8, beam: 0, token: 9 },
    { score: -0.9, beam: 1, token: 5 },
  ];
  const { next, done } = advanceGroup(candidates, [[1], [2]], hyps, 2, 9, 2);
  assert.deepEqual(next, [
    { score: -0.7, parent: 0, token: 4 },
    { score: -0.9, parent: 1, token: 5 },
  ]);
  assert.deepEqual(
    hyps.best(2).map((h) => [h.tokens, h.score]),
    [[[2], -0.5]],
  );
  assert.equal(done, false);
});
