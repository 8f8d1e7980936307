// The TypeScript LLM stage against the PyTorch generation reference (fixtures/golden/<package>/llm/): prompt logits,
// greedy and beam-search continuations (HF 4.31 semantics), repetition penalty, a left-padded batch, image
// regression and continuation scores, all through the exported graphs with the KV cache.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import type { Features, GenerationSettings } from "../../src/llm/stage.js";
import { logSoftmax, processScores, sampleToken } from "../../src/llm/stage.js";
import { Golden, maxAbsDiff } from "../helpers/golden.js";
import { goldenDir, packageDir, TINY_PACKAGES } from "../helpers/fixtures.js";

interface Meta {
  prompts: { images: string[] }[];
  greedy: { max_new_tokens: number; min_new_tokens: number };
  beam: { num_beams: number; length_penalty: number; max_new_tokens: number; min_new_tokens: number; early_stopping: boolean };
  frequent_eos: number;
  eos_token_id: number;
  pad_token_id: number;
  repetition_penalty: number;
  score: { candidate_ids: number[][]; context_prompt: number };
}

const base: GenerationSettings = { maxNewTokens: 12, minNewTokens: 1, numBeams: 1, lengthPenalty: 1, repetitionPenalty: 1, doSample: false, temperature: 1, topK: 0, topP: 1, seed: 0, stop: [] };

/** A golden continuation row without its padding and eos (the runtime returns generated tokens only). */
function generatedPart(row: number[], eos: number, pad: number): number[] {
  const out: number[] = [];
  for (const id of row) {
    if (id === eos || id === pad) break;
    out.push(id);
  }
  return out;
}

function rows(golden: Golden, name: string): number[][] {
  const a = golden.get(name);
  const flat = golden.ints(name);
  const width = a.shape[a.shape.length - 1];
  return Array.from({ length: flat.length / width }, (_, r) => flat.slice(r * width, (r + 1) * width));
}

