// The attention section of `npm run bench:real`: one decode step's attention over a long past at Emu2's head layout,
// in the decoder's own form and in ONNX Runtime's two attention kernels, against the read probe over the same bytes.
// It says whether a decoder exported with ONNX Runtime's com.microsoft attention ops would read the past faster than
// the MatMuls the package decoder runs now (bench/attention_forms.py writes the graphs).
//
// Every form reads the same buffers: per layer, keys and values [1,h,P+1,d] whose first P slots are the past and
// whose last holds this step's own key and value row.
// - decoder: the past as the decoder is fed it (P+1 slots, the last one free and masked, as a KV cache's free slots
//   are), this step's row as its own input;
// - MultiHeadAttention: all P+1 slots as keys and values;
// - GroupQueryAttention: the buffer as past and present at once (seqlens_k P, total P+1): it writes this step's row
//   into slot P (the values already there) and attends P+1 slots;
// - read: ReduceSum over both buffers, the bandwidth probe of these very bytes.
// GroupQueryAttention is timed after the others, on its own (attentionWorker).
// The forms take turns run by run (the VM's speed drifts over seconds), and their outputs must agree.
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { absDiffs, spread, type Spread } from "./stats.js";

export interface AttentionOut {
  context: number;
  heads: number;
  head_dim: number;
  layers: number;
  /** Bytes every form reads per step: keys and values of every layer's P+1 slots. */
  bytes: number;
  /** Per form: ms per step (all layers), GB/s, and read ms / form ms (the share of the probe's speed it reaches). */
  forms: Record<string, { ms: Spread; gb_s: number; read_ratio: number }>;
  /** The largest difference of each ONNX Runtime kernel's output from the decoder form's. */
  max_abs_diff: Record<string, number>;
}

const WARMUP = 2;
const ROUNDS = 20;
const GQA_ROUNDS = 5;
const FORMS = ["decoder", "mha", "gqa", "read"] as const;

/** Deterministic values in [-0.5, 0.5): a linear congruential sequence (the same every run). */
function filled(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 32 - 0.5;
  }
  return out;
}

export async function attentionWorker(
  dir: string,
  shape: { heads: number; headDim: number; layers: number; context: number },
  sessionOptions: Record<string, unknown>,
): Promise<AttentionOut> {
  const ort = await import("onnxruntime-node");
  const { heads, headDim: d, layers, context: p } = shape;
  const slots = p + 1;
  const hidden = heads * d;
  const sessions = Object.fromEntries(
    await Promise.all(
      FORMS.map(async (form) => [form, await ort.InferenceSession.create(join(dir, `${form}.onnx`), sessionOptions)]),
    ),
  ) as Record<(typeof FORMS)[number], Awaited<ReturnType<typeof ort.InferenceSession.create>>>;
  const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);
  const i32 = (value: number, dims: number[]) => new ort.Tensor("int32", Int32Array.of(value), dims);

  const query = filled(hidden, 1);
  const perLayer = Array.from({ length: layers }, (_, layer) => {
    const key = filled(heads * slots * d, 10 + layer);
    const value = filled(heads * slots * d, 20 + layer);
    // This step's own row: slot P of every head.
    const newKey = new Float32Array(hidden);
    const newValue = new Float32Array(hidden);
    for (let h = 0; h < heads; h++) {
      newKey.set(key.subarray((h * slots + p) * d, (h * slots + p + 1) * d), h * d);
      newValue.set(value.subarray((h * slots + p) * d, (h * slots + p + 1) * d), h * d);
    }
    return { key, value, newKey, newValue };
  });
  // The decoder form's mask: the P past slots open, the free slot P masked, its own row open.
  const mask = new Float32Array(slots + 1);
  mask[p] = -3.4028234663852886e38;
  const bias = new Float32Array(slots);
  const kv = [1, heads, slots, d];
  const outs: Partial<Record<(typeof FORMS)[number], Float32Array>> = {};
  const run = async (form: (typeof FORMS)[number]) => {
    for (const l of perLayer) {
      const key = f32(l.key, kv);
      const value = f32(l.value, kv);
      let out;
      if (form === "decoder") {
        out = await sessions.decoder.run({
          q: f32(query, [1, heads, 1, d]),
          k: f32(l.newKey, [1, heads, 1, d]),
          v: f32(l.newValue, [1, heads, 1, d]),
          mask: f32(mask, [1, 1, 1, slots + 1]),
          past_key: key,
          past_value: value,
        });
      } else if (form === "mha") {
        out = await sessions.mha.run({
          query: f32(query, [1, 1, hidden]),
          key,
          value,
          attention_bias: f32(bias, [1, 1, 1, slots]),
        });
      } else if (form === "gqa") {
        // Present bound to the past's own memory: the shared buffer GroupQueryAttention decodes in.
        out = await sessions.gqa.run(
          {
            query: f32(query, [1, 1, hidden]),
            key: f32(l.newKey, [1, 1, hidden]),
            value: f32(l.newValue, [1, 1, hidden]),
            past_key: key,
            past_value: value,
            seqlens_k: i32(p, [1]),
            total_sequence_length: i32(slots, []),
          },
          { out: f32(new Float32Array(hidden), [1, 1, hidden]), present_key: key, present_value: value },
        );
      } else {
        out = await sessions.read.run({ past_key: key, past_value: value });
      }
      outs[form] = out.out.data as Float32Array;
    }
  };
  const times = Object.fromEntries(FORMS.map((form) => [form, [] as number[]])) as Record<string, number[]>;
  const timeTurns = async (forms: readonly (typeof FORMS)[number][], rounds: number) => {
    for (let round = 0; round < WARMUP + rounds; round++) {
      for (const form of round % 2 ? [...forms].reverse() : forms) {
        const start = performance.now();
        await run(form);
        if (round >= WARMUP) times[form].push(performance.now() - start);
      }
    }
  };
  // GroupQueryAttention apart and after: its steps take hundreds of ms on the CPU, and the memory it allocates and
  // frees for them slowed the forms run next to it (the probe's spread went from about 1.1x to 2.6x).
  await timeTurns(["decoder", "mha", "read"], ROUNDS);
  await timeTurns(["gqa"], GQA_ROUNDS);
  const bytes = layers * 2 * heads * slots * d * 4;
  const readMs = spread(times.read).median;
  const forms = Object.fromEntries(
    FORMS.map((form) => {
      const ms = spread(times[form]);
      return [form, { ms, gb_s: bytes / ms.median / 1e6, read_ratio: readMs / ms.median }];
    }),
  );
  // The last layer's outputs: [1,h,1,d] and [1,1,h*d] hold the heads in the same order.
  const reference = outs.decoder as Float32Array;
  const max_abs_diff = {
    mha: absDiffs(reference, outs.mha as Float32Array).max,
    gqa: absDiffs(reference, outs.gqa as Float32Array).max,
  };
  return { context: p, heads, head_dim: d, layers, bytes, forms, max_abs_diff };
}
