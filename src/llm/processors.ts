// Logits processors and warpers with transformers 4.31 semantics, on one row of float32 scores, composed as HF's
// LogitsProcessorList: built once from the settings (logitsProcessors, logitsWarpers), then run on every row. HF
// applies RepetitionPenalty then MinNewTokens for every decoding strategy, and for sampling then warps with
// Temperature, TopK and TopP (in that order) before drawing from the softmax.

import { logSoftmaxInPlace } from "./scores.js";

const f = Math.fround;

/** log_softmax of one row in float32, as torch computes it: (x - max) - log(sum(exp(x - max))), as a new row. */
export function logSoftmax(row: Float32Array): Float32Array {
  const out = Float32Array.from(row);
  logSoftmaxInPlace(out);
  return out;
}

/**
 * log_softmax of each of `rows` rows of float32 scores [rows,V], in place (lm_head's logits as they come, which
 * nothing else reads): the rows, as views of `scores`. Beam search runs it on every step's 5 x 32k scores a prompt;
 * in place, a step allocates nothing for it.
 */
export function logSoftmaxRows(scores: Float32Array, rows: number): Float32Array[] {
  const v = scores.length / rows;
  return Array.from({ length: rows }, (_, i) => {
    const row = scores.subarray(i * v, (i + 1) * v);
    logSoftmaxInPlace(row);
    return row;
  });
}

/** RepetitionPenaltyLogitsProcessor: a token already generated has its score divided (> 0) or multiplied (< 0) by `penalty`. */
export function applyRepetitionPenalty(scores: Float32Array, generated: readonly number[], penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(generated)) {
    const s = scores[id];
    scores[id] = s < 0 ? f(s * penalty) : f(s / penalty);
  }
}

/** MinNewTokensLengthLogitsProcessor: eos is impossible while fewer than `minNewTokens` tokens are generated. */
export function applyMinNewTokens(
  scores: Float32Array,
  generatedCount: number,
  minNewTokens: number,
  eosTokenId: number,
): void {
  if (generatedCount < minNewTokens) scores[eosTokenId] = -Infinity;
}

export interface ProcessorSettings {
  repetitionPenalty: number;
  minNewTokens: number;
}

/** One step of a LogitsProcessorList: a row's scores and that row's generated ids -> its processed scores. */
export type LogitsProcessor = (scores: Float32Array, generated: readonly number[]) => Float32Array;

/** The processors every strategy runs, in HF's order, each only where it changes something (as HF builds them). */
export function logitsProcessors(settings: ProcessorSettings, eosTokenId: number): LogitsProcessor[] {
  const list: LogitsProcessor[] = [];
  const { repetitionPenalty, minNewTokens } = settings;
  if (repetitionPenalty !== 1)
    list.push((scores, generated) => (applyRepetitionPenalty(scores, generated, repetitionPenalty), scores));
  if (minNewTokens > 0)
    list.push((scores, generated) => (applyMinNewTokens(scores, generated.length, minNewTokens, eosTokenId), scores));
  return list;
}

/** Runs a processor list on one row, in order. */
export function applyProcessors(
  list: readonly LogitsProcessor[],
  scores: Float32Array,
  generated: readonly number[],
): Float32Array {
  let out = scores;
  for (const process of list) out = process(out, generated);
  return out;
}

/** TemperatureLogitsWarper (temperature > 0: src/llm/settings.ts checks it). */
export function warpTemperature(scores: Float32Array, temperature: number): Float32Array {
  // torch divides the float32 row by the temperature cast to float32.
  const t = f(temperature);
  return scores.map((s) => s / t);
}

/** TopKLogitsWarper: scores below the k-th largest become -inf (ties with it stay). k = 0 keeps everything. */
export function warpTopK(scores: Float32Array, topK: number, minTokensToKeep = 1): Float32Array {
  if (topK === 0) return scores.slice();
  const k = Math.min(Math.max(topK, minTokensToKeep), scores.length);
  const kth = scores.slice().sort()[scores.length - k];
  return scores.map((s) => (s < kth ? -Infinity : s));
}

/** softmax of one row (max subtracted, float32 result); -inf entries get probability 0. */
export function softmax(scores: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of scores) if (v > max) max = v;
  const exps = new Float64Array(scores.length);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += exps[i] = Math.exp(scores[i] - max);
  return Float32Array.from(exps, (e) => e / sum);
}

/**
 * TopPLogitsWarper: sort ascending, softmax, cumulative sum (in float32, as torch); tokens whose cumulative
 * probability is <= 1 - top_p become -inf, except the `minTokensToKeep` most likely. top_p = 1 keeps everything.
 */
export function warpTopP(scores: Float32Array, topP: number, minTokensToKeep = 1): Float32Array {
  if (topP >= 1) return scores.slice();
  const order = Array.from(scores, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  const probs = softmax(Float32Array.from(order, (i) => scores[i]));
  const out = scores.slice();
  const bound = f(1 - topP);
  let cumulative = 0;
  for (let r = 0; r < order.length - minTokensToKeep; r++) {
    cumulative = f(cumulative + probs[r]);
    if (cumulative <= bound) out[order[r]] = -Infinity;
  }
  return out;
}

export interface SamplingSettings {
  temperature: number;
  topK: number;
  topP: number;
}

/** The sampling warpers in HF's order (temperature, top-k, top-p), each only where it changes something. */
export function logitsWarpers(settings: SamplingSettings): LogitsProcessor[] {
  const list: LogitsProcessor[] = [];
  const { temperature, topK, topP } = settings;
  if (temperature !== 1) list.push((scores) => warpTemperature(scores, temperature));
  if (topK !== 0) list.push((scores) => warpTopK(scores, topK));
  if (topP < 1) list.push((scores) => warpTopP(scores, topP));
  return list;
}

/** Inverse-CDF draw from `probs` in index order with a uniform in [0,1); never returns a zero-probability token. */
export function drawFromProbs(probs: Float32Array, uniform: number): number {
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    last = i;
    cumulative += probs[i];
    if (uniform < cumulative) return i;
  }
  if (last < 0) throw new Error("no token has a non-zero probability");
  return last;
}
