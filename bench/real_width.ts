// `npm run bench:real`: emu2 at Emu2's real layer widths, against the limits of the machine it runs on.
//
// The model is a stand-in (bench/standin_package.py): a whole package with Emu2-Chat's layer shapes (LLM hidden
// 6656, 52 heads x 128, intermediate 17920, real vocabulary; visual encoder width 1792, 16 heads, MLP 15360, 448 px)
// but 2 LLM and 2 vision layers of seeded random weights, built on first use into $EMU2_BENCH_DIR/real-width
// (default ~/.cache/emu2-bench; about 6.6 GB on disk, 9 GB of memory while exporting; never in git).
//
// Measured in the same run:
// - limits: read bandwidth (ReduceSum over a 1 GiB vector, far beyond the caches) and the GEMM peak (one
//   512x6656 @ 6656x17920 MatMul) through ONNX Runtime, and the same GEMM and read through PyTorch;
// - decode: a bare loop of session.run (embed_tokens, decoder, lm_head on a fixed synthetic past of the row's
//   context) and emu2's own generation (LlmStage.generateText, greedy or beam 5) on a prompt of that length; the
//   per-token time of generation is the period between consecutive decoder runs, so it holds everything emu2 does
//   per token (scores, beam bookkeeping, KV reorder, embedding of the chosen tokens); a bare step runs just before
//   each of generation's decode runs on the loop's own past, and one on the past that run is about to read (their
//   time taken out of the period); emu2 / bare is the median of these pairs' ratios, for each past, and the share of
//   emu2's period spent outside its own session runs is a third figure (pairRuns); the decode floor of each step is
//   its bytes at the bandwidth of a read probe run just before it, in the row's own process (the VM's bandwidth
//   moved between 26.8 and 35.2 GB/s from run to run);
// - prefill (the first decoder run of generation) and the visual encoder, against FLOPs / GEMM peak;
// - the PyTorch reference (python/emu2ref) on the same weights for batch-1 rows: it must produce the same tokens, or
//   the bench stops;
// - decode with the same weights stored as int8 (`int8 ...` rows: the stand-in's LLM graphs quantized as
//   `export_package.py --quantize int8 --quantize-heads --accuracy-level 4` does, built into real-width-int8);
// - decode of one stand-in layer stored as float32 / int8 / int4 (bench/quantized.ts's stand-ins);
// - one step's attention over a 1,536-token past in the decoder's form and in ONNX Runtime's MultiHeadAttention and
//   GroupQueryAttention, against the read probe over the same bytes (bench/attention_forms.ts);
// - a prediction for the full Emu2-Chat from the per-layer figures.
// Each row runs in a process of its own, so its peak resident set is its own. Results: bench/results/.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, statfsSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, homedir, hostname, loadavg, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Emu2 } from "../src/emu2.js";
import { PLAIN_GREEDY, type GenerationSettings } from "../src/llm/settings.js";
import { LookupTable } from "../src/model/lookup-table.js";
import { readManifest } from "../src/model/manifest.js";
import { writeOnnxModel } from "../src/model/onnx-writer.js";
import type { OrtTensor, Session } from "../src/model/ort.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../src/model/session.js";
import { HostKvCache, type KvCacheFactory, type KvCacheShape } from "../src/llm/kv-cache.js";
import { LlmStage } from "../src/llm/stage.js";
import { attentionWorker, type AttentionOut } from "./attention_forms.js";
import { bareDecodeLoop, type BareDecodeLoop } from "./bare_decode.js";
import { freeResultsFile } from "./results.js";
import { median, spread, type Spread } from "./stats.js";
import { NETLIB_WARNING, torchEnv } from "./torch_env.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const PYTHON = "/usr/bin/python3";
const DIR = process.env.EMU2_BENCH_DIR ?? join(homedir(), ".cache", "emu2-bench");
const PACKAGE = join(DIR, "real-width");
const INT8_PACKAGE = join(DIR, "real-width-int8");
/** bench/attention_forms.py's graphs (the attention section). */
const ATTENTION_DIR = join(DIR, "attention");
const THREADS = Number(process.env.EMU2_BENCH_THREADS ?? availableParallelism());
/** What building the stand-in needs (bench/standin_package.py's docstring): disk for the package, memory to export. */
const BUILD_DISK_GB = 7.5;
const BUILD_MEMORY_GB = 10;
/** The int8 package: its LLM graphs (2.3 GB); the export holds the float32 modules and the quantized weights (12.7 GB measured). */
const BUILD_INT8_DISK_GB = 3;
const BUILD_INT8_MEMORY_GB = 14;
/**
 * Memory a row needs at most (the weights, once, plus a 1,536-token KV cache of 5 rows and its reordered copy, and
 * the bandwidth probe's 1 GiB).
 */
const RUN_MEMORY_GB = 10;
/** The GEMM of the peak: 128 rows through a 6656x6656 weight (a prefill chunk through q_proj). */
const GEMM = { m: 128, k: 6656, n: 6656 };
const READ_FLOATS = 1 << 28;
/**
 * New tokens per generation row: the periods between decoder runs, less the first (warm-up), are its samples (29).
 * This VM's step times vary by 10-15% from step to step and drift over seconds, so emu2's steps are paired with bare
 * steps (pairRuns), and the bare loop's own figure runs both before and after the generation (half its samples each).
 */
const NEW_TOKENS = 32;
const BARE_WARMUP = 2;
const BARE_STEPS = 12;
const PROMPT_SEED = 99;
/**
 * The context figure: the bare loop's step at CONTEXTS[1] tokens against CONTEXTS[0], the two taking turns step by
 * step in one process (CONTEXT_ROUNDS after CONTEXT_WARMUP), the median of the rounds' ratios. Rows measured
 * minutes apart compare the VM's moods as much as the contexts (one run's bare loop took 173 ms at 64 tokens and
 * 184 at 1,536, the next 208 and 220, its floor moving from 166 to 209 ms).
 */
const CONTEXTS = [64, 1536] as const;
const CONTEXT_WARMUP = 2;
const CONTEXT_ROUNDS = 12;
/**
 * The placement figure: PLACEMENT_PASTS bare loops at CONTEXTS[1] tokens, each on a past allocated on its own, and
 * the first loop's past a second time (the control), taking turns step by step for PLACEMENT_ROUNDS rounds. Where a
 * past lies in memory moves the step at long contexts, which the same past read twice does not show.
 */
const PLACEMENT_PASTS = 3;
const PLACEMENT_ROUNDS = 40;
const IMAGES = 4;
/**
 * The most an attention form's output may differ from the decoder form's: the kernels sum in other orders (measured
 * 1e-8 to 5e-8 at 64 and 1,536 tokens); one slot too many or too few (a free slot left open, the step's own row
 * missing) moves the output by about 1e-4.
 */
const ATTENTION_AGREEMENT = 2e-7;

type Weights = "float32" | "int8";

interface RowSpec {
  name: string;
  /** The package the row decodes with: the stand-in, or its int8 twin (same weights, quantized). */
  weights: Weights;
  batch: number;
  beams: number;
  context: number;
  /** Whether emu2's generation runs too (long prompts at batch 4 only get the bare loop: their prefill is minutes). */
  generate: boolean;
  /** Whether the PyTorch reference runs the same generation. */
  torch: boolean;
}

