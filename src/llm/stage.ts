// The LLM stage of a loaded package: one object that owns the five LLM graphs and a KV cache strategy, and offers
// prompt logits, text generation, image regression and continuation scoring. The algorithms live beside it:
// embed.ts (image splicing), kv-cache.ts, processors.ts and beam.ts (HF 4.31 semantics), generate.ts, regress.ts.
import type { Manifest } from "../model/manifest.js";
import { FRAME_TOKEN, IMAGE_TOKEN, IMG_START } from "../prompt/tokens.js";
import { Emu2Error } from "../util/errors.js";
import { embedPrompt } from "./embed.js";
import {
  generateText,
  promptLogits,
  scoreContinuations,
  type ContinuationScore,
  type GeneratedSequence,
  type GenerationCallbacks,
  type GenerationSettings,
  type LlmContext,
} from "./generate.js";
import type { Tensor } from "../model/tensor.js";
import { LlmGraphs, type LlmSessions } from "./graphs.js";
import { HostKvCache, type KvCache, type KvCacheFactory } from "./kv-cache.js";
import { regressImage } from "./regress.js";
import { validateGenerationSettings } from "./settings.js";

export type {
  ContinuationScore,
  GeneratedSequence,
  GenerationCallbacks,
  GenerationSettings,
  StopReason,
} from "./generate.js";
export type { LlmSessions } from "./graphs.js";
export type { KvCache, KvCacheFactory } from "./kv-cache.js";
export { HostKvCache } from "./kv-cache.js";
export { positionIds } from "./graphs.js";
export { logSoftmax } from "./processors.js";
export { SettingsError, validateGenerationSettings } from "./settings.js";

export class LlmStage {
  private readonly ctx: LlmContext;
  private readonly imgTokenId: number;

  /** `newCache` picks the KV cache strategy; host memory unless told otherwise. */
  constructor(sessions: LlmSessions, manifest: Manifest, newCache?: KvCacheFactory) {
    const tokens = manifest.tokenizer.special_tokens;
    const required = (name: string): number => {
      const id = tokens[name];
      if (id === undefined) throw new Emu2Error(`the package's tokenizer has no ${name} token`);
      return id;
    };
    const { num_layers: layers, num_heads: heads, head_dim: headDim, hidden_size: hidden } = manifest.llm;
    this.ctx = {
      graphs: new LlmGraphs(sessions, manifest.dtype, hidden),
      newCache: newCache ?? HostKvCache.factory({ layers, heads, headDim, dtype: manifest.dtype }),
      imageTokenId: required(IMAGE_TOKEN),
      frameTokenId: tokens[FRAME_TOKEN],
      eosTokenId: manifest.tokenizer.eos_token_id,
      padTokenId: manifest.tokenizer.pad_token_id,
    };
    this.imgTokenId = required(IMG_START);
  }

  /** The LLM graphs as typed calls (one decoder run on a cache: graphs.decoder). */
  get graphs(): LlmGraphs {
    return this.ctx.graphs;
  }

  /**
   * An empty cache of this stage's KV cache strategy for `batch` rows (its locations() say where it lives), holding
   * at most `maxLength` tokens when that is given.
   */
  newCache(batch: number, maxLength?: number): Promise<KvCache> {
    return this.ctx.newCache(batch, maxLength);
  }

  /** Embeddings [B,T,H] of rectangular ids with project_up(features) on the <image> rows (see embed.ts). */
  embed(ids: number[][], features: Tensor | null): Promise<Float32Array> {
    return embedPrompt(this.ctx.graphs, ids, features, this.ctx.imageTokenId, this.ctx.frameTokenId);
  }

  /** Continuations of a left-padded batch of prompts; see generate.ts generateText. */
  async generateText(
    prompts: number[][],
    features: Tensor | null,
    settings: GenerationSettings,
    callbacks: GenerationCallbacks = {},
  ): Promise<GeneratedSequence[]> {
    validateGenerationSettings(settings);
    return generateText(this.ctx, prompts, features, settings, callbacks);
  }

  /** Logits [T,V] at every position of one prompt. */
  promptLogits(ids: number[], features: Tensor | null): Promise<Float32Array> {
    return promptLogits(this.ctx, ids, features);
  }

  /** Image regression: `steps` visual embeddings per prompt -> [B,steps,W]. */
  regress(prompts: number[][], features: Tensor | null, steps: number): Promise<Tensor> {
    return regressImage(this.ctx, prompts, features, this.imgTokenId, steps);
  }

  /** Sum and mean log-prob of each candidate's tokens after one context, reusing the context's KV cache. */
  scoreContinuations(context: number[], features: Tensor | null, candidates: number[][]): Promise<ContinuationScore[]> {
    return scoreContinuations(this.ctx, context, features, candidates);
  }
}
