// Text generation with the semantics of transformers 4.31's generate() as Emu2 calls it (inputs_embeds only, so
// every length counts generated tokens, never the prompt): a left-padded prefill, then one token per decoder run on
// the KV cache. Greedy, seeded sampling and beam search; the Python reference of the same algorithms is
// python/emu2ref/generation.py, and the goldens it writes are the tests' oracle.
import { SplitMix64 } from "../util/splitmix64.js";
import { Emu2Error } from "../util/errors.js";
import { BeamSearchScorer } from "./beam.js";
import { embedPrompt } from "./embed.js";
import type { Tensor } from "../model/tensor.js";
import type { LlmGraphs } from "./graphs.js";
import type { KvCache, KvCacheFactory } from "./kv-cache.js";
import {
  applyProcessors,
  drawFromProbs,
  logitsProcessors,
  logitsWarpers,
  logSoftmaxRows,
  softmax,
} from "./processors.js";
import { argmax } from "./scores.js";
import type { GenerationSettings } from "./settings.js";
import { shouldStop, stoppingCriteria, type StopReason } from "./stopping.js";

export type { GenerationSettings } from "./settings.js";
export type { StopReason } from "./stopping.js";

export interface GenerationCallbacks {
  /** Stops generation early; what was produced so far is returned with stop reason "aborted". */
  signal?: AbortSignal;
  /** Decodes generated ids, for stop strings. */
  decode?: (ids: number[]) => string;
  /** Greedy and sampling: new ids of prompt `index` as they are accepted (beam search knows its result only at the end). */
  onTokens?: (index: number, ids: number[]) => void;
}

export interface GeneratedSequence {
  /** Generated ids, eos excluded. */
  ids: number[];
  stopReason: StopReason;
  /** Beam search: the length-penalised score of the returned hypothesis. */
  score?: number;
}

/** What generation needs from a loaded model. */
export interface LlmContext {
  graphs: LlmGraphs;
  newCache: KvCacheFactory;
  imageTokenId: number;
  /** [gIMG]: a video frame's rows (packages whose tokenizer has it). */
  frameTokenId?: number;
  eosTokenId: number;
  padTokenId: number;
}

/** Left padding to the longest prompt with pad_token_id, and the matching attention mask. */
export function leftPad(
  prompts: readonly (readonly number[])[],
  padTokenId: number,
): { ids: number[][]; mask: number[][] } {
  if (prompts.length === 0) throw new Emu2Error("no prompt to run");
  const t = Math.max(...prompts.map((p) => p.length));
  if (t === 0) throw new Emu2Error("every prompt is empty");
  return {
    ids: prompts.map((p) => [...Array<number>(t - p.length).fill(padTokenId), ...p]),
    mask: prompts.map((p) => [...Array<number>(t - p.length).fill(0), ...Array<number>(p.length).fill(1)]),
  };
}

export interface Prefilled {
  cache: KvCache;
  mask: number[][];
  /** Final hidden state of every prompt's last position [B,H]. */
  last: Float32Array;
}

/**
 * Runs the left-padded prompts (image features spliced) through the decoder into a new cache, after which each row
 * feeds the decoder at most `fedTokens` more (the cache keeps no free slots beyond those).
 */
export async function prefill(
  ctx: LlmContext,
  prompts: readonly (readonly number[])[],
  features: Tensor | null,
  fedTokens: number,
): Promise<Prefilled> {
  const { ids, mask } = leftPad(prompts, ctx.padTokenId);
  const embeds = await embedPrompt(ctx.graphs, ids, features, ctx.imageTokenId, ctx.frameTokenId);
  const cache = await ctx.newCache(prompts.length, ids[0].length + fedTokens);
  const hidden = await ctx.graphs.decoder(embeds, mask, cache);
  return { cache, mask, last: ctx.graphs.lastRows(hidden, prompts.length) };
}

/** Tokens a generation of up to `maxNewTokens` feeds back to the decoder: all but the last, which ends it. */
function fedTokens(maxNewTokens: number): number {
  return Math.max(0, maxNewTokens - 1);
}

/** One decoding step: each row's new token id through embed_tokens and the decoder; returns the new last rows. */
async function step(
  ctx: LlmContext,
  tokens: readonly number[],
  mask: number[][],
  cache: KvCache,
): Promise<Float32Array> {
  const hidden = await ctx.graphs.decoder(await ctx.graphs.embedStep(tokens), mask, cache);
  return ctx.graphs.lastRows(hidden, tokens.length);
}