const ROWS: RowSpec[] = [
  { weights: "float32", name: "greedy b1 ctx64", batch: 1, beams: 1, context: 64, generate: true, torch: true },
  { weights: "float32", name: "beam5 b1 ctx64", batch: 1, beams: 5, context: 64, generate: true, torch: true },
  { weights: "float32", name: "greedy b4 ctx64", batch: 4, beams: 1, context: 64, generate: true, torch: false },
  { weights: "float32", name: "beam5 b4 ctx64", batch: 4, beams: 5, context: 64, generate: true, torch: false },
  { weights: "float32", name: "greedy b1 ctx512", batch: 1, beams: 1, context: 512, generate: true, torch: false },
  { weights: "float32", name: "beam5 b1 ctx512", batch: 1, beams: 5, context: 512, generate: true, torch: false },
  { weights: "float32", name: "greedy b4 ctx512", batch: 4, beams: 1, context: 512, generate: false, torch: false },
  { weights: "float32", name: "beam5 b4 ctx512", batch: 4, beams: 5, context: 512, generate: false, torch: false },
  { weights: "float32", name: "greedy b1 ctx1536", batch: 1, beams: 1, context: 1536, generate: true, torch: false },
  { weights: "float32", name: "beam5 b1 ctx1536", batch: 1, beams: 5, context: 1536, generate: true, torch: false },
  { weights: "float32", name: "greedy b4 ctx1536", batch: 4, beams: 1, context: 1536, generate: false, torch: false },
  // The PyTorch reference has no int8 path: these rows have no peer.
  { weights: "int8", name: "int8 greedy b1 ctx64", batch: 1, beams: 1, context: 64, generate: true, torch: false },
  { weights: "int8", name: "int8 beam5 b1 ctx64", batch: 1, beams: 5, context: 64, generate: true, torch: false },
  { weights: "int8", name: "int8 greedy b1 ctx1536", batch: 1, beams: 1, context: 1536, generate: true, torch: false },
];

function packageOf(weights: Weights): string {
  return weights === "int8" ? INT8_PACKAGE : PACKAGE;
}

class BenchError extends Error {}

interface ImagesOut {
  encode_ms: Spread;
  encoder_run_ms: Spread;
  prompt_tokens: number;
  prefill_ms: number;
  rss_peak_kb: number;
}

interface ContextOut {
  contexts: readonly number[];
  short_ms: Spread;
  long_ms: Spread;
  ratio: Spread;
  placement: {
    /** The step on each separately allocated past, then on the first past again (the control). */
    separate_pasts_ms: Spread[];
    same_past_ms: Spread;
    /** Slowest over fastest median among the separate pasts, and the control's median over the first past's. */
    separate_ratio: number;
    same_ratio: number;
  };
  rss_peak_kb: number;
}

interface LayerOut {
  variant: string;
  weight_bytes: number;
  ms_per_token: number;
  samples_ms: number[];
  rss_peak_kb: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Workers: each runs in its own process and prints one JSON object.

/** Seeded prompt ids in the plain vocabulary (no special tokens), the same on both sides. */
function promptIds(length: number, row: number): number[] {
  let state = (PROMPT_SEED * 1000003 + row * 7919) >>> 0;
  return Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return 3 + (state % 31997);
  });
}

const LIMIT_SESSION_OPTIONS = {
  intraOpNumThreads: THREADS,
  interOpNumThreads: 1,
  executionMode: "sequential" as const,
};

/** The bandwidth probe: each call reads READ_FLOATS floats (ReduceSum through ONNX Runtime) and returns its ms. */
async function readProbe(): Promise<() => Promise<number>> {
  const ort = await import("onnxruntime-node");
  const read = await ort.InferenceSession.create(
    writeOnnxModel({
      name: "read",
      opset: 17,
      inputs: [{ name: "x", type: "float32", dims: ["n"] }],
      outputs: [{ name: "y", type: "float32", dims: [] }],
      nodes: [{ op: "ReduceSum", inputs: ["x"], outputs: ["y"], ints: { keepdims: 0 } }],
    }),
    LIMIT_SESSION_OPTIONS,
  );
  const x = new ort.Tensor("float32", new Float32Array(READ_FLOATS).fill(1), [READ_FLOATS]);
  return async () => {
    const start = performance.now();
    await read.run({ x });
    return performance.now() - start;
  };
}

/** The floor of a step that reads `bytes`, ms, at the bandwidth of a read that took `readMs`. */
function floorMs(bytes: number, readMs: number): number {
  return (bytes / (READ_FLOATS * 4)) * readMs;
}

async function limitsWorker(): Promise<Record<string, unknown>> {
  const ort = await import("onnxruntime-node");
  const read = await readProbe();
  const readMs: number[] = [];
  for (let i = 0; i < 7; i++) {
    const ms = await read();
    if (i >= 2) readMs.push(ms);
  }
  const { m, k, n } = GEMM;
  const gemm = await ort.InferenceSession.create(
    writeOnnxModel({
      name: "gemm",
      opset: 17,
      inputs: [
        { name: "a", type: "float32", dims: [m, k] },
        { name: "b", type: "float32", dims: [k, n] },
      ],
      outputs: [{ name: "y", type: "float32", dims: [m, n] }],
      nodes: [{ op: "MatMul", inputs: ["a", "b"], outputs: ["y"] }],
    }),
    LIMIT_SESSION_OPTIONS,
  );
  const a = new ort.Tensor(
    "float32",
    Float32Array.from({ length: m * k }, (_, i) => Math.sin(i)),
    [m, k],
  );
  const b = new ort.Tensor(
    "float32",
    Float32Array.from({ length: k * n }, (_, i) => Math.cos(i) * 0.01),
    [k, n],
  );
  const gemmMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    await gemm.run({ a, b });
    if (i >= 1) gemmMs.push(performance.now() - start);
  }
  return {
    read_bytes: READ_FLOATS * 4,
    read_ms: spread(readMs),
    bandwidth_gb_s: (READ_FLOATS * 4) / median(readMs) / 1e6,
    gemm: GEMM,
    gemm_ms: spread(gemmMs),
    gemm_gflops: (2 * m * k * n) / median(gemmMs) / 1e6,
  };
}

/** Times every run of a session: [start, end] in ms. */
function timeRuns(session: Session): [number, number][] {
  const spans: [number, number][] = [];
  const run = session.run.bind(session) as (...args: unknown[]) => ReturnType<Session["run"]>;
  session.run = (async (...args: unknown[]) => {
    const start = performance.now();
    const out = await run(...args);
    spans.push([start, performance.now()]);
    return out;
  }) as Session["run"];
  return spans;
}

/** One of emu2's decoder runs, and the bare steps run just before it (NaN before the prefill). */
interface PairedRun {
  start: number;
  /** Bare step on the loop's own past (its buffers, allocated once before the generation). */
  bareOwnMs: number;
  /** Bare step on the past this run is about to read: the run's own feeds, in the memory emu2's cache holds them. */
  bareSameMs: number;
  /** emu2's own session runs (decoder, lm_head) from the first decoder run to this one's start. */
  sessionMsBefore: number;
  /** This run's own time. */
  ms: number;
  /** The bandwidth probe run just before the bare steps (readProbe). */
  readMs: number;
  /**
   * The whole of what the bench ran before this run: from the probe's start to the last bare step's end, the gaps
   * between them included (promise settling, and whatever the collector does there).
   */
  benchMs: number;
}

/**
 * Times every decoder run of emu2's generation and, before each run after the first (the prefill), runs two steps
 * of the bare loop on the same sessions, in an order that alternates: one on the loop's own past, one on the past
 * emu2's run is about to read. Every emu2 step is paired with bare steps adjacent in time, so their ratio is not the
 * VM's drift between a generation and bare steps taken seconds before or after it (its step times move 10-15% from
 * step to step, more over seconds). Before them the bandwidth probe runs, so each step has its own floor. The bare
 * steps' and the probe's time is taken out of emu2's period.
 *
 * Where a past lies in memory moves the decoder's time at long contexts: the context worker's placement figure (bare
 * loops on separately allocated pasts, against the same past read twice), and by hand, four int8 generations of
 * 1,536 tokens in one process ran 0.96x to 1.08x the bare loop's own past over 61 steps each. The same-past pairing
 * leaves placement out. The time emu2 spends outside its own session runs (its share of the period) is a third
 * figure, the one no other run's noise enters.
 */
