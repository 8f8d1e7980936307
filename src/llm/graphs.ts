// The five LLM graphs of a package (docs/package-format.md; embed_tokens may be its table, read from the file) as
// typed calls on host arrays: float32 in and out whatever the package's activation type (the conversion happens at
// the ONNX Runtime boundary, model/ort.ts); ids, masks and positions as int64.
import type { Dtype } from "../model/manifest.js";
import { fromOrt, int64Feed, int64Tensor, toOrt, type OrtTensor, type Session } from "../model/ort.js";
import { LookupTable } from "../model/lookup-table.js";
import type { Tensor } from "../model/tensor.js";
import type { KvCache } from "./kv-cache.js";

export interface LlmSessions {
  /** The embedding graph's session, or its table read from the file (model/lookup-table.ts). */
  embedTokens: Session | LookupTable;
  projectUp: Session;
  /** The decoder, or the parts of a split decoder in layer order (each may sit on its own device). */
  decoder: Session | readonly Session[];
  lmHead: Session;
  projectDown: Session;
}

/** HF generation's position ids (LlamaForCausalLM.prepare_inputs_for_generation): cumsum(mask) - 1, with padded positions set to 1. */
export function positionIds(mask: readonly number[]): number[] {
  let sum = 0;
  return mask.map((m) => {
    sum += m;
    return m === 0 ? 1 : sum - 1;
  });
}

/**
 * positionIds of the last `t` positions of every mask row, as the int64 values of a [B,t] position_ids feed: a
 * decode step's one position, without a number array per row of the whole mask on every token.
 */
export function newPositionIds(mask: readonly (readonly number[])[], t: number): BigInt64Array {
  const out = new BigInt64Array(mask.length * t);
  mask.forEach((m, b) => {
    const start = m.length - t;
    let sum = 0;
    for (let i = 0; i < start; i++) sum += m[i];
    for (let i = 0; i < t; i++) {
      sum += m[start + i];
      out[b * t + i] = BigInt(m[start + i] === 0 ? 1 : sum - 1);
    }
  });
  return out;
}

/**
 * Rows of `data` (`size` values each) from a cache's feed order into select()'s, in place: batch row b holds row
 * order[b]. Each cycle of the permutation moves through two row buffers.
 */
export function toSelectOrder(data: Float32Array, order: readonly number[], size: number): void {
  const row = (b: number) => data.subarray(b * size, (b + 1) * size);
  const placed = new Uint8Array(order.length);
  let carry = new Float32Array(size);
  let swap = new Float32Array(size);
  for (let start = 0; start < order.length; start++) {
    if (placed[start] || order[start] === start) continue;
    carry.set(row(start));
    for (let b = order[start]; ; b = order[b]) {
      placed[b] = 1;
      if (b === start) {
        row(b).set(carry);
        break;
      }
      swap.set(row(b));
      row(b).set(carry);
      [carry, swap] = [swap, carry];
    }
  }
}

export class LlmGraphs {
  constructor(
    private readonly sessions: LlmSessions,
    readonly dtype: Dtype,
    readonly hidden: number,
  ) {}

  private activations(data: Float32Array, dims: number[]) {
    return toOrt({ data, dims }, this.dtype);
  }

  /** embed_tokens of rectangular ids [B,T] -> [B,T,H]. */
  async embedTokens(ids: readonly (readonly number[])[]): Promise<Float32Array> {
    if (this.sessions.embedTokens instanceof LookupTable) return this.sessions.embedTokens.rows(ids.flat());
    const out = await this.sessions.embedTokens.run({
      input_ids: int64Tensor(ids.flat(), [ids.length, ids[0]?.length ?? 0]),
    });
    return fromOrt(out.inputs_embeds, "embed_tokens inputs_embeds").data;
  }

  /** The buffer embedStep writes, kept from step to step. */
  private stepRows?: Float32Array;

  /**
   * embed_tokens of one new token per row [B] -> [B,1,H], for a decode step: a table's rows go into the buffer the
   * previous step's went into (the decoder has read those), since fresh memory costs a page fault a page here (a
   * new 532 KB array at Emu2's width and 20 rows took 1.6 ms, its rows' copy 0.05 ms).
   */
  async embedStep(tokens: readonly number[]): Promise<Float32Array> {
    const table = this.sessions.embedTokens;
    if (!(table instanceof LookupTable)) return this.embedTokens(tokens.map((id) => [id]));
    if (this.stepRows?.length !== tokens.length * this.hidden)
      this.stepRows = new Float32Array(tokens.length * this.hidden);
    return table.rows(tokens, this.stepRows);
  }

  /** project_up of image features [K,Q,W] -> [K,Q,H]. */
  async projectUp(features: Tensor): Promise<Float32Array> {
    const out = await this.sessions.projectUp.run({ image_features: toOrt(features, this.dtype) });
    return fromOrt(out.image_embeds, "project_up image_embeds").data;
  }

  /** The buffer the embeddings go into in the cache's feed order, kept from run to run. */
  private feedRows?: Float32Array;

