// Text generation against the PyTorch generation reference (fixtures/golden/<package>/llm/, HF 4.31 semantics):
// prompt logits, greedy and beam-search continuations, repetition penalty, left-padded batches, continuation scores,
// all through the exported graphs with the KV cache; then the cache against full recompute, stop strings,
// streaming, abort and num_return_sequences on the tiny model.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import type { GenerationSettings } from "../../src/llm/stage.js";
import { logSoftmax } from "../../src/llm/processors.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { packageDir, TINY_PACKAGES } from "../helpers/fixtures.js";
import { LlmGoldens, stageWithEos } from "./goldens.js";
import { GREEDY } from "../helpers/settings.js";

const base: GenerationSettings = {
  ...GREEDY,
  maxNewTokens: 12,
  minNewTokens: 1,
};

function logsumexp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

for (const name of TINY_PACKAGES) {
  const ref = new LlmGoldens(name);
  const meta = ref.meta;
  const model = Emu2.open(packageDir(name));
  const beamSettings = {
    ...base,
    numBeams: meta.beam.num_beams,
    lengthPenalty: meta.beam.length_penalty,
    maxNewTokens: meta.beam.max_new_tokens,
    minNewTokens: meta.beam.min_new_tokens,
  };
  const closeScore = (actual: number | undefined, reference: number) =>
    Math.abs((actual ?? NaN) - reference) <= Math.max(1e-4, 1e-5 * Math.abs(reference));

  test(`${name}: prompt logits at every position and at the last position of each prompt within 1e-4`, async () => {
    const llm = await model.llm();
    const p0 = ref.prompt(0);
    const logits = await llm.promptLogits(p0.ids, p0.features);
    const t = p0.ids.length;
    const v = logits.length / t;
    const rows = Array.from({ length: t }, (_, i) => logits.subarray(i * v, (i + 1) * v));
    assert.deepEqual(
      rows.map((r) => r.indexOf(Math.max(...r))),
      ref.golden.ints("p0.logits.argmax"),
    );
    const every128 = rows.flatMap((r) => Array.from(r.filter((_, j) => j % 128 === 0)));
    assert.ok(maxAbsDiff(every128, ref.golden.float32("p0.logits.every_128th").data) <= 1e-4);
    assert.ok(maxAbsDiff(rows.map(logsumexp), ref.golden.float32("p0.logits.logsumexp").data) <= 1e-4);
    for (let i = 0; i < meta.prompts.length; i++) {
      const p = ref.prompt(i);
      const all = await llm.promptLogits(p.ids, p.features);
      const diff = maxAbsDiff(all.subarray(all.length - v), ref.golden.float32(`p${i}.logits_last`).data);
      assert.ok(diff <= 1e-4, `prompt ${i}: ${diff}`);
    }
  });

  test(`${name}: greedy continuations equal the reference's`, async () => {
    const llm = await model.llm();
    for (let i = 0; i < meta.prompts.length; i++) {
      const p = ref.prompt(i);
      const [out] = await llm.generateText([p.ids], p.features, {
        ...base,
        maxNewTokens: meta.greedy.max_new_tokens,
        minNewTokens: meta.greedy.min_new_tokens,
      });
      assert.deepEqual(out.ids, ref.generated(ref.golden.ints(`p${i}.greedy`)), `prompt ${i}`);
    }
  });

  test(`${name}: greedy with a frequent token as eos stops where the reference does`, async () => {
    const stage = await stageWithEos(model, meta.frequent_eos);
    const p = ref.prompt(0);
    const [out] = await stage.generateText([p.ids], p.features, {
      ...base,
      maxNewTokens: meta.greedy.max_new_tokens,
      minNewTokens: meta.greedy.min_new_tokens,
    });
    const expected = ref.golden.ints("p0.greedy_frequent_eos");
    assert.deepEqual(out.ids, ref.generated(expected, meta.frequent_eos));
    assert.equal(out.stopReason, expected.includes(meta.frequent_eos) ? "eos" : "length");
  });

  test(`${name}: beam search (5 beams, length penalty -1) returns the reference's sequences and scores`, async () => {
    const llm = await model.llm();
    for (let i = 0; i < meta.prompts.length; i++) {
      const p = ref.prompt(i);
      const [out] = await llm.generateText([p.ids], p.features, beamSettings);
      assert.deepEqual(out.ids, ref.generated(ref.golden.ints(`p${i}.beam`)), `prompt ${i}`);
      // The score is the log-prob sum times the length (length penalty -1): float32 noise grows with it.
      const reference = ref.golden.float32(`p${i}.beam_score`).data[0];
      assert.ok(closeScore(out.score, reference), `prompt ${i} score ${out.score} vs ${reference}`);
    }
  });

  test(`${name}: beam search with finished hypotheses (a frequent token as eos), early_stopping false/true/never`, async () => {
    const stage = await stageWithEos(model, meta.frequent_eos);
    const p = ref.prompt(0);
    for (const [suffix, earlyStopping] of [
      ["", false],
      ["_early_stopping_true", true],
      ["_early_stopping_never", "never"],
    ] as const) {
      const [out] = await stage.generateText([p.ids], p.features, { ...beamSettings, earlyStopping });
      assert.deepEqual(
        out.ids,
        ref.generated(ref.golden.ints(`p0.beam_frequent_eos${suffix}`), meta.frequent_eos),
        `early_stopping ${earlyStopping}`,
      );
      assert.ok(closeScore(out.score, ref.golden.float32(`p0.beam_frequent_eos${suffix}_score`).data[0]));
    }
  });

  test(`${name}: repetition penalty 1.3 (greedy) equals the reference's`, async () => {
    const llm = await model.llm();
    const p = ref.prompt(2);
    const [out] = await llm.generateText([p.ids], p.features, {
      ...base,
      repetitionPenalty: meta.repetition_penalty,
      maxNewTokens: meta.greedy.max_new_tokens,
    });
    assert.deepEqual(out.ids, ref.generated(ref.golden.ints("p2.greedy_repetition_penalty")));
  });

  test(`${name}: left-padded batches: greedy (4 prompts of different lengths) equals one by one and the reference; beam search equals the reference`, async () => {
    const llm = await model.llm();
    const first = ref.prompt(0);
    const all = [...meta.prompts.map((_, i) => ref.prompt(i)), { ids: first.ids.slice(0, -4), features: null }];
    const stacked = ref.features(meta.prompts.flatMap((p) => p.images));
    const batch = await llm.generateText(
      all.map((p) => p.ids),
      stacked,
      { ...base, maxNewTokens: meta.greedy.max_new_tokens },
    );
    const expected = ref.rows("batch.greedy");
    for (let i = 0; i < all.length; i++) {
      const [alone] = await llm.generateText([all[i].ids], all[i].features, {
        ...base,
        maxNewTokens: meta.greedy.max_new_tokens,
      });
      assert.deepEqual(batch[i].ids, alone.ids, `row ${i}`);
      if (i < expected.length) assert.deepEqual(batch[i].ids, ref.generated(expected[i]), `row ${i} vs reference`);
    }
    const beams = await llm.generateText(
      all.slice(0, 3).map((p) => p.ids),
      stacked,
      beamSettings,
    );
    const beamScores = ref.golden.float32("batch.beam_score").data;
    ref.rows("batch.beam").forEach((row, i) => {
      assert.deepEqual(beams[i].ids, ref.generated(row), `beam row ${i}`);
      assert.ok(closeScore(beams[i].score, beamScores[i]), `beam row ${i} score ${beams[i].score} vs ${beamScores[i]}`);
    });
  });

  test(`${name}: continuation scores on the context's cache equal the reference's and a full recompute`, async () => {
    const llm = await model.llm();
    const p = ref.prompt(meta.score.context_prompt);
    const candidates = meta.score.candidate_ids;
    const scores = await llm.scoreContinuations(p.ids, p.features, candidates);
    assert.ok(
      maxAbsDiff(
        scores.map((s) => s.sum),
        ref.golden.float32("score.sum").data,
      ) <= 1e-4,
    );
    assert.ok(
      maxAbsDiff(
        scores.map((s) => s.mean),
        ref.golden.float32("score.mean").data,
      ) <= 1e-4,
    );
    for (const [c, candidate] of candidates.entries()) {
      const logits = await llm.promptLogits([...p.ids, ...candidate], p.features);
      const v = logits.length / (p.ids.length + candidate.length);
      const full = candidate.reduce(
        (sum, token, i) => sum + logSoftmax(logits.subarray((p.ids.length - 1 + i) * v, (p.ids.length + i) * v))[token],
        0,
      );
      assert.ok(
        Math.abs(full - scores[c].sum) <= 1e-4,
        `candidate ${c}: cached ${scores[c].sum} vs recomputed ${full}`,
      );
    }
  });

  test(`${name}: <image> tokens without features are refused, naming both counts`, async () => {
    const llm = await model.llm();
    const p = ref.prompt(1);
    await assert.rejects(
      llm.generateText([p.ids], null, base),
      /the prompt has \d+ <image> tokens but there are no image features/,
    );
  });
}

