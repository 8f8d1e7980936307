// The five LLM graphs of a package (docs/package-format.md) as typed calls on host arrays: float32 in and out
// whatever the package's activation type; ids, masks and positions as int64.
import type { InferenceSession, Tensor } from "onnxruntime-node";
import { loadOrt } from "../model/session.js";
import { fromFloat16, toFloat16 } from "../util/float16.js";
import type { ActivationType, KvCache } from "./kv-cache.js";
import { positionIds } from "./processors.js";

export interface LlmSessions {
  embedTokens: InferenceSession;
  projectUp: InferenceSession;
  decoder: InferenceSession;
  lmHead: InferenceSession;
  projectDown: InferenceSession;
}

/** Image features [K,Q,W] in the order their <image> rows appear across the batch. */
export interface Features {
  data: Float32Array;
  dims: [number, number, number];
}

export class LlmGraphs {
  constructor(
    private readonly sessions: LlmSessions,
    readonly dtype: ActivationType,
    readonly hidden: number,
  ) {}

  private async activations(data: Float32Array, dims: number[]): Promise<Tensor> {
    const ort = await loadOrt();
    return this.dtype === "float16" ? new ort.Tensor("float16", toFloat16(data), dims) : new ort.Tensor("float32", data, dims);
  }

  private static async int64(data: readonly number[], dims: number[]): Promise<Tensor> {
    const ort = await loadOrt();
    return new ort.Tensor("int64", BigInt64Array.from(data, (x) => BigInt(x)), dims);
  }

  /** A float32 copy the caller owns (float16 outputs are widened). */
  private static floats(t: Tensor): Float32Array {
    return t.type === "float16" ? fromFloat16(t.data as Uint16Array) : Float32Array.from(t.data as Float32Array);
  }

  /** embed_tokens of rectangular ids [B,T] -> [B,T,H]. */
  async embedTokens(ids: readonly (readonly number[])[]): Promise<Float32Array> {
    const out = await this.sessions.embedTokens.run({ input_ids: await LlmGraphs.int64(ids.flat(), [ids.length, ids[0]?.length ?? 0]) });
    return LlmGraphs.floats(out.inputs_embeds);
  }

  /** project_up [K,Q,W] -> [K,Q,H]. */
  async projectUp(features: Features): Promise<Float32Array> {
    const out = await this.sessions.projectUp.run({ image_features: await this.activations(features.data, features.dims) });
    return LlmGraphs.floats(out.image_embeds);
  }

  /**
   * One decoder run on the new tokens' embeddings [B,T,H] with the full mask [B,P+T] (P = the cache's length);
   * the cache absorbs the presents; returns the final hidden states [B,T,H].
   */
  async decoder(embeds: Float32Array, mask: readonly (readonly number[])[], cache: KvCache): Promise<Float32Array> {
    const batch = mask.length;
    const t = embeds.length / (batch * this.hidden);
    if (!Number.isInteger(t) || mask[0].length !== cache.length + t || cache.batch !== batch) {
      throw new Error(`decoder feeds disagree: ${embeds.length} embedding values, mask [${batch},${mask[0].length}], cache [${cache.batch}, P=${cache.length}]`);
    }
    const positions = mask.map((m) => positionIds(m).slice(m.length - t));
    const out = await this.sessions.decoder.run({
      inputs_embeds: await this.activations(embeds, [batch, t, this.hidden]),
      attention_mask: await LlmGraphs.int64(mask.flat(), [batch, mask[0].length]),
      position_ids: await LlmGraphs.int64(positions.flat(), [batch, t]),
      ...cache.feeds(),
    });
    cache.absorb(out);
    return LlmGraphs.floats(out.last_hidden_state);
  }

  /** lm_head of hidden states [B,T,H] -> logits [B,T,V]. */
  async lmHead(hidden: Float32Array, batch: number): Promise<Float32Array> {
    const t = hidden.length / (batch * this.hidden);
    const out = await this.sessions.lmHead.run({ hidden_states: await this.activations(hidden, [batch, t, this.hidden]) });
    return LlmGraphs.floats(out.logits);
  }

  /** project_down of hidden states [B,T,H] -> visual embeddings [B,T,W]. */
  async projectDown(hidden: Float32Array, batch: number): Promise<Float32Array> {
    const t = hidden.length / (batch * this.hidden);
    const out = await this.sessions.projectDown.run({ hidden_states: await this.activations(hidden, [batch, t, this.hidden]) });
    return LlmGraphs.floats(out.visual_embeds);
  }

  /** The last position's rows of hidden states [B,T,H] -> [B,H]. */
  lastRows(hidden: Float32Array, batch: number): Float32Array {
    const t = hidden.length / (batch * this.hidden);
    const out = new Float32Array(batch * this.hidden);
    for (let b = 0; b < batch; b++) out.set(hidden.subarray(((b + 1) * t - 1) * this.hidden, (b + 1) * t * this.hidden), b * this.hidden);
    return out;
  }
}
