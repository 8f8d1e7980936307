import assert from "node:assert/strict";
import { test } from "node:test";
import { SettingsError, validateGenerationSettings, type GenerationSettings } from "../../src/llm/settings.js";
import { GREEDY } from "../helpers/settings.js";

const valid: GenerationSettings = { ...GREEDY, maxNewTokens: 10, minNewTokens: 1, numBeams: 5, lengthPenalty: -1 };

test("valid settings pass; each bad one is a SettingsError (exit code 2) naming the setting and what was expected", () => {
  validateGenerationSettings(valid);
  validateGenerationSettings({
    ...valid,
    numBeams: 1,
    doSample: true,
    temperature: 0.7,
    topK: 50,
    topP: 0.9,
    earlyStopping: "never",
  });
  const cases: [Partial<GenerationSettings>, RegExp][] = [
    [{ maxNewTokens: 0 }, /^generation setting maxNewTokens: expected a whole number >= 1, got 0$/],
    [{ minNewTokens: 1.5 }, /minNewTokens: expected a whole number >= 0, got 1.5/],
    [{ numBeams: 0 }, /numBeams/],
    [{ temperature: 0, numBeams: 1, doSample: true }, /temperature: expected a number > 0, got 0/],
    [{ topK: -1 }, /topK/],
    [{ topP: 0 }, /topP: expected a number in \(0, 1\], got 0/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty/],
    [{ seed: -1 }, /seed/],
    [{ doSample: true }, /doSample: expected one beam when sampling/],
    [
      { numReturnSequences: 6 },
      /numReturnSequences: expected a whole number from 1 to the number of beams \(5\), got 6/,
    ],
    [{ lengthPenalty: NaN }, /lengthPenalty/],
  ];
  for (const [change, message] of cases) {
    assert.throws(
      () => validateGenerationSettings({ ...valid, ...change }),
      (err: unknown) => err instanceof SettingsError && err.exitCode === 2 && message.test(err.message),
      JSON.stringify(change),
    );
  }
});
