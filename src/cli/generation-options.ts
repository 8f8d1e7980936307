// Text generation flags in llama.cpp's style; anything not given comes from the package's generation defaults.
import type { Command } from "commander";
import type { GenerationSettings } from "../llm/stage.js";
import { SettingsError, validateGenerationSettings } from "../llm/settings.js";
import type { GenerationDefaults } from "../model/manifest.js";
import { UsageError } from "../util/errors.js";
import { wholeNumber, type WholeNumberRange } from "./flags.js";
import { collect } from "./io.js";

export type TextGenerationSettings = GenerationSettings;

export interface GenerationFlags {
  maxNewTokens?: string;
  minNewTokens?: string;
  beams?: string;
  lengthPenalty?: string;
  repeatPenalty?: string;
  temp?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  sample?: boolean;
  greedy?: boolean;
  stop?: string[];
}

export function addGenerationOptions(command: Command): Command {
  return command
    .option("-n, --max-new-tokens <n>", "most tokens to generate")
    .option("--min-new-tokens <n>", "fewest tokens to generate before end-of-sequence is allowed")
    .option("--beams <n>", "beam search width (1 = no beam search)")
    .option("--length-penalty <x>", "beam score = log-prob / length^x")
    .option("--repeat-penalty <x>", "penalty for tokens already present (1 = none)")
    .option("--temp <x>", "sampling temperature (implies --sample)")
    .option("--top-k <n>", "sample among the k most likely tokens (0 = all; implies --sample)")
    .option("--top-p <x>", "sample within this probability mass (implies --sample)")
    .option("--sample", "sample instead of searching")
    .option("--greedy", "pick the most likely token at each step (one beam, no sampling)")
    .option("--stop <text>", "stop when this text is produced (repeatable)", collect)
    .option("--seed <n>", "random seed for sampling", "0");
}

/** A flag's text -> a number; whether the number is in range is the LLM stage's one validation (src/llm/settings.ts). */
function number(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const x = Number(value);
  if (value.trim() === "" || !Number.isFinite(x))
    throw new UsageError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
  return x;
}

/** Digits -> a number; as for `number`, the range is the stage's to check (the seed's range is the generator's). */
const optionalWhole = (
  flag: string,
  value: string | undefined,
  range: WholeNumberRange = { expected: "a whole number" },
) => (value === undefined ? undefined : wholeNumber(flag, value, range));

/** The flag that sets each setting, to name it when the stage's validation refuses a value. */
const FLAG_OF: Partial<Record<keyof TextGenerationSettings, string>> = {
  maxNewTokens: "--max-new-tokens",
  minNewTokens: "--min-new-tokens",
  numBeams: "--beams",
  lengthPenalty: "--length-penalty",
  repetitionPenalty: "--repeat-penalty",
  temperature: "--temp",
  topK: "--top-k",
  topP: "--top-p",
  seed: "--seed",
};

export function resolveGenerationSettings(
  flags: GenerationFlags,
  defaults: GenerationDefaults,
): TextGenerationSettings {
  if (flags.sample && flags.greedy) throw new UsageError("--sample and --greedy cannot be used together");
  const maxNewTokens = optionalWhole("--max-new-tokens", flags.maxNewTokens);
  const minNewTokens = optionalWhole("--min-new-tokens", flags.minNewTokens);
  const numBeams = optionalWhole("--beams", flags.beams);
  const lengthPenalty = number("--length-penalty", flags.lengthPenalty);
  const repetitionPenalty = number("--repeat-penalty", flags.repeatPenalty);
  const temperature = number("--temp", flags.temp);
  const topK = optionalWhole("--top-k", flags.topK);
  const topP = number("--top-p", flags.topP);
  const seed =
    optionalWhole("--seed", flags.seed, { expected: `a whole number from 0 to ${Number.MAX_SAFE_INTEGER} (2^53-1)` }) ??
    0;
  const samplingFlag = temperature !== undefined || topK !== undefined || topP !== undefined;
  if (flags.greedy && samplingFlag) throw new UsageError("--greedy cannot be combined with --temp, --top-k or --top-p");
  if (flags.greedy && numBeams !== undefined && numBeams > 1)
    throw new UsageError(`--greedy means one beam; it cannot be combined with --beams ${numBeams}`);
  const doSample = flags.greedy ? false : flags.sample || samplingFlag ? true : defaults.do_sample;
  const settings: TextGenerationSettings = {
    maxNewTokens: maxNewTokens ?? defaults.max_new_tokens,
    minNewTokens: minNewTokens ?? defaults.min_new_tokens,
    // Asking to sample means one sampled sequence unless --beams says otherwise.
    numBeams: flags.greedy ? 1 : (numBeams ?? (doSample ? 1 : defaults.num_beams)),
    lengthPenalty: lengthPenalty ?? defaults.length_penalty,
    repetitionPenalty: repetitionPenalty ?? defaults.repetition_penalty,
    doSample,
    temperature: temperature ?? defaults.temperature,
    topK: topK ?? defaults.top_k,
    topP: topP ?? defaults.top_p,
    seed,
    stop: flags.stop ?? [],
  };
  try {
    validateGenerationSettings(settings);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    if (err.setting === "doSample") {
      throw new UsageError(
        `--beams ${settings.numBeams} with sampling (beam sampling) is not supported: use --beams 1 to sample, or --greedy`,
      );
    }
    if (err.setting === "minNewTokens" && settings.minNewTokens > settings.maxNewTokens) {
      throw new UsageError(
        `--min-new-tokens (${settings.minNewTokens}) cannot exceed --max-new-tokens (${settings.maxNewTokens})`,
      );
    }
    const flag = FLAG_OF[err.setting];
    throw flag ? new UsageError(`${flag}: expected ${err.expected}, got ${JSON.stringify(String(err.value))}`) : err;
  }
  return settings;
}
