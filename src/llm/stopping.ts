// Stopping criteria (HF's StoppingCriteriaList): built once from the settings; after each token a row accepts, the
// criteria say whether it is finished and why. Eos is decided where the token is chosen (it is not part of the
// answer); stop strings belong to src/llm/stop-strings.ts; abort is the caller's signal.
import type { GenerationSettings } from "./settings.js";
import { StopStrings } from "./stop-strings.js";

export type StopReason = "eos" | "length" | "stop" | "aborted";

/** A row's generated ids (eos excluded) -> why it stops now, or undefined to go on. */
export type StoppingCriterion = (generated: readonly number[]) => StopReason | undefined;

export interface StoppingContext {
  /** Decodes generated ids; stop strings need it. */
  decode?: (ids: number[]) => string;
  signal?: AbortSignal;
}

/** Stop strings (when there are some and a decoder), max new tokens, abort: in that order of precedence. */
export function stoppingCriteria(
  settings: Pick<GenerationSettings, "maxNewTokens" | "stop">,
  context: StoppingContext = {},
): StoppingCriterion[] {
  const list: StoppingCriterion[] = [];
  const stops = new StopStrings(settings.stop);
  const { decode, signal } = context;
  if (!stops.empty && decode) list.push((generated) => (stops.find(decode([...generated])) >= 0 ? "stop" : undefined));
  list.push((generated) => (generated.length >= settings.maxNewTokens ? "length" : undefined));
  if (signal) list.push(() => (signal.aborted ? "aborted" : undefined));
  return list;
}

/** The first criterion that stops the row, if any. */
export function shouldStop(
  criteria: readonly StoppingCriterion[],
  generated: readonly number[],
): StopReason | undefined {
  for (const criterion of criteria) {
    const reason = criterion(generated);
    if (reason) return reason;
  }
  return undefined;
}