test("greedy on the KV cache picks, at every step, the argmax of a full recompute of the whole sequence", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const llm = await model.llm();
  const ids = model.tokenizer().encode("A red car parked by the sea.");
  const [cached] = await llm.generateText([ids], null, { ...base, minNewTokens: 0 });
  const logits = await llm.promptLogits([...ids, ...cached.ids], null);
  const v = logits.length / (ids.length + cached.ids.length);
  cached.ids.forEach((token, i) => {
    const row = logits.subarray((ids.length - 1 + i) * v, (ids.length + i) * v);
    assert.equal(row.indexOf(Math.max(...row)), token, `step ${i}`);
  });
});

test("streaming, stop strings and abort", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const llm = await model.llm();
  const ids = model.tokenizer().encode("A red car parked by the sea.");
  const settings = { ...base, minNewTokens: 0 };
  const streamed: number[] = [];
  const [full] = await llm.generateText([ids], null, settings, {
    onTokens: (index, tokens) => streamed.push(...tokens),
  });
  assert.ok(full.ids.length >= 4, "the tiny model's continuation is long enough for this test");
  assert.deepEqual(streamed, full.ids);
  // A decode callback that spells ids out: the stop text is the first three tokens, so generation stops after them.
  const decode = (tokens: number[]) => tokens.join(" ");
  const [stopped] = await llm.generateText(
    [ids],
    null,
    { ...settings, stop: [decode(full.ids.slice(0, 3))] },
    { decode },
  );
  assert.deepEqual(stopped, { ids: full.ids.slice(0, 3), stopReason: "stop" });
  const controller = new AbortController();
  const [aborted] = await llm.generateText([ids], null, settings, {
    signal: controller.signal,
    onTokens: (_, tokens) => tokens.length > 0 && streamed.push(...tokens) >= full.ids.length + 2 && controller.abort(),
  });
  assert.deepEqual(aborted, { ids: full.ids.slice(0, 2), stopReason: "aborted" });
  const [early] = await llm.generateText([ids], null, { ...settings, numBeams: 3 }, { signal: controller.signal });
  assert.deepEqual(early, { ids: [], stopReason: "aborted" });
});

