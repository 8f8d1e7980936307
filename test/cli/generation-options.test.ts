import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveGenerationSettings } from "../../src/cli/generation-options.js";

const defaults = {
  max_new_tokens: 10,
  min_new_tokens: 1,
  num_beams: 5,
  length_penalty: -1,
  repetition_penalty: 1,
  do_sample: false,
  temperature: 1,
  top_k: 0,
  top_p: 1,
};

test("package defaults apply where no flag is given", () => {
  const s = resolveGenerationSettings({}, defaults);
  assert.deepEqual(s, {
    maxNewTokens: 10,
    minNewTokens: 1,
    numBeams: 5,
    lengthPenalty: -1,
    repetitionPenalty: 1,
    doSample: false,
    temperature: 1,
    topK: 0,
    topP: 1,
    seed: 0,
    stop: [],
  });
});

test("sampling flags imply sampling with one beam; --greedy means one beam and no sampling", () => {
  const s = resolveGenerationSettings({ temp: "0.7", topK: "3", seed: "42" }, defaults);
  assert.equal(s.doSample, true);
  assert.equal(s.numBeams, 1);
  assert.equal(s.temperature, 0.7);
  assert.equal(s.seed, 42);
  assert.equal(resolveGenerationSettings({ greedy: true }, defaults).numBeams, 1);
});

test("bad values name the flag and what was expected", () => {
  assert.throws(
    () => resolveGenerationSettings({ maxNewTokens: "ten" }, defaults),
    /^UsageError: --max-new-tokens: expected a whole number, got "ten"$/,
  );
  // Ranges are the LLM stage's one validation (src/llm/settings.ts); the CLI names the flag that set the value.
  assert.throws(
    () => resolveGenerationSettings({ maxNewTokens: "0" }, defaults),
    /^UsageError: --max-new-tokens: expected a whole number >= 1, got "0"$/,
  );
  assert.throws(
    () => resolveGenerationSettings({ temp: "0" }, defaults),
    /^UsageError: --temp: expected a number > 0, got "0"$/,
  );
  assert.throws(() => resolveGenerationSettings({ topP: "1.5" }, defaults), /--top-p: expected a number in \(0, 1\]/);
  assert.throws(
    () => resolveGenerationSettings({ greedy: true, temp: "0.5" }, defaults),
    /--greedy cannot be combined/,
  );
  assert.throws(
    () => resolveGenerationSettings({ sample: true, beams: "3" }, defaults),
    /beam sampling\) is not supported/,
  );
  assert.throws(() => resolveGenerationSettings({ minNewTokens: "20" }, defaults), /cannot exceed --max-new-tokens/);
});

test("--greedy with --beams N > 1 is refused; --seed takes 0 to 2^53-1 and says so", () => {
  assert.throws(
    () => resolveGenerationSettings({ greedy: true, beams: "4" }, defaults),
    /^UsageError: --greedy means one beam; it cannot be combined with --beams 4$/,
  );
  assert.equal(resolveGenerationSettings({ greedy: true, beams: "1" }, defaults).numBeams, 1);
  assert.equal(resolveGenerationSettings({ seed: "9007199254740991" }, defaults).seed, Number.MAX_SAFE_INTEGER);
  for (const seed of ["9007199254740992", "-1", "1e3", "1.5"]) {
    assert.throws(
      () => resolveGenerationSettings({ seed }, defaults),
      /--seed: expected a whole number from 0 to 9007199254740991 \(2\^53-1\)/,
    );
  }
});
