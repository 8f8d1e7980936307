// The bare decode loop both benches hold emu2's generation against: one new token per row on a fixed synthetic past
// of `context` tokens, nothing but the embedding lookup (its session, or its table where emu2 reads that) and the
// decoder and lm_head runs, the feeds built once.
// It fetches what emu2's host cache fetches from the decoder: last_hidden_state and the new key/value rows
// (src/llm/kv-cache.ts).
import { performance } from "node:perf_hooks";
import { LookupTable } from "../src/model/lookup-table.js";
import type { Dtype, LlmConfig } from "../src/model/manifest.js";
import { int64Feed, toOrt, type OrtTensor, type Session } from "../src/model/ort.js";

export interface BareDecodeSessions {
  /** The embedding graph's session, or its table when emu2 reads that instead (model/lookup-table.ts). */
  embed: Session | LookupTable;
  decoder: Session;
  lmHead: Session;
}

/** One step's times, ms: the whole step, and the decoder and lm_head runs in it. */
export interface BareStepTimes {
  total: number;
  decoder: number;
  lmHead: number;
}

/**
 * Runs and times one step. `decoderFeeds`, when given, are the decoder's feeds in place of the loop's own: a step on
 * the very past (and mask and positions) a generation feeds its next run, in the memory that generation holds it in.
 */
export type BareDecodeLoop = (decoderFeeds?: Record<string, OrtTensor>) => Promise<BareStepTimes>;

/** Builds the feeds of `rows` rows on a `context`-token past; each call of the loop runs and times one step. */
export async function bareDecodeLoop(
  sessions: BareDecodeSessions,
  llm: Pick<LlmConfig, "hidden_size" | "num_heads" | "head_dim">,
  dtype: Dtype,
  rows: number,
  context: number,
): Promise<BareDecodeLoop> {
  const { embed, decoder, lmHead } = sessions;
  const { hidden_size: hidden, num_heads: heads, head_dim: headDim } = llm;
  const values = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * scale);
  const pastDims = [rows, heads, context, headDim];
  const feeds: Record<string, OrtTensor> = {
    inputs_embeds: toOrt({ data: values(rows * hidden, 0.02), dims: [rows, 1, hidden] }, dtype),
    attention_mask: int64Feed(new BigInt64Array(rows * (context + 1)).fill(1n), [rows, context + 1]),
    position_ids: int64Feed(new BigInt64Array(rows).fill(BigInt(context)), [rows, 1]),
  };
  // A buffer per past input, as a cache holds: one buffer fed as every past would stay in the caches between layers
  // (1.7 MB per entry at Emu2's width and 64 tokens) and make the loop faster than any real decode (about 1 ms of
  // a 45 ms int8 decoder run, measured).
  for (const name of decoder.inputNames.filter((n) => n.startsWith("past_key_values.")))
    feeds[name] = toOrt({ data: values(rows * heads * context * headDim, 1), dims: pastDims }, dtype);
  const ids = int64Feed(new BigInt64Array(rows).fill(42n), [rows, 1]);
  const idList = new Array<number>(rows).fill(42);
  const fetched = decoder.outputNames.filter((n) => n === "last_hidden_state" || n.startsWith("new_key_values."));
  return async (decoderFeeds = feeds) => {
    const start = performance.now();
    if (embed instanceof LookupTable) embed.rows(idList);
    else await embed.run({ input_ids: ids });
    const t0 = performance.now();
    const out = await decoder.run(decoderFeeds, fetched);
    const t1 = performance.now();
    await lmHead.run({ hidden_states: out.last_hidden_state });
    const end = performance.now();
    return { total: end - start, decoder: t1 - t0, lmHead: end - t1 };
  };
}