function pairRuns(
  decoder: Session,
  others: Session[],
  bareStep: BareDecodeLoop,
  read: () => Promise<number>,
): { runs: PairedRun[]; stop: () => void } {
  const runs: PairedRun[] = [];
  let sessionMs = 0;
  let inBareStep = false;
  const originals = [decoder, ...others].map((session) => ({ session, run: session.run }));
  // emu2's other runs count towards its session time; the bare step's go straight through.
  for (const session of others) {
    const run = session.run.bind(session) as (...args: unknown[]) => ReturnType<Session["run"]>;
    session.run = (async (...args: unknown[]) => {
      if (inBareStep) return run(...args);
      const start = performance.now();
      const out = await run(...args);
      sessionMs += performance.now() - start;
      return out;
    }) as Session["run"];
  }
  const run = decoder.run.bind(decoder) as (...args: unknown[]) => ReturnType<Session["run"]>;
  decoder.run = (async (...args: unknown[]) => {
    if (inBareStep) return run(...args);
    const times = { own: NaN, same: NaN };
    let readMs = NaN;
    let benchMs = 0;
    if (runs.length > 0) {
      const feeds = args[0] as Record<string, OrtTensor>;
      const benchStart = performance.now();
      readMs = await read();
      inBareStep = true;
      try {
        for (const past of runs.length % 2 ? (["own", "same"] as const) : (["same", "own"] as const))
          times[past] = (await bareStep(past === "same" ? feeds : undefined)).total;
      } finally {
        inBareStep = false;
      }
      benchMs = performance.now() - benchStart;
    }
    const start = performance.now();
    const out = await run(...args);
    const ms = performance.now() - start;
    runs.push({ start, bareOwnMs: times.own, bareSameMs: times.same, sessionMsBefore: sessionMs, ms, readMs, benchMs });
    sessionMs += ms;
    return out;
  }) as Session["run"];
  return { runs, stop: () => originals.forEach(({ session, run }) => (session.run = run)) };
}

/** One select() of a generation's cache: the rows it kept, and its time. */
interface Selection {
  rows: number[];
  ms: number;
}

/** The beam reorders of a beam row (the selections after the beams' expansion), timed (ms a step). */
interface ReorderOut {
  /** select() in the generation, leaving beams where they lie (HostKvCache's way). */
  generation_ms: Spread;
  /** The same selections replayed on caches of the same shape, that way and in rank order (the way before it). */
  replay_ms: Spread;
  replay_rank_order_ms: Spread;
  /** Rows a step copies that way (a row two beams continue), and rows a step moves in rank order. */
  copied_rows: number;
  moved_rows: number;
}

/** The host cache emu2's generation makes (HostKvCache.factory, as LlmStage's default), its select() calls recorded. */
function recordingCache(shape: KvCacheShape, selections: Selection[]): KvCacheFactory {
  const make = HostKvCache.factory(shape);
  return async (batch, maxLength) => {
    const cache = await make(batch, maxLength);
    const select = cache.select.bind(cache);
    cache.select = async (rows) => {
      const start = performance.now();
      await select(rows);
      selections.push({ rows: [...rows], ms: performance.now() - start });
    };
    return cache;
  };
}

/**
 * The reorder figures of a beam row from its recorded selections: the first (the expansion of each prompt into its
 * beams) is left out, as is the warm-up step's. The replay absorbs the prompt, and one token after each selection,
 * as the generation did, on synthetic values; the two ways take turns selection by selection.
 */
async function reorderFigures(
  shape: KvCacheShape,
  batch: number,
  context: number,
  selections: Selection[],
): Promise<ReorderOut> {
  const ort = await import("onnxruntime-node");
  const [expansion, ...steps] = selections;
  const maxLength = context + steps.length + 1;
  const caches = await Promise.all(
    [false, true].map((rankOrder) => HostKvCache.empty(shape, batch, maxLength, 0, rankOrder)),
  );
  const rows = (b: number, t: number) => {
    const outputs: Record<string, OrtTensor> = {};
    for (let layer = 0; layer < shape.layers; layer++) {
      for (const kind of ["key", "value"]) {
        const values = Float32Array.from({ length: b * shape.heads * t * shape.headDim }, (_, i) => (i % 1013) / 1013);
        outputs[`new_key_values.${layer}.${kind}`] = new ort.Tensor("float32", values, [
          b,
          shape.heads,
          t,
          shape.headDim,
        ]);
      }
    }
    return outputs;
  };
  const times = [[], []] as number[][];
  for (const cache of caches) {
    cache.absorb(rows(batch, context));
    await cache.select(expansion.rows);
  }
  const next = rows(expansion.rows.length, 1);
  for (const [k, { rows: kept }] of steps.entries()) {
    for (const [way, cache] of k % 2 ? [...caches.entries()].reverse() : [...caches.entries()]) {
      const start = performance.now();
      await cache.select(kept);
      times[way].push(performance.now() - start);
      cache.absorb(next);
    }
  }
  for (const cache of caches) cache.release();
  const timed = steps.slice(1);
  return {
    generation_ms: spread(timed.map((s) => s.ms)),
    replay_ms: spread(times[0].slice(1)),
    replay_rank_order_ms: spread(times[1].slice(1)),
    copied_rows: median(timed.map((s) => s.rows.length - new Set(s.rows).size)),
    moved_rows: median(timed.map((s) => s.rows.filter((row, i) => row !== i).length)),
  };
}

/**
 * The sessions of a decode step as Emu2.llm() opens them on the CPU, from the LLM graphs alone: the visual encoder
 * may still be building (bench/standin_package.py writes it last), and Emu2.open wants every file of the package.
 */
async function decodeSessions(weights: Weights) {
  const dir = packageOf(weights);
  const manifest = readManifest(join(dir, "manifest.yaml"));
  const shape = manifest.llm;
  const options = { ...DEFAULT_SESSION_OPTIONS, threads: THREADS };
  const open = (file: string) => createSession(join(dir, file), options);
  const decoder = await open(shape.decoder_file ?? "decoder.onnx");
  const lmHead = await open(shape.lm_head_file);
  // The embeddings as Emu2.llm() gets them: read from the graph's file when it is a plain lookup.
  const embedFile = join(dir, shape.embed_tokens_file);
  const embed = LookupTable.open(embedFile) ?? (await open(shape.embed_tokens_file));
  // The rows come from the file until the table's background read ends (seconds: this VM's page cache drops the
  // file): the rows measure decode after that, as any generation but the first seconds' sees it.
  if (embed instanceof LookupTable) await embed.whenRead();
  return { manifest, shape, open, decoder, lmHead, embed };
}

/**
 * One decode row: the bare loop, and emu2's generation when the row has one. `floorBytes`: what a step reads (the
 * weights and the row's KV cache), whose time at the bandwidth a probe just before the step measured is its floor.
 */