/** lm_head of one hidden row per batch row -> a logits row each. */
async function logitRows(ctx: LlmContext, last: Float32Array, batch: number): Promise<Float32Array[]> {
  const all = await ctx.graphs.lmHead(last, batch);
  const v = all.length / batch;
  return Array.from({ length: batch }, (_, b) => all.subarray(b * v, (b + 1) * v));
}

/**
 * Generates a continuation of every prompt (one left-padded batch). `features` holds the image features of all
 * <image> rows across the batch, in order. With beam search and numReturnSequences n, prompt b's hypotheses are
 * entries b*n .. b*n+n-1, best first.
 */
export async function generateText(
  ctx: LlmContext,
  prompts: readonly (readonly number[])[],
  features: Tensor | null,
  settings: GenerationSettings,
  callbacks: GenerationCallbacks = {},
): Promise<GeneratedSequence[]> {
  if (callbacks.signal?.aborted)
    return prompts.flatMap(() =>
      Array.from({ length: settings.numReturnSequences ?? 1 }, () => ({ ids: [], stopReason: "aborted" as const })),
    );
  return settings.numBeams > 1
    ? beamSearch(ctx, prompts, features, settings, callbacks)
    : greedyOrSample(ctx, prompts, features, settings, callbacks);
}

async function greedyOrSample(
  ctx: LlmContext,
  prompts: readonly (readonly number[])[],
  features: Tensor | null,
  settings: GenerationSettings,
  callbacks: GenerationCallbacks,
): Promise<GeneratedSequence[]> {
  const batch = prompts.length;
  const processors = logitsProcessors(settings, ctx.eosTokenId);
  const warpers = settings.doSample ? logitsWarpers(settings) : [];
  const criteria = stoppingCriteria(settings, callbacks);
  const rng = new SplitMix64(settings.seed);
  const { cache, mask, last: promptLast } = await prefill(ctx, prompts, features, fedTokens(settings.maxNewTokens));
  let last = promptLast;
  let currentMask = mask;
  const generated: number[][] = prompts.map(() => []);
  const reasons: (StopReason | undefined)[] = prompts.map(() => undefined);
  try {
    for (;;) {
      const rows = await logitRows(ctx, last, batch);
      // A finished row keeps running (the batch is one tensor) on pad tokens, as HF does; its output is ignored.
      const next = rows.map((row, b) => {
        if (reasons[b]) return ctx.padTokenId;
        // The row is this step's own lm_head output: the processors may change it in place.
        const scores = applyProcessors(processors, row, generated[b]);
        return settings.doSample
          ? drawFromProbs(softmax(applyProcessors(warpers, scores, generated[b])), rng.uniform())
          : argmax(scores);
      });
      next.forEach((token, b) => {
        if (reasons[b]) return;
        if (token === ctx.eosTokenId) {
          reasons[b] = "eos";
          return;
        }
        generated[b].push(token);
        callbacks.onTokens?.(b, [token]);
        reasons[b] = shouldStop(criteria, generated[b]);
      });
      if (reasons.every(Boolean)) break;
      currentMask = currentMask.map((m) => [...m, 1]);
      last = await step(ctx, next, currentMask, cache);
    }
  } finally {
    cache.release();
  }
  return generated.map((ids, b) => ({ ids, stopReason: reasons[b] ?? "length" }));
}

