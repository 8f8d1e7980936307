// Generation settings and their one validation: every entry point of the LLM stage (src/llm/stage.ts) checks the
// settings here, once, before any graph runs, and a bad value is a SettingsError naming the setting. The algorithms
// behind it (processors, stopping criteria, beam search) take the settings as valid.
import { UsageError } from "../util/errors.js";

/** Beam search stopping rule (HF early_stopping); Emu2 uses false. */
export type EarlyStopping = boolean | "never";

export interface GenerationSettings {
  maxNewTokens: number;
  minNewTokens: number;
  numBeams: number;
  lengthPenalty: number;
  repetitionPenalty: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  /** Seed of the SplitMix64 stream sampling draws its uniforms from. */
  seed: number;
  /** Greedy and sampling stop once the decoded continuation contains one of these. */
  stop: string[];
  earlyStopping?: EarlyStopping;
  /** Beam search: how many of each prompt's best hypotheses to return (HF num_return_sequences); default 1. */
  numReturnSequences?: number;
}

/**
 * Plain greedy decoding: one beam, no sampling, penalties, stop strings or minimum length. Tests, benches and tools
 * start from it and set the length (and what else they vary) on top.
 */
export const PLAIN_GREEDY: Omit<GenerationSettings, "maxNewTokens"> = {
  minNewTokens: 0,
  numBeams: 1,
  lengthPenalty: 1,
  repetitionPenalty: 1,
  doSample: false,
  temperature: 1,
  topK: 0,
  topP: 1,
  seed: 0,
  stop: [],
};

/** A generation setting out of range: a usage error (exit code 2) that names the setting. */
export class SettingsError extends UsageError {
  constructor(
    readonly setting: keyof GenerationSettings,
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`generation setting ${setting}: expected ${expected}, got ${JSON.stringify(value)}`);
    this.name = "SettingsError";
  }
}

const whole = (x: number) => Number.isSafeInteger(x);

/** Throws a SettingsError for the first setting that is out of range. */
export function validateGenerationSettings(s: GenerationSettings): void {
  const check = (setting: keyof GenerationSettings, ok: boolean, expected: string) => {
    if (!ok) throw new SettingsError(setting, expected, s[setting]);
  };
  check("maxNewTokens", whole(s.maxNewTokens) && s.maxNewTokens >= 1, "a whole number >= 1");
  check("minNewTokens", whole(s.minNewTokens) && s.minNewTokens >= 0, "a whole number >= 0");
  check("numBeams", whole(s.numBeams) && s.numBeams >= 1, "a whole number >= 1");
  check("lengthPenalty", Number.isFinite(s.lengthPenalty), "a finite number");
  check("repetitionPenalty", Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0, "a number > 0");
  check("temperature", Number.isFinite(s.temperature) && s.temperature > 0, "a number > 0");
  check("topK", whole(s.topK) && s.topK >= 0, "a whole number >= 0 (0 keeps every token)");
  check("topP", Number.isFinite(s.topP) && s.topP > 0 && s.topP <= 1, "a number in (0, 1]");
  check("seed", whole(s.seed) && s.seed >= 0, "a whole number from 0 to 2^53 - 1");
  check("stop", Array.isArray(s.stop) && s.stop.every((x) => typeof x === "string"), "a list of strings");
  check(
    "earlyStopping",
    s.earlyStopping === undefined || typeof s.earlyStopping === "boolean" || s.earlyStopping === "never",
    'true, false or "never"',
  );
  check("minNewTokens", s.minNewTokens <= s.maxNewTokens, `at most maxNewTokens (${s.maxNewTokens})`);
  check("doSample", !(s.doSample && s.numBeams > 1), "one beam when sampling (beam sampling is not supported)");
  const n = s.numReturnSequences ?? 1;
  check(
    "numReturnSequences",
    whole(n) && n >= 1 && n <= s.numBeams,
    `a whole number from 1 to the number of beams (${s.numBeams})`,
  );
}