  /**
   * One decoder run on the new tokens' embeddings [B,T,H] with the full mask [B,P+T] (P = the cache's length);
   * the cache absorbs its outputs; returns the final hidden states [B,T,H]. The rows are the cache's rows as
   * select() numbers them; where the cache holds them in another order (feedOrder) the inputs go in that order and
   * the hidden states come back in this one.
   */
  async decoder(
    embeds: Float32Array,
    selectMask: readonly (readonly number[])[],
    cache: KvCache,
  ): Promise<Float32Array> {
    const batch = selectMask.length;
    const t = embeds.length / (batch * this.hidden);
    if (!Number.isInteger(t) || selectMask[0].length !== cache.length + t || cache.batch !== batch) {
      throw new Error(
        `decoder feeds disagree: ${embeds.length} embedding values, mask [${batch},${selectMask[0].length}], cache [${cache.batch}, P=${cache.length}]`,
      );
    }
    const order = cache.feedOrder();
    const mask = order ? order.map((row) => selectMask[row]) : selectMask;
    const rowSize = t * this.hidden;
    if (order) {
      if (this.feedRows?.length !== embeds.length) this.feedRows = new Float32Array(embeds.length);
      const rows = this.feedRows;
      order.forEach((row, b) => rows.set(embeds.subarray(row * rowSize, (row + 1) * rowSize), b * rowSize));
      embeds = rows;
    }
    const positionIdsFeed = int64Feed(newPositionIds(mask, t), [batch, t]);
    // The past may have free slots after its P filled ones (a host cache's room to grow: kv-cache.ts): the mask
    // marks them as padding, so they take no part in attention. Parts on different devices may differ in slots.
    const masks = new Map<number, OrtTensor>();
    const maskFor = (slots: number) => {
      let feed = masks.get(slots);
      if (!feed) {
        // Filled straight into the int64 buffer (zeros where the free slots sit): this runs on every token.
        const width = slots + t;
        const data = new BigInt64Array(batch * width);
        mask.forEach((m, b) => {
          const row = b * width;
          for (let i = 0; i < cache.length; i++) if (m[i]) data[row + i] = 1n;
          for (let i = 0; i < t; i++) if (m[cache.length + i]) data[row + slots + i] = 1n;
        });
        feed = int64Feed(data, [batch, width]);
        masks.set(slots, feed);
      }
      return feed;
    };
    const past = cache.feeds();
    const parts = Array.isArray(this.sessions.decoder) ? this.sessions.decoder : [this.sessions.decoder as Session];
    // A split decoder: each part takes the previous part's last_hidden_state as its inputs_embeds and the past of
    // its own layers (its inputs name them); the cache absorbs every part's outputs together.
    let hidden = await this.activations(embeds, [batch, t, this.hidden]);
    const outputs: Record<string, OrtTensor> = {};
    for (const part of parts) {
      const own = part.inputNames.filter((name: string) => name in past);
      const slots = own.length ? Number(past[own[0]].dims[2]) : cache.length;
      const feeds: Record<string, OrtTensor> = {
        attention_mask: maskFor(slots),
        position_ids: positionIdsFeed,
        inputs_embeds: hidden,
      };
      for (const name of own) feeds[name] = past[name];
      const out = await part.run(feeds, ["last_hidden_state", ...cache.outputsToFetch(part.outputNames)]);
      Object.assign(outputs, out);
      hidden = out.last_hidden_state;
    }
    await cache.absorb(outputs);
    const states = fromOrt(hidden, "decoder last_hidden_state").data;
    if (order) toSelectOrder(states, order, rowSize);
    return states;
  }

  /** lm_head of hidden states [B,T,H] -> logits [B,T,V]. */
  async lmHead(hidden: Float32Array, batch: number): Promise<Float32Array> {
    const t = hidden.length / (batch * this.hidden);
    const out = await this.sessions.lmHead.run({
      hidden_states: await this.activations(hidden, [batch, t, this.hidden]),
    });
    return fromOrt(out.logits, "lm_head logits").data;
  }

  /** project_down of hidden states [B,T,H] -> visual embeddings [B,T,W]. */
  async projectDown(hidden: Float32Array, batch: number): Promise<Float32Array> {
    const t = hidden.length / (batch * this.hidden);
    const out = await this.sessions.projectDown.run({
      hidden_states: await this.activations(hidden, [batch, t, this.hidden]),
    });
    return fromOrt(out.visual_embeds, "project_down visual_embeds").data;
  }

  /** The last position's rows of hidden states [B,T,H] -> [B,H]: `hidden` itself when T is 1. */
  lastRows(hidden: Float32Array, batch: number): Float32Array {
    const t = hidden.length / (batch * this.hidden);
    if (t === 1) return hidden;
    const out = new Float32Array(batch * this.hidden);
    for (let b = 0; b < batch; b++)
      out.set(hidden.subarray(((b + 1) * t - 1) * this.hidden, (b + 1) * t * this.hidden), b * this.hidden);
    return out;
  }
}