/** Beam search as transformers 4.31's beam_search with a BeamSearchScorer (see beam.ts). */
async function beamSearch(
  ctx: LlmContext,
  prompts: readonly (readonly number[])[],
  features: Tensor | null,
  settings: GenerationSettings,
  callbacks: GenerationCallbacks,
): Promise<GeneratedSequence[]> {
  const k = settings.numBeams;
  const processors = logitsProcessors(settings, ctx.eosTokenId);
  // Stop strings do not end a beam search (a hypothesis ends with eos); length and abort end the whole search.
  const criteria = stoppingCriteria({ maxNewTokens: settings.maxNewTokens, stop: [] }, { signal: callbacks.signal });
  const scorer = new BeamSearchScorer(
    prompts.length,
    {
      numBeams: k,
      lengthPenalty: settings.lengthPenalty,
      earlyStopping: settings.earlyStopping ?? false,
      maxNewTokens: settings.maxNewTokens,
    },
    ctx.eosTokenId,
    ctx.padTokenId,
  );
  const {
    cache,
    mask: promptMask,
    last: promptLast,
  } = await prefill(ctx, prompts, features, fedTokens(settings.maxNewTokens));
  const hidden = ctx.graphs.hidden;
  let ended: StopReason | undefined;
  try {
    // Every beam starts from its prompt's prefill: rows b*k .. b*k+k-1 copy row b.
    const expand = Array.from({ length: scorer.rows }, (_, i) => Math.floor(i / k));
    await cache.select(expand);
    let mask = expand.map((b) => [...promptMask[b]]);
    let last: Float32Array = new Float32Array(scorer.rows * hidden);
    expand.forEach((b, i) => last.set(promptLast.subarray(b * hidden, (b + 1) * hidden), i * hidden));
    for (;;) {
      const rows = logSoftmaxRows(await ctx.graphs.lmHead(last, scorer.rows), scorer.rows);
      // Processors run on the log-probs (HF's beam_search: log_softmax first).
      const scores = rows.map((row, i) =>
        scorer.rowDone(i) ? null : applyProcessors(processors, row, scorer.beam(i).tokens),
      );
      const { tokens, sources } = scorer.process(scores);
      ended = shouldStop(criteria, scorer.beam(0).tokens);
      if (scorer.isDone || ended) break;
      await cache.select(sources);
      mask = sources.map((row) => [...mask[row], 1]);
      last = await step(ctx, tokens, mask, cache);
    }
  } finally {
    cache.release();
  }
  const n = settings.numReturnSequences ?? 1;
  return scorer.finalize(n).flatMap((best) =>
    best.map((h): GeneratedSequence => ({
      ids: h.tokens,
      stopReason: h.eos ? "eos" : ended === "aborted" ? "aborted" : "length",
      score: h.score,
    })),
  );
}

/** Logits [T,V] at every position of one prompt (image features spliced), from one decoder run. */
export async function promptLogits(
  ctx: LlmContext,
  ids: readonly number[],
  features: Tensor | null,
): Promise<Float32Array> {
  const embeds = await embedPrompt(ctx.graphs, [ids], features, ctx.imageTokenId, ctx.frameTokenId);
  const cache = await ctx.newCache(1, ids.length);
  try {
    return await ctx.graphs.lmHead(await ctx.graphs.decoder(embeds, [ids.map(() => 1)], cache), 1);
  } finally {
    cache.release();
  }
}

export interface ContinuationScore {
  /** Sum of the candidate tokens' log-probs. */
  sum: number;
  /** Their mean. */
  mean: number;
}

/**
 * Log-probability of each candidate continuation after one context (classification by ranking): the context runs
 * once; each candidate forks its cache and runs all but its last token in one decoder call.
 */
export async function scoreContinuations(
  ctx: LlmContext,
  context: readonly number[],
  features: Tensor | null,
  candidates: readonly (readonly number[])[],
): Promise<ContinuationScore[]> {
  const empty = candidates.findIndex((c) => c.length === 0);
  if (empty >= 0) throw new Emu2Error(`candidate ${empty + 1} has no tokens`);
  // The candidates run on forks of this cache: it holds the context alone.
  const { cache, mask, last } = await prefill(ctx, [context], features, 0);
  try {
    const [firstLogprobs] = logSoftmaxRows(await ctx.graphs.lmHead(last, 1), 1);
    const results: ContinuationScore[] = [];
    for (const candidate of candidates) {
      let sum = firstLogprobs[candidate[0]];
      if (candidate.length > 1) {
        const branch = cache.fork();
        try {
          const fed = candidate.slice(0, -1);
          const embeds = await ctx.graphs.embedTokens([fed]);
          const logits = await ctx.graphs.lmHead(
            await ctx.graphs.decoder(embeds, [[...mask[0], ...fed.map(() => 1)]], branch),
            1,
          );
          const logprobs = logSoftmaxRows(logits, fed.length);
          for (let i = 1; i < candidate.length; i++) sum += logprobs[i - 1][candidate[i]];
        } finally {
          branch.release();
        }
      }
      results.push({ sum, mean: sum / candidate.length });
    }
    return results;
  } finally {
    cache.release();
  }
}
