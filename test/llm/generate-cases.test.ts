// Generation cases the plain goldens cannot tell from plausible bugs, against the PyTorch reference
// (python/emu2ref/golden_llm.py BEAM_CASES, BEAM_MODES, SAMPLING_CASES, WARP_CASES): beam search with length
// penalty 2 and 0, repetition penalty and min_new_tokens inside beam search, several returned hypotheses, the three
// early_stopping modes; seeded sampling (the reference draws the same SplitMix64 uniforms) with temperature, top-k
// and top-p; and the warpers on rows full of ties.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import type { GenerationSettings } from "../../src/llm/stage.js";
import { applyProcessors, logitsWarpers } from "../../src/llm/processors.js";
import { packageDir, TINY_PACKAGES } from "../helpers/fixtures.js";
import { LlmGoldens, stageWithEos, type BeamCase } from "./goldens.js";
import { GREEDY } from "../helpers/settings.js";

const base: GenerationSettings = {
  maxNewTokens: 12,
  ...GREEDY,
};

function beamSettings(c: BeamCase, earlyStopping: boolean | "never"): GenerationSettings {
  return {
    ...base,
    numBeams: c.num_beams,
    maxNewTokens: c.max_new_tokens,
    lengthPenalty: c.length_penalty,
    minNewTokens: c.min_new_tokens,
    repetitionPenalty: c.repetition_penalty,
    numReturnSequences: c.num_return_sequences,
    earlyStopping,
  };
}

/** Scores agree to float32 noise (1e-4 absolute, or 1e-5 relative for large penalised sums). */
const closeScore = (actual: number | undefined, reference: number) =>
  Math.abs((actual ?? NaN) - reference) <= Math.max(1e-4, 1e-5 * Math.abs(reference));

for (const name of TINY_PACKAGES) {
  const ref = new LlmGoldens(name);
  const meta = ref.meta;
  const model = Emu2.open(packageDir(name));

  /** Runs a beam case and compares every returned hypothesis (ids, eos or not, score) with the reference's. */
  async function checkBeams(golden: string, c: BeamCase, eos: number, earlyStopping: boolean | "never"): Promise<void> {
    const stage = await stageWithEos(model, eos);
    const p = ref.prompt(c.prompt);
    const out = await stage.generateText([p.ids], p.features, beamSettings(c, earlyStopping));
    const rows = ref.rows(`${golden}.sequences`);
    const scores = ref.golden.float32(`${golden}.scores`).data;
    assert.equal(out.length, rows.length, golden);
    rows.forEach((row, j) => {
      assert.deepEqual(out[j].ids, ref.generated(row, eos), `${golden} hypothesis ${j}`);
      assert.equal(out[j].stopReason, row.includes(eos) ? "eos" : "length", `${golden} hypothesis ${j} stop reason`);
      assert.ok(
        closeScore(out[j].score, scores[j]),
        `${golden} hypothesis ${j}: score ${out[j].score} vs ${scores[j]}`,
      );
    });
  }

  for (const [caseName, c] of Object.entries(meta.beam_cases)) {
    test(`${name}: beam search ${caseName} (length penalty ${c.length_penalty}, repetition penalty ${c.repetition_penalty}, min ${c.min_new_tokens} new tokens, ${c.num_return_sequences} returned) equals the reference`, async () => {
      await checkBeams(caseName, c, meta.frequent_eos, c.early_stopping);
    });
  }

  test(`${name}: early_stopping false, true and "never" each give the reference's hypotheses (${meta.beam_modes.distinct} distinct results)`, async () => {
    for (const [mode, earlyStopping] of [
      ["false", false],
      ["true", true],
      ["never", "never"],
    ] as const) {
      await checkBeams(`beam_modes.${mode}`, meta.beam_modes, meta.beam_modes.eos, earlyStopping);
    }
  });

  test(`${name}: seeded sampling (temperature, top-k, top-p, all with penalties) draws the reference's ids`, async () => {
    const llm = await model.llm();
    for (const [caseName, c] of Object.entries(meta.sampling)) {
      const settings: GenerationSettings = {
        ...base,
        doSample: true,
        maxNewTokens: meta.sampling_new_tokens,
        temperature: c.temperature,
        topK: c.top_k,
        topP: c.top_p,
        repetitionPenalty: c.repetition_penalty ?? 1,
        minNewTokens: c.min_new_tokens ?? 0,
        seed: meta.sampling_seeds[caseName],
      };
      const p = ref.prompt(0);
      const [out] = await llm.generateText([p.ids], p.features, settings);
      assert.deepEqual(out.ids, ref.golden.ints(`${caseName}.ids`), caseName);
      if (caseName === "sample_all") {
        const prompts = meta.prompts.map((_, i) => ref.prompt(i));
        const batch = await llm.generateText(
          prompts.map((q) => q.ids),
          ref.features(meta.prompts.flatMap((q) => q.images)),
          { ...settings, seed: meta.sampling_seeds.sample_batch },
        );
        ref.rows("sample_batch.ids").forEach((row, i) => assert.deepEqual(batch[i].ids, row, `batch row ${i}`));
      }
    }
  });
}

test("temperature, top-k and top-p on rows full of ties keep and drop exactly the tokens HF's warpers do", () => {
  const ref = new LlmGoldens(TINY_PACKAGES[0]);
  const input = ref.golden.float32("warp.input");
  const [rows, v] = input.shape;
  for (const [caseName, c] of Object.entries(ref.meta.warp)) {
    const expected = ref.golden.float32(`warp.${caseName}`).data;
    for (let r = 0; r < rows; r++) {
      const got = applyProcessors(
        logitsWarpers({ temperature: c.temperature, topK: c.top_k, topP: c.top_p }),
        input.data.slice(r * v, (r + 1) * v),
        [],
      );
      assert.deepEqual(Array.from(got), Array.from(expected.subarray(r * v, (r + 1) * v)), `${caseName} row ${r}`);
    }
  }
});
