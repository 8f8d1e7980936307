// Plain greedy decoding (one beam, no sampling, no penalties, no stop strings): the settings most tests start from,
// adding only the length they need.
import type { GenerationSettings } from "../../src/llm/settings.js";

export const GREEDY: Omit<GenerationSettings, "maxNewTokens"> = {
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