async function rowWorker(spec: RowSpec, rowIndex: number, floorBytes: number): Promise<Record<string, unknown>> {
  const loadStart = performance.now();
  const { manifest, shape, open, decoder, lmHead, embed } = await decodeSessions(spec.weights);
  const projectUp = await open(shape.project_up_file);
  const projectDown = await open(shape.project_down_file);
  const loadMs = performance.now() - loadStart;
  const rows = spec.batch * spec.beams;

  const bareStep = await bareDecodeLoop({ embed, decoder, lmHead }, shape, "float32", rows, spec.context);
  const read = await readProbe();
  const bare = { total: [] as number[], decoder: [] as number[], lm_head: [] as number[], floor: [] as number[] };
  const bareSteps = async (warmup: number, steps: number) => {
    for (let i = 0; i < warmup + steps; i++) {
      const readMs = await read();
      const times = await bareStep();
      if (i < warmup) continue;
      bare.total.push(times.total);
      bare.decoder.push(times.decoder);
      bare.lm_head.push(times.lmHead);
      bare.floor.push(floorMs(floorBytes, readMs));
    }
  };
  // Without a generation the bare loop takes all its samples at once.
  const bareBefore = spec.generate ? Math.ceil(BARE_STEPS / 2) : BARE_STEPS;
  await bareSteps(BARE_WARMUP, bareBefore);
  const result: Record<string, unknown> = { session_load_ms: loadMs };

  if (spec.generate) {
    const { runs, stop } = pairRuns(decoder, [lmHead], bareStep, read);
    const cacheShape = {
      layers: shape.num_layers,
      heads: shape.num_heads,
      headDim: shape.head_dim,
      dtype: manifest.dtype,
    };
    const selections: Selection[] = [];
    const llm = new LlmStage(
      { embedTokens: embed, projectUp, decoder, lmHead, projectDown },
      manifest,
      recordingCache(cacheShape, selections),
    );
    const prompts = Array.from({ length: spec.batch }, (_, b) => promptIds(spec.context, rowIndex * 10 + b));
    const settings: GenerationSettings = {
      ...PLAIN_GREEDY,
      maxNewTokens: NEW_TOKENS,
      // No early eos: every row does NEW_TOKENS steps on both sides.
      minNewTokens: NEW_TOKENS,
      numBeams: spec.beams,
    };
    const start = performance.now();
    const out = await llm.generateText(prompts, null, settings);
    const totalMs = performance.now() - start;
    stop();
    // emu2's step k: from decode run k to decode run k + 1, less what the bench ran between them (benchMs). The first
    // step after the prefill is warm-up (new shapes); the rest are the samples.
    const steps = runs.slice(3).map((next, i) => {
      const own = next.start - runs[i + 2].start - next.benchMs;
      const floor = floorMs(floorBytes, next.readMs);
      return { own, next, floor, sessions: next.sessionMsBefore - runs[i + 2].sessionMsBefore };
    });
    result.generation = {
      // The paired bare steps taken out (there are none before the prefill).
      total_ms: totalMs - runs.reduce((sum, run) => sum + run.benchMs, 0),
      prefill_ms: runs[0].ms,
      prefill_tokens: spec.batch * spec.context,
      per_token_ms: spread(steps.map((step) => step.own)),
      paired_bare_ms: spread(steps.map((step) => step.next.bareOwnMs)),
      overhead: spread(steps.map((step) => step.own / step.next.bareOwnMs)),
      paired_bare_same_past_ms: spread(steps.map((step) => step.next.bareSameMs)),
      overhead_same_past: spread(steps.map((step) => step.own / step.next.bareSameMs)),
      outside_runs: spread(steps.map((step) => (step.own - step.sessions) / step.own)),
      // The bench's own time around its probe and bare steps, taken out of emu2's periods with them.
      bench_gap_ms: spread(steps.map(({ next }) => next.benchMs - next.readMs - next.bareOwnMs - next.bareSameMs)),
      floor_ms: spread(steps.map((step) => step.floor)),
      floor_ratio: spread(steps.map((step) => step.floor / step.own)),
      ids: out.map((s) => s.ids),
    };
    if (spec.beams > 1) result.reorder = await reorderFigures(cacheShape, spec.batch, spec.context, selections);
    await bareSteps(0, BARE_STEPS - bareBefore);
  }
  result.bare = {
    total_ms: spread(bare.total),
    decoder_ms: spread(bare.decoder),
    lm_head_ms: spread(bare.lm_head),
    floor_ms: spread(bare.floor),
    floor_ratio: spread(bare.floor.map((ms, i) => ms / bare.total[i])),
  };
  result.rss_peak_kb = process.resourceUsage().maxRSS;
  return result;
}

/**
 * Bare loops stepped in turns, each round in the other order so that a drift within a round favours none; the
 * step times of each loop after the warm-up rounds.
 */
async function inTurns(loops: (() => Promise<number>)[], warmup: number, rounds: number): Promise<number[][]> {
  const steps = loops.map((): number[] => []);
  for (let round = 0; round < warmup + rounds; round++) {
    const order = [...loops.keys()];
    if (round % 2) order.reverse();
    for (const k of order) {
      const ms = await loops[k]();
      if (round >= warmup) steps[k].push(ms);
    }
  }
  return steps;
}

/**
 * The context figure of one package (CONTEXTS): its bare loop at both contexts, step by step in turns; then the
 * placement figure at the longer context (PLACEMENT_PASTS).
 */
async function contextWorker(weights: Weights): Promise<Record<string, unknown>> {
  const { shape, decoder, lmHead, embed } = await decodeSessions(weights);
  const loopAt = (context: number) => bareDecodeLoop({ embed, decoder, lmHead }, shape, "float32", 1, context);
  const stepOf = (loop: BareDecodeLoop) => async () => (await loop()).total;
  const loops = await Promise.all(CONTEXTS.map(loopAt));
  const [short, long] = await inTurns(loops.map(stepOf), CONTEXT_WARMUP, CONTEXT_ROUNDS);

  const pasts = [loops[1]];
  while (pasts.length < PLACEMENT_PASTS) pasts.push(await loopAt(CONTEXTS[1]));
  const placed = await inTurns([...pasts, pasts[0]].map(stepOf), CONTEXT_WARMUP, PLACEMENT_ROUNDS);
  const medians = placed.map(median);
  const separate = medians.slice(0, PLACEMENT_PASTS);
  return {
    contexts: CONTEXTS,
    short_ms: spread(short),
    long_ms: spread(long),
    ratio: spread(long.map((ms, i) => ms / short[i])),
    placement: {
      separate_pasts_ms: placed.slice(0, PLACEMENT_PASTS).map(spread),
      same_past_ms: spread(placed[PLACEMENT_PASTS]),
      separate_ratio: Math.max(...separate) / Math.min(...separate),
      same_ratio: medians[PLACEMENT_PASTS] / medians[0],
    },
    rss_peak_kb: process.resourceUsage().maxRSS,
  };
}