test("beam search with num_return_sequences returns each prompt's best hypotheses, best first", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const llm = await model.llm();
  const prompts = [
    model.tokenizer().encode("A red car"),
    model.tokenizer().encode("A photo of a mountain lake at dawn"),
  ];
  const settings = { ...base, numBeams: 4, maxNewTokens: 6 };
  const single = await llm.generateText(prompts, null, settings);
  const three = await llm.generateText(prompts, null, { ...settings, numReturnSequences: 3 });
  assert.equal(three.length, 6);
  for (let b = 0; b < 2; b++) {
    const group = three.slice(b * 3, b * 3 + 3);
    assert.deepEqual(group[0], single[b]);
    assert.ok(
      group.every((h, j) => j === 0 || (h.score ?? NaN) <= (group[j - 1].score ?? NaN)),
      "scores descend",
    );
    assert.equal(new Set(group.map((h) => h.ids.join(","))).size, 3, "distinct hypotheses");
  }
  await assert.rejects(
    llm.generateText(prompts, null, { ...settings, numReturnSequences: 5 }),
    /^SettingsError: generation setting numReturnSequences: expected a whole number from 1 to the number of beams \(4\), got 5$/,
  );
});

test("seeded sampling: the same seed gives the same tokens, another seed other tokens", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const llm = await model.llm();
  const ids = model.tokenizer().encode("A red car");
  const sample = { ...base, doSample: true, temperature: 1.5, topK: 50, topP: 0.95, maxNewTokens: 12, minNewTokens: 0 };
  const [a] = await llm.generateText([ids], null, { ...sample, seed: 42 });
  const [b] = await llm.generateText([ids], null, { ...sample, seed: 42 });
  const [c] = await llm.generateText([ids], null, { ...sample, seed: 43 });
  assert.deepEqual(a.ids, b.ids);
  assert.notDeepEqual(a.ids, c.ids);
});