for (const name of TINY_PACKAGES) {
  const golden = new Golden(goldenDir(name, "llm"));
  const meta = golden.meta as unknown as Meta;
  const model = Emu2.open(packageDir(name));
  const features = (images: string[]): Features | null => {
    if (images.length === 0) return null;
    const parts = images.map((img) => golden.float32(`features.${img}`));
    const [, q, w] = parts[0].shape;
    const data = new Float32Array(parts.length * q * w);
    parts.forEach((p, i) => data.set(p.data, i * q * w));
    return { data, dims: [parts.length, q, w] };
  };
  const prompt = (i: number) => ({ ids: golden.ints(`p${i}.ids`), features: features(meta.prompts[i].images) });

  test(`${name}: greedy continuations equal the reference's`, async () => {
    const llm = await model.llm();
    for (let i = 0; i < meta.prompts.length; i++) {
      const p = prompt(i);
      const [out] = await llm.generateText([p.ids], p.features, { ...base, maxNewTokens: meta.greedy.max_new_tokens, minNewTokens: meta.greedy.min_new_tokens });
      assert.deepEqual(out.ids, generatedPart(golden.ints(`p${i}.greedy`), meta.eos_token_id, meta.pad_token_id), `prompt ${i}`);
    }
  });

  test(`${name}: beam search (5 beams, length penalty -1) returns the reference's sequences and scores`, async () => {
    const llm = await model.llm();
    const beam = { ...base, numBeams: meta.beam.num_beams, lengthPenalty: meta.beam.length_penalty, maxNewTokens: meta.beam.max_new_tokens, minNewTokens: meta.beam.min_new_tokens };
    for (let i = 0; i < meta.prompts.length; i++) {
      const p = prompt(i);
      const [out] = await llm.generateText([p.ids], p.features, beam);
      assert.deepEqual(out.ids, generatedPart(golden.ints(`p${i}.beam`), meta.eos_token_id, meta.pad_token_id), `prompt ${i}`);
      // The score is the log-prob sum times the length (length penalty -1): float32 noise grows with it.
      const reference = golden.float32(`p${i}.beam_score`).data[0];
      assert.ok(Math.abs((out.score ?? NaN) - reference) <= 1e-5 * Math.abs(reference), `prompt ${i} score ${out.score} vs ${reference}`);
    }
  });

  test(`${name}: beam search with finished hypotheses (a frequent token as eos), early_stopping false/true/never`, async () => {
    const p = prompt(0);
    const manifest = model.manifest;
    const frequentEos = meta.frequent_eos;
    // The stage reads eos from the manifest; a stage whose manifest names the frequent token as eos runs the case.
    const { LlmStage } = await import("../../src/llm/stage.js");
    const sessions = await Promise.all((["embed_tokens", "project_up", "decoder", "lm_head", "project_down"] as const).map((r) => model.pkg.session(r)));
    const stage = new LlmStage(
      { embedTokens: sessions[0], projectUp: sessions[1], decoder: sessions[2], lmHead: sessions[3], projectDown: sessions[4] },
      { ...manifest, tokenizer: { ...manifest.tokenizer, eos_token_id: frequentEos } },
    );
    for (const [suffix, earlyStopping] of [["", false], ["_early_stopping_true", true], ["_early_stopping_never", "never"]] as const) {
      const [out] = await stage.generateText([p.ids], p.features, { ...base, numBeams: meta.beam.num_beams, lengthPenalty: meta.beam.length_penalty, maxNewTokens: meta.beam.max_new_tokens, minNewTokens: meta.beam.min_new_tokens, earlyStopping });
      assert.deepEqual(out.ids, generatedPart(golden.ints(`p0.beam_frequent_eos${suffix}`), frequentEos, meta.pad_token_id), `early_stopping ${earlyStopping}`);
      const reference = golden.float32(`p0.beam_frequent_eos${suffix}_score`).data[0];
      assert.ok(Math.abs((out.score ?? NaN) - reference) <= 1e-5 * Math.abs(reference));
    }
  });

  test(`${name}: repetition penalty 1.3 (greedy) equals the reference's`, async () => {
    const llm = await model.llm();
    const p = prompt(2);
    const [out] = await llm.generateText([p.ids], p.features, { ...base, repetitionPenalty: meta.repetition_penalty, maxNewTokens: meta.greedy.max_new_tokens });
    assert.deepEqual(out.ids, generatedPart(golden.ints("p2.greedy_repetition_penalty"), meta.eos_token_id, meta.pad_token_id));
  });

  test(`${name}: a left-padded batch of 4 prompts of different lengths equals them run one by one`, async () => {
    const llm = await model.llm();
    // The reference's three prompts plus a fourth, shorter one (the first prompt without its last 4 tokens).
    const first = prompt(0);
    const all = [...meta.prompts.map((_, i) => prompt(i)), { ids: first.ids.slice(0, -4), features: null }];
    const stacked = features(meta.prompts.flatMap((p) => p.images));
    const batch = await llm.generateText(all.map((p) => p.ids), stacked, { ...base, maxNewTokens: meta.greedy.max_new_tokens });
    const expected = rows(golden, "batch.greedy");
    for (let i = 0; i < all.length; i++) {
      const [alone] = await llm.generateText([all[i].ids], all[i].features, { ...base, maxNewTokens: meta.greedy.max_new_tokens });
      assert.deepEqual(batch[i].ids, alone.ids, `row ${i}`);
      if (i < expected.length) assert.deepEqual(batch[i].ids, generatedPart(expected[i], meta.eos_token_id, meta.pad_token_id), `row ${i} vs reference`);
    }
  });

  test(`${name}: last-position logits and image regression within 1e-4 of the reference`, async () => {
    const llm = await model.llm();
    const p = prompt(1);
    const [out] = await llm.generateText([p.ids], p.features, { ...base, maxNewTokens: 1, minNewTokens: 0 });
    const logits = golden.float32("p1.logits_last").data;
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    assert.equal(out.ids[0], best);
    // 64 recursive steps accumulate float32 noise: the Emu2-Gen package (the one that draws images) stays within 1e-4
    // absolute; the chat package's larger activations are held to 1e-4 of their magnitude.
    const bound = (reference: Float32Array) => (model.pkg.canGenerateImages ? 1e-4 : 1e-4 * Math.max(...reference.map(Math.abs)));
    const cond = await llm.regress([golden.ints("p0.ids")], null, 64);
    const condRef = golden.float32("regress.cond").data;
    assert.ok(maxAbsDiff(cond.data, condRef) <= bound(condRef), `cond ${maxAbsDiff(cond.data, condRef)}`);
    const uncond = await llm.regress([[1]], null, 64);
    const uncondRef = golden.float32("regress.uncond").data;
    assert.ok(maxAbsDiff(uncond.data, uncondRef) <= bound(uncondRef), `uncond ${maxAbsDiff(uncond.data, uncondRef)}`);
  });

  test(`${name}: continuation scores reuse the context cache and equal the reference's`, async () => {
    const llm = await model.llm();
    const p = prompt(meta.score.context_prompt);
    const scores = await llm.scoreContinuations(p.ids, p.features, meta.score.candidate_ids);
    assert.ok(maxAbsDiff(scores.map((s) => s.sum), golden.float32("score.sum").data) <= 1e-4);
    assert.ok(maxAbsDiff(scores.map((s) => s.mean), golden.float32("score.mean").data) <= 1e-4);
  });
}

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
  await model.release();
});

test("processors and warpers: repetition penalty, min length, top-k, top-p", () => {
  const scores = Float32Array.from([2, -1, 0.5, 3]);
  processScores(scores, [0, 1, 1], { repetitionPenalty: 2, minNewTokens: 5 }, 3);
  assert.deepEqual(Array.from(scores), [1, -2, 0.5, -Infinity]);
  const logits = Float32Array.from([0, Math.log(2), Math.log(3), Math.log(4)]);
  // top-k 2 keeps tokens 2 and 3 with probabilities 3/7 and 4/7, drawn in index order.
  assert.equal(sampleToken(logits, { temperature: 1, topK: 2, topP: 1 }, 0.42), 2);
  assert.equal(sampleToken(logits, { temperature: 1, topK: 2, topP: 1 }, 0.43), 3);
  // top-p 0.5: ascending 0.1, 0.2, 0.3, 0.4 -> cumulative 0.1, 0.3, 0.6: tokens 0 and 1 (<= 0.5) are dropped.
  assert.equal(sampleToken(logits, { temperature: 1, topK: 0, topP: 0.5 }, 0), 2);
  const ls = logSoftmax(Float32Array.from([1, 2, 3]));
  assert.ok(Math.abs(Math.exp(ls[0]) + Math.exp(ls[1]) + Math.exp(ls[2]) - 1) < 1e-6);
});