/** The visual encoder per image, then the LLM prefill of a prompt holding IMAGES images. */
async function imagesWorker(): Promise<Record<string, unknown>> {
  const model = Emu2.open(PACKAGE, { threads: THREADS });
  const { vision } = model.manifest;
  const encoderSession = await model.pkg.session("visual_encoder");
  const encoderSpans = timeRuns(encoderSession);
  const encoder = await model.visualEncoder();
  const s = vision.image_size;
  const features = [];
  const encodeMs: number[] = [];
  for (let i = 0; i < IMAGES + 1; i++) {
    const pixels = Float32Array.from({ length: 3 * s * s }, (_, j) => Math.sin(j * 0.001 + i));
    const start = performance.now();
    const f = await encoder.encodePixels(pixels, vision.n_query);
    // The first image is warm-up.
    if (i > 0) {
      encodeMs.push(performance.now() - start);
      features.push(f);
    }
  }
  const runMs = encoderSpans.slice(1).map(([a, b]) => b - a);
  const decoder = await model.pkg.session("decoder");
  const spans = timeRuns(decoder);
  const llm = await model.llm();
  const tokens = model.manifest.tokenizer.special_tokens;
  const imageRows = (): number[] => [
    tokens["[IMG]"],
    ...Array<number>(vision.n_query).fill(tokens["<image>"]),
    tokens["[/IMG]"],
  ];
  const prompt = [1, ...Array.from({ length: IMAGES }, imageRows).flat(), ...promptIds(16, 1000)];
  const all = new Float32Array(features.reduce((n, f) => n + f.data.length, 0));
  let at = 0;
  for (const f of features) {
    all.set(f.data, at);
    at += f.data.length;
  }
  const start = performance.now();
  const out = await llm.generateText(
    [prompt],
    { data: all, dims: [IMAGES, vision.n_query, vision.width] },
    { ...PLAIN_GREEDY, maxNewTokens: 1, minNewTokens: 1 },
  );
  return {
    encode_ms: spread(encodeMs),
    encoder_run_ms: spread(runMs),
    prompt_tokens: prompt.length,
    first_token_ms: performance.now() - start,
    prefill_ms: spans[0][1] - spans[0][0],
    first_token: out[0].ids[0],
    rss_peak_kb: process.resourceUsage().maxRSS,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The driver.

function meminfoGb(field: string): number {
  const line = readFileSync("/proc/meminfo", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  return line ? Number(line.split(/\s+/)[1]) / 2 ** 20 : 0;
}

function freeDiskGb(path: string): number {
  let dir = path;
  while (!existsSync(dir)) dir = dirname(dir);
  const s = statfsSync(dir);
  return (s.bavail * s.bsize) / 2 ** 30;
}

/** Stops with what is needed unless `dir`'s disk and the available memory hold what building `what` takes. */
function checkBuildRoom(what: string, dir: string, diskGb: number, memoryGb: number): void {
  const disk = freeDiskGb(dir);
  const memory = meminfoGb("MemAvailable");
  if (disk < diskGb || memory < memoryGb) {
    throw new BenchError(
      `building ${what} in ${dir} needs ${diskGb} GB of disk and ${memoryGb} GB of available memory; this machine ` +
        `has ${disk.toFixed(1)} GB and ${memory.toFixed(1)} GB (set EMU2_BENCH_DIR elsewhere)`,
    );
  }
}

/** Runs a bench Python script (`args`: the script, then its arguments), niced; its progress and errors on stderr. */
function runBenchPython(args: string[]): void {
  const r = spawnSync("nice", ["-n", "10", PYTHON, ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new BenchError(`${args.join(" ")} failed (its error is above)`);
}

/** Runs bench/standin_package.py with `args`. */
function runStandinExport(args: string[]): void {
  runBenchPython(["bench/standin_package.py", ...args]);
}

/** Exports bench:quantized's one-layer stand-in of `variant` again when an earlier exporter wrote it. */
function refreshLayerStandin(variant: string): void {
  runBenchPython(["bench/standin_decoder.py", join(DIR, variant), "--variant", variant]);
}

/**
 * Builds what is missing of the stand-in, the visual encoder only when `vision` (its trace is the long part), and
 * exports its decoder again when an earlier exporter wrote it (bench/standin_package.py decides, in seconds).
 */
function ensureStandin(vision: boolean): void {
  if (!existsSync(join(PACKAGE, "manifest.yaml")) || (vision && !existsSync(join(PACKAGE, "visual_encoder.onnx")))) {
    checkBuildRoom("the real-width stand-in", PACKAGE, BUILD_DISK_GB, BUILD_MEMORY_GB);
    process.stderr.write(
      `building the real-width stand-in in ${PACKAGE} (6.6 GB; minutes to an hour: the visual encoder's trace runs ` +
        "the tower on a 448 px image in PyTorch)\n",
    );
  }
  runStandinExport(vision ? [PACKAGE] : [PACKAGE, "--llm-only"]);
}

/**
 * Builds the int8 package of the stand-in's weights when an int8 row needs it: bench/standin_package.py --int8 returns
 * at once when the package is there with its current quantization settings, and builds it again otherwise.
 */
function ensureInt8Standin(): void {
  if (!existsSync(join(INT8_PACKAGE, "manifest.yaml"))) {
    checkBuildRoom("the int8 stand-in", INT8_PACKAGE, BUILD_INT8_DISK_GB, BUILD_INT8_MEMORY_GB);
    process.stderr.write(`building the int8 stand-in in ${INT8_PACKAGE} (2.3 GB, minutes)\n`);
  }
  runStandinExport([INT8_PACKAGE, "--int8"]);
}

function child(args: string[], what: string, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const memory = meminfoGb("MemAvailable");
  if (memory < RUN_MEMORY_GB)
    throw new BenchError(`${what} needs about ${RUN_MEMORY_GB} GB of available memory; ${memory.toFixed(1)} GB is`);
  process.stderr.write(`running ${what}...\n`);
  const r = spawnSync(args[0], args.slice(1), { cwd: ROOT, env, encoding: "utf8", maxBuffer: 1 << 26 });
  const last = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  let reply: Record<string, unknown> | undefined;
  try {
    reply = JSON.parse(last) as Record<string, unknown>;
  } catch {
    reply = undefined;
  }
  if (r.status !== 0 || !reply || reply.error) {
    const why = (reply?.error as string | undefined) ?? (r.stderr ?? "").trim().split("\n").pop() ?? `exit ${r.status}`;
    throw new BenchError(`${what}: ${why}`);
  }
  return reply;
}

const tsWorker = (job: unknown, what: string) =>
  child([process.execPath, "--import", "tsx", "bench/real_width.ts", "--worker", JSON.stringify(job)], what);
const torchWorker = (job: unknown, what: string) =>
  child([PYTHON, "bench/peer_torch.py", JSON.stringify(job)], what, torchEnv());

function fileBytes(path: string): number {
  return statSync(path).size + (existsSync(`${path}_data`) ? statSync(`${path}_data`).size : 0);
}

interface Costs {
  /** Weight bytes a decode step reads: decoder + lm_head (+ one embedding row per token, negligible). */
  decodeWeightBytes: number;
  decoderBytes: number;
  lmHeadBytes: number;
  visionBytes: number;
  decoderParams: number;
  layers: number;
  hidden: number;
  heads: number;
  headDim: number;
  vocab: number;
  visionLayerParams: number;
  visionTokens: number;
  visionWidth: number;
  visionLayers: number;
  eos: number;
  pad: number;
}

function costs(dir: string): Costs {
  const m = readManifest(join(dir, "manifest.yaml"));
  const h = m.llm.hidden_size;
  const i = m.llm.intermediate_size;
  const w = m.vision.width;
  const mlp = 15360;
  const decoderBytes = fileBytes(join(dir, m.llm.decoder_file ?? "decoder.onnx"));
  const lmHeadBytes = fileBytes(join(dir, m.llm.lm_head_file));
  return {
    decodeWeightBytes: decoderBytes + lmHeadBytes,
    decoderBytes,
    lmHeadBytes,
    // Its weights: width x (4 width + 2 MLP) per layer, float32 (the graph file may not be built yet).
    visionBytes: m.vision.layers * (4 * w * w + 2 * w * mlp) * 4,
    decoderParams: m.llm.num_layers * (4 * h * h + 3 * h * i),
    layers: m.llm.num_layers,
    hidden: h,
    heads: m.llm.num_heads,
    headDim: m.llm.head_dim,
    vocab: m.tokenizer.vocab_size,
    visionLayerParams: 4 * w * w + 2 * w * mlp,
    visionTokens: (m.vision.image_size / m.vision.patch_size) ** 2 + 1,
    visionWidth: w,
    visionLayers: m.vision.layers,
    eos: m.tokenizer.eos_token_id,
    pad: m.tokenizer.pad_token_id,
  };
}

/** Bytes of the past a decode step reads: K and V of every layer for every row. */
function kvBytes(c: Costs, rows: number, context: number): number {
  return 2 * c.layers * rows * c.heads * context * c.headDim * 4;
}

/** FLOPs of a prefill of `tokens` tokens per row: the decoder's matmuls, causal attention, lm_head on the last. */
function prefillFlops(c: Costs, rows: number, tokens: number): number {
  return rows * (2 * c.decoderParams * tokens + c.layers * 2 * tokens * tokens * c.hidden + 2 * c.hidden * c.vocab);
}

function visionLayerFlops(c: Costs): number {
  return 2 * c.visionLayerParams * c.visionTokens + 4 * c.visionTokens * c.visionTokens * c.visionWidth;
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const fms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const range = (s: Spread) => `${fms(s.median)} (${fms(s.min)}-${fms(s.max)})`;

function sameIds(what: string, ts: number[][], torch: number[][]): void {
  if (JSON.stringify(ts) !== JSON.stringify(torch))
    throw new BenchError(
      `${what}: TS generated ${JSON.stringify(ts)} but PyTorch ${JSON.stringify(torch)} from the same prompt and ` +
        `weights: the runtimes disagree, timings would compare different work`,
    );
}

async function main(): Promise<void> {
  const at = process.argv.indexOf("--worker");
  if (at >= 0) {
    const job = JSON.parse(process.argv[at + 1]) as {
      kind: string;
      spec?: RowSpec;
      index?: number;
      weights?: Weights;
      floorBytes?: number;
      shape?: { heads: number; headDim: number; layers: number; context: number };
    };
    try {
      const out =
        job.kind === "limits"
          ? await limitsWorker()
          : job.kind === "images"
            ? await imagesWorker()
            : job.kind === "context"
              ? await contextWorker(job.weights ?? "float32")
              : job.kind === "attention" && job.shape
                ? await attentionWorker(ATTENTION_DIR, job.shape, LIMIT_SESSION_OPTIONS)
                : await rowWorker(job.spec as RowSpec, job.index ?? 0, job.floorBytes ?? NaN);
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ error: (err as Error).message.split("\n")[0] })}\n`);
      process.exit(1);
    }
    return;
  }

  const started = new Date();
  const load = [loadavg()];
  const args = process.argv.slice(2);
  const withoutTorch = args.includes("--without-pytorch");
  const maxPrefillAt = args.indexOf("--max-prefill");
  const maxPrefill = maxPrefillAt >= 0 ? Number(args[maxPrefillAt + 1]) : Infinity;
  if (maxPrefillAt >= 0 && !(maxPrefill > 0))
    throw new BenchError(`--max-prefill ${args[maxPrefillAt + 1] ?? ""}: expected a number of tokens`);
  const wanted = args.filter((a, i) => !a.startsWith("--") && (maxPrefillAt < 0 || i !== maxPrefillAt + 1));
  const unknown = args.find((a) => a.startsWith("--") && a !== "--without-pytorch" && a !== "--max-prefill");
  if (unknown) throw new BenchError(`unknown option ${unknown}: expected --without-pytorch, --max-prefill <tokens>`);
  // A name selects the rows that start with it ("beam5 b1": every context; "int8": the int8 rows).
  const rows = wanted.length ? ROWS.filter((r) => wanted.some((w) => r.name.startsWith(w))) : ROWS;
  const runImages = wanted.length === 0 || wanted.includes("images");
  const runLayers = wanted.length === 0 || wanted.includes("layers");
  const runContext = wanted.length === 0 || wanted.includes("context");
  const runAttention = wanted.length === 0 || wanted.includes("attention");
  if (rows.length + Number(runImages) + Number(runLayers) + Number(runContext) + Number(runAttention) === 0)
    throw new BenchError(
      `nothing matches ${wanted.join(", ")}: rows are ${ROWS.map((r) => r.name).join(", ")}, images, layers, context, attention`,
    );
  ensureStandin(runImages);
  const int8Rows = runContext || rows.some((r) => r.weights === "int8");
  if (int8Rows) ensureInt8Standin();
  const c = costs(PACKAGE);
  const c8 = int8Rows ? costs(INT8_PACKAGE) : undefined;
  const costsOf = (weights: Weights): Costs => (weights === "int8" && c8 ? c8 : c);
  const ort = await import("onnxruntime-node");
  const probe = torchWorker({ kind: "probe" }, "PyTorch probe");
  process.stderr.write(`PyTorch BLAS: ${String(probe.blas)}\n`);
  if (!String(probe.blas).startsWith("OpenBLAS")) process.stderr.write(`warning: ${NETLIB_WARNING}\n`);

  const limits = tsWorker({ kind: "limits" }, "limits (ONNX Runtime)") as {
    bandwidth_gb_s: number;
    gemm_gflops: number;
    read_ms: Spread;
    gemm_ms: Spread;
  };
  const torchLimits = withoutTorch
    ? undefined
    : (torchWorker({ kind: "limits", threads: THREADS, ...GEMM, read_floats: READ_FLOATS }, "limits (PyTorch)") as {
        bandwidth_gb_s: number;
        gemm_gflops: number;
      });
  const bandwidth = limits.bandwidth_gb_s * 1e9;
  const peak = limits.gemm_gflops * 1e9;

  type RowOut = {
    bare: { total_ms: Spread; decoder_ms: Spread; lm_head_ms: Spread; floor_ms: Spread; floor_ratio: Spread };
    generation?: {
      per_token_ms: Spread;
      paired_bare_ms: Spread;
      overhead: Spread;
      paired_bare_same_past_ms: Spread;
      overhead_same_past: Spread;
      outside_runs: Spread;
      floor_ms: Spread;
      floor_ratio: Spread;
      prefill_ms: number;
      prefill_tokens: number;
      ids: number[][];
    };
    reorder?: ReorderOut;
    rss_peak_kb: number;
  };
  // Every finished row is written at once (bench/results), so that a long run stopped early keeps what it measured.
  let images: ImagesOut | undefined;
  const quantized: LayerOut[] = [];
  const contextRatios: (ContextOut & { weights: Weights })[] = [];
  let attention: AttentionOut | undefined;
  // Chosen once, at the first report: the run's partial reports and its final one go to the same file.
  let resultsFile: string | undefined;
  const report = (final: boolean): void => {
    // ---- tables
    const mb = (kb: number) => (kb / 1024).toFixed(0);
    const lines: string[] = [];
    lines.push(
      `real-width stand-in: LLM ${c.layers} layers of hidden ${c.hidden} (${c.heads}x${c.headDim}), vocabulary ${c.vocab}; ` +
        `vision ${c.visionLayers} layers of width ${c.visionWidth}, ${c.visionTokens} tokens; ${THREADS} intra-op threads; ` +
        `load average ${load[0].map(f2).join(" ")} at start, ${loadavg().map(f2).join(" ")} now`,
    );
    lines.push(
      `limits: read bandwidth ${f1(limits.bandwidth_gb_s)} GB/s (ORT ReduceSum over 1 GiB; PyTorch sum ${torchLimits ? f1(torchLimits.bandwidth_gb_s) : "-"}); ` +
        `GEMM ${GEMM.m}x${GEMM.k}@${GEMM.k}x${GEMM.n}: ORT ${f1(limits.gemm_gflops)} GFLOP/s, PyTorch ${torchLimits ? f1(torchLimits.gemm_gflops) : "-"} GFLOP/s`,
    );
    lines.push("");
    lines.push(
      "| decode row | rows | floor ms | bare loop ms/token | emu2 ms/token (min-max) | floor / emu2 | emu2 / bare, own past | emu2 / bare, same past | emu2 outside runs | PyTorch ms/token | emu2 / PyTorch | peak RSS MB |",
    );
    lines.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    const decodeRows = rowResults.map(({ spec, ts, torch }) => {
      const rows = spec.batch * spec.beams;
      const g = ts.generation;
      // The floor at each step's own probe (rowWorker); floor / emu2 is the median of the steps' ratios.
      const floor = g ? g.floor_ms : ts.bare.floor_ms;
      const floorRatio = g ? g.floor_ratio : ts.bare.floor_ratio;
      const torchStep = torch ? (torch.per_token_ms as Spread) : undefined;
      lines.push(
        `| ${spec.name} | ${rows} | ${fms(floor.median)} | ${range(ts.bare.total_ms)} | ${g ? range(g.per_token_ms) : "-"} | ` +
          `${f2(floorRatio.median)}${g ? "" : " (bare)"} | ${g ? f2(g.overhead.median) : "-"} | ` +
          `${g ? f2(g.overhead_same_past.median) : "-"} | ${g ? pct(g.outside_runs.median) : "-"} | ` +
          `${torchStep ? range(torchStep) : "-"} | ${g && torchStep ? f2(g.per_token_ms.median / torchStep.median) : "-"} | ${mb(ts.rss_peak_kb)} |`,
      );
      return { spec, floor_ms: floor.median, ts, torch };
    });
    for (const { spec, ts } of rowResults) {
      const r = ts.reorder;
      if (!r) continue;
      lines.push("");
      lines.push(
        `beam reorder, ${spec.name}: ${range(r.generation_ms)} ms a step in the generation, beams left where they lie ` +
          `(${f1(r.copied_rows)} rows copied a step); replayed on the same selections ${range(r.replay_ms)} ms, ` +
          `and ${range(r.replay_rank_order_ms)} ms moving rows into rank order (${f1(r.moved_rows)} rows a step)`,
      );
    }
    lines.push("");
    lines.push(
      "| prefill | tokens | floor ms (FLOPs / GEMM peak) | emu2 ms | tokens/s | floor / emu2 | PyTorch ms | peak RSS MB |",
    );
    lines.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const { spec, ts, torch } of rowResults) {
      if (!ts.generation || spec.beams !== 1) continue;
      const g = ts.generation;
      const floorMs = (prefillFlops(c, spec.batch, spec.context) / peak) * 1000;
      const torchPrefill = torch ? fms(torch.prefill_ms as number) : "-";
      lines.push(
        `| ${spec.weights === "int8" ? "int8 " : ""}${spec.batch} x ${spec.context}-token prompt | ${g.prefill_tokens} | ${fms(floorMs)} | ${fms(g.prefill_ms)} | ` +
          `${f1((g.prefill_tokens / g.prefill_ms) * 1000)} | ${f2(floorMs / g.prefill_ms)} | ${torchPrefill} | ${mb(ts.rss_peak_kb)} |`,
      );
    }
    const layerFloor = (visionLayerFlops(c) / peak) * 1000;
    const perLayer = images ? images.encode_ms.median / c.visionLayers : undefined;
    if (images) {
      const imageFloor = (prefillFlops(c, 1, images.prompt_tokens) / peak) * 1000;
      lines.push(
        `| ${IMAGES} images (${images.prompt_tokens}-token prompt) | ${images.prompt_tokens} | ${fms(imageFloor)} | ${fms(images.prefill_ms)} | ` +
          `${f1((images.prompt_tokens / images.prefill_ms) * 1000)} | ${f2(imageFloor / images.prefill_ms)} | - | ${mb(images.rss_peak_kb)} |`,
      );
      lines.push("");
      lines.push(
        `visual encoder: ${range(images.encode_ms)} ms per image (${c.visionLayers} layers, patch embedding and pooling included; ` +
          `bare session.run ${range(images.encoder_run_ms)}), ${fms(images.encode_ms.median / c.visionLayers)} ms per image per layer; ` +
          `floor ${fms(layerFloor)} ms per layer (FLOPs / GEMM peak), floor / emu2 ${f2((layerFloor * c.visionLayers) / images.encode_ms.median)}`,
      );
    } else {
      lines.push("");
      lines.push("visual encoder: not selected");
    }
    for (const r of contextRatios) {
      const [short, long] = r.contexts;
      lines.push(
        `context ${long} / ${short}, ${r.weights}: the bare loop ${range(r.long_ms)} against ${range(r.short_ms)} ms, ` +
          `step by step in turns; ratio ${f2(r.ratio.median)} (${f2(r.ratio.min)}-${f2(r.ratio.max)}, median of ${r.ratio.n} rounds)`,
      );
      const p = r.placement;
      lines.push(
        `placement at ${long} tokens, ${r.weights}: the bare loop on ${p.separate_pasts_ms.length} separately allocated pasts ` +
          `${p.separate_pasts_ms.map((ms) => fms(ms.median)).join(", ")} ms, slowest / fastest ${f3(p.separate_ratio)}; ` +
          `the first past again ${fms(p.same_past_ms.median)} ms, ${f3(p.same_ratio)} (medians of ${p.same_past_ms.n} rounds in turns)`,
      );
    }
    if (attention) {
      const a = attention;
      lines.push("");
      lines.push(
        `| attention of one step, ${a.context}-token past, ${a.heads}x${a.head_dim}, ${a.layers} layers (${(a.bytes / 1e6).toFixed(0)} MB) | ms | GB/s | read / form | max abs diff from the decoder's |`,
      );
      lines.push("| --- | ---: | ---: | ---: | ---: |");
      const names: Record<string, string> = {
        decoder: "the package decoder's form (MatMuls, the past where it lies)",
        mha: "com.microsoft MultiHeadAttention",
        gqa: "com.microsoft GroupQueryAttention, shared past/present buffer",
        read: "read probe (ReduceSum over the same bytes)",
      };
      for (const [form, f] of Object.entries(a.forms)) {
        const diff = a.max_abs_diff[form];
        lines.push(
          `| ${names[form] ?? form} | ${range(f.ms)} | ${f1(f.gb_s)} | ${f2(f.read_ratio)} | ${diff === undefined ? "-" : diff.toExponential(1)} |`,
        );
      }
    }
    if (quantized.length) {
      lines.push("");
      lines.push(
        "| one stand-in layer (bench/quantized.ts), b1, 128-token past | weight MB | ms/token | floor ms | floor / ms | peak RSS MB |",
      );
      lines.push("| --- | ---: | ---: | ---: | ---: | ---: |");
      for (const q of quantized) {
        const layerFloorMs = (q.weight_bytes / bandwidth) * 1000;
        lines.push(
          `| ${q.variant} | ${(q.weight_bytes / 1e6).toFixed(0)} | ${fms(q.ms_per_token)} | ${fms(layerFloorMs)} | ${f2(layerFloorMs / q.ms_per_token)} | ${mb(q.rss_peak_kb)} |`,
        );
      }
    }

    // ---- prediction for Emu2-Chat (60 LLM layers, 64 vision layers)
    const base = rowResults.find((r) => r.spec.name === "greedy b1 ctx64");
    const prediction: Record<string, unknown>[] = [];
    if (base) {
      const layerMs = base.ts.bare.decoder_ms.median / c.layers;
      const headMs = base.ts.bare.lm_head_ms.median;
      const fullLayers = 60;
      const visionFullLayers = 64;
      const layerParams = c.decoderParams / c.layers;
      // embed_tokens and lm_head, and the visual encoder, at the package's float type.
      const otherParams = 2 * c.vocab * c.hidden + visionFullLayers * (c.visionBytes / 4 / c.visionLayers);
      const kvValues = kvBytes({ ...c, layers: fullLayers }, 1, 2048) / 4;
      const q = Object.fromEntries(quantized.map((v) => [v.variant, v]));
      // [name, ms per layer, lm_head ms, bytes per decoder-layer parameter, bytes per other value, how]
      const variants: [string, number, number, number, number, string][] = [
        ["float32", layerMs, headMs, 4, 4, "measured per layer (2-layer stand-in)"],
        [
          "float16",
          layerMs / 2,
          headMs / 2,
          2,
          2,
          "float32 per layer x 1/2 (half the bytes): an estimate, ORT's CPU provider has no fast float16 MatMul",
        ],
      ];
      // int8 from its own 2-layer stand-in when its greedy row ran; otherwise, as int4, from the one-layer ratio.
      const int8Base = rowResults.find((r) => r.spec.name === "int8 greedy b1 ctx64");
      if (int8Base && c8)
        variants.push([
          "int8",
          int8Base.ts.bare.decoder_ms.median / c8.layers,
          int8Base.ts.bare.lm_head_ms.median,
          c8.decoderBytes / c8.decoderParams,
          2,
          "measured per layer (2-layer int8 stand-in, lm_head int8); the rest float16",
        ]);
      for (const [name, label] of [
        ["int8-acc4", "int8"],
        ["int4-acc4", "int4"],
      ] as const) {
        const v = q[name];
        const f = q.float32;
        if (v && f && !variants.some(([n]) => n === label))
          variants.push([
            label,
            layerMs * (v.ms_per_token / f.ms_per_token),
            headMs / 2,
            (4 * v.weight_bytes) / f.weight_bytes,
            2,
            `float32 per layer x (${name} / float32) of bench/quantized.ts's one-layer stand-ins; the rest float16`,
          ]);
      }
      lines.push("");
      lines.push(
        "PREDICTION for Emu2-Chat (60 LLM layers, 64 vision layers), batch 1, greedy, from the per-layer figures above (not measured on the real model):",
      );
      lines.push("| weights | s/token | s/image (encoder) | memory GB (weights + 2,048-token KV) | how |");
      lines.push("| --- | ---: | ---: | ---: | --- |");
      for (const [name, ms, headVariantMs, layerBpp, otherBpp, how] of variants) {
        const tokenS = (fullLayers * ms + headVariantMs) / 1000;
        // The encoder is compute-bound (FLOPs / GEMM peak): its float32 figure for every weight type.
        const imageS = perLayer === undefined ? undefined : (visionFullLayers * perLayer) / 1000;
        const memory = (fullLayers * layerParams * layerBpp + (otherParams + kvValues) * otherBpp) / 1e9;
        lines.push(`| ${name} | ${f2(tokenS)} | ${imageS === undefined ? "-" : f1(imageS)} | ${f1(memory)} | ${how} |`);
        prediction.push({ weights: name, s_per_token: tokenS, s_per_image: imageS, memory_gb: memory, how });
      }
    }
    const table = lines.join("\n");
    if (final) process.stdout.write(`${table}\n`);

    const machine = {
      host: hostname(),
      cpu: cpus()[0]?.model ?? "?",
      cores: availableParallelism(),
      memory_gb: +(totalmem() / 2 ** 30).toFixed(1),
      os: release(),
      node: process.version,
      onnxruntime_node: ort.env.versions.common,
      ...probe,
    };
    resultsFile ??= freeResultsFile(machine.host, started);
    writeFileSync(
      resultsFile,
      `${JSON.stringify(
        {
          date: started.toISOString(),
          machine,
          threads: THREADS,
          load_average: { start: load[0], at_write: loadavg() },
          standin: { package: PACKAGE, ...c },
          standin_int8: c8 ? { package: INT8_PACKAGE, ...c8 } : undefined,
          limits: { onnxruntime: limits, pytorch: torchLimits },
          decode: decodeRows,
          images,
          one_layer: quantized,
          context: contextRatios,
          attention,
          prediction,
          table,
          complete: final,
          wall_s: (Date.now() - started.getTime()) / 1000,
        },
        null,
        1,
      )}\n`,
    );
    if (final) process.stderr.write(`wrote ${resultsFile}\n`);
  };
  const rowResults: { spec: RowSpec; ts: RowOut; torch?: Record<string, unknown> }[] = [];
  for (const chosen of rows) {
    const index = ROWS.indexOf(chosen);
    const spec = { ...chosen, generate: chosen.generate && chosen.batch * chosen.context <= maxPrefill };
    const rc = costsOf(spec.weights);
    const floorBytes = rc.decodeWeightBytes + kvBytes(rc, spec.batch * spec.beams, spec.context);
    const ts = tsWorker({ kind: "row", spec, index, floorBytes }, `row ${spec.name}`) as unknown as RowOut;
    let torch: Record<string, unknown> | undefined;
    if (spec.torch && ts.generation && !withoutTorch) {
      torch = torchWorker(
        {
          kind: "standin_llm",
          threads: THREADS,
          ids: promptIds(spec.context, index * 10),
          num_beams: spec.beams,
          new_tokens: NEW_TOKENS,
          eos_token_id: c.eos,
          pad_token_id: c.pad,
        },
        `PyTorch ${spec.name}`,
      );
      sameIds(spec.name, ts.generation.ids, [torch.ids as number[]]);
    }
    rowResults.push({ spec, ts, torch });
    report(false);
  }
  if (runContext) {
    for (const weights of ["float32", "int8"] as const) {
      const out = tsWorker({ kind: "context", weights }, `context ${CONTEXTS.join(" / ")} in turns, ${weights}`);
      contextRatios.push({ weights, ...(out as unknown as ContextOut) });
      report(false);
    }
  }
  if (runAttention) {
    runBenchPython([
      "bench/attention_forms.py",
      ATTENTION_DIR,
      "--heads",
      String(c.heads),
      "--head-dim",
      String(c.headDim),
    ]);
    const shape = { heads: c.heads, headDim: c.headDim, layers: c.layers, context: CONTEXTS[1] };
    attention = tsWorker({ kind: "attention", shape }, "attention forms") as unknown as AttentionOut;
    const disagree = Object.entries(attention.max_abs_diff).find(([, diff]) => !(diff <= ATTENTION_AGREEMENT));
    if (disagree)
      throw new BenchError(
        `attention: ${disagree[0]} differs from the decoder's form by ${disagree[1]} (more than ${ATTENTION_AGREEMENT}): the forms compute different things`,
      );
    report(false);
  }
  if (runImages) {
    images = tsWorker({ kind: "images" }, `visual encoder and ${IMAGES}-image prefill`) as unknown as ImagesOut;
    report(false);
  }
  for (const variant of ["float32", "int8-acc4", "int4-acc4", "int8", "int4"]) {
    if (!runLayers || !existsSync(join(DIR, variant, "decoder.onnx"))) continue;
    // bench:quantized built it; exported again if an earlier exporter wrote it.
    refreshLayerStandin(variant);
    const figures = child(
      [process.execPath, "--import", "tsx", "bench/quantized.ts", "--worker", variant],
      `one ${variant} layer`,
    );
    quantized.push({ variant, ...(figures as unknown as Omit<LayerOut, "variant">) });
    report(false);
  }

  report(true);
}

main().catch((err: unknown) => {
  if (err instanceof BenchError) {
    console.error(`bench: ${err.message}`);
    process.exit(1);
  }
  throw err;
});
