// `npm run bench:quantized`: decode time per token and peak memory of one LLaMA-33B-width decoder layer (Emu2's LLM
// width) stored as float32, int8 and int4 (MatMulNBits), against the memory-bandwidth floor: at batch 1 a decode step
// must read every weight byte once, so weight bytes / measured read bandwidth is the least time a step can take.
//
// The stand-in (random weights, exported by the package exporter, bench/standin_decoder.py) lives outside git, in
// $EMU2_BENCH_DIR or ~/.cache/emu2-bench, and is built on first use (minutes, about 5 GB of memory while exporting).
// Each variant runs in a process of its own so that its peak resident set is its own. The bandwidth is measured in
// the same runtime: ONNX Runtime's ReduceSum over a 1 GiB float32 vector (memory-bound, every byte read once).
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { median } from "./stats.js";

const DIR = process.env.EMU2_BENCH_DIR ?? join(homedir(), ".cache", "emu2-bench");
// -acc4: MatMulNBits accuracy_level 4 (the CPU quantizes activations to int8 per block); the others use level 0.
const VARIANTS = ["float32", "int8", "int8-acc4", "int4", "int4-acc4"] as const;
const HIDDEN = 6656;
const HEADS = 52;
const HEAD_DIM = 128;
const PAST = 128;
const WARMUP = 3;
const STEPS = 15;
const THREADS = Number(process.env.EMU2_BENCH_THREADS ?? 0);

interface VariantFigures {
  variant: string;
  layers: number;
  weight_bytes: number;
  ms_per_token: number;
  samples_ms: number[];
  rss_peak_kb: number;
}

function weightBytes(dir: string): number {
  const graph = join(dir, "decoder.onnx");
  const data = `${graph}_data`;
  return statSync(graph).size + (existsSync(data) ? statSync(data).size : 0);
}

async function runVariant(variant: string): Promise<VariantFigures> {
  const ort = await import("onnxruntime-node");
  const dir = join(DIR, variant);
  const session = await ort.InferenceSession.create(join(dir, "decoder.onnx"), {
    intraOpNumThreads: THREADS,
    executionProviders: ["cpu"],
  });
  const layers = session.inputNames.filter((n) => n.endsWith(".key")).length;
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    inputs_embeds: new ort.Tensor(
      "float32",
      Float32Array.from({ length: HIDDEN }, (_, i) => Math.sin(i)),
      [1, 1, HIDDEN],
    ),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(PAST + 1).fill(1n), [1, PAST + 1]),
    position_ids: new ort.Tensor("int64", BigInt64Array.from([BigInt(PAST)]), [1, 1]),
  };
  for (const name of session.inputNames.filter((n) => n.startsWith("past_key_values."))) {
    feeds[name] = new ort.Tensor(
      "float32",
      Float32Array.from({ length: HEADS * PAST * HEAD_DIM }, (_, i) => Math.cos(i) * 0.1),
      [1, HEADS, PAST, HEAD_DIM],
    );
  }
  const samples: number[] = [];
  for (let i = 0; i < WARMUP + STEPS; i++) {
    const start = performance.now();
    await session.run(feeds);
    if (i >= WARMUP) samples.push(performance.now() - start);
  }
  return {
    variant,
    layers,
    weight_bytes: weightBytes(dir),
    ms_per_token: median(samples),
    samples_ms: samples,
    rss_peak_kb: process.resourceUsage().maxRSS,
  };
}

async function readBandwidth(): Promise<number> {
  const ort = await import("onnxruntime-node");
  const session = await ort.InferenceSession.create(join(DIR, "read.onnx"), {
    intraOpNumThreads: THREADS,
    executionProviders: ["cpu"],
  });
  const n = 1 << 28;
  const x = new ort.Tensor("float32", new Float32Array(n).fill(1), [n]);
  const samples: number[] = [];
  for (let i = 0; i < 7; i++) {
    const start = performance.now();
    await session.run({ x });
    if (i >= 2) samples.push(performance.now() - start);
  }
  return (n * 4) / (median(samples) / 1000);
}

function build(args: string[]): void {
  const r = spawnSync("nice", ["-n", "10", "/usr/bin/python3", "bench/standin_decoder.py", ...args], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (r.status !== 0) throw new Error(`bench/standin_decoder.py ${args.join(" ")} failed`);
}

function child(mode: string): unknown {
  const r = spawnSync(process.execPath, ["--import", "tsx", "bench/quantized.ts", "--worker", mode], {
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`worker ${mode} failed: ${r.stderr.trim().split("\n").pop()}`);
  return JSON.parse(r.stdout);
}

async function main(): Promise<void> {
  const at = process.argv.indexOf("--worker");
  if (at >= 0) {
    const mode = process.argv[at + 1];
    process.stdout.write(
      JSON.stringify(mode === "bandwidth" ? { bytes_per_s: await readBandwidth() } : await runVariant(mode)),
    );
    return;
  }
  if (!existsSync(join(DIR, "read.onnx"))) build([DIR, "--bandwidth"]);
  for (const variant of VARIANTS) {
    if (!existsSync(join(DIR, variant, "decoder.onnx")))
      process.stderr.write(`building the ${variant} stand-in in ${join(DIR, variant)} (minutes)\n`);
    // Also when it is there: bench/standin_decoder.py keeps a decoder of the exporter's current form (in seconds)
    // and exports again one an earlier exporter wrote.
    build([join(DIR, variant), "--variant", variant]);
  }
  const { bytes_per_s: bandwidth } = child("bandwidth") as { bytes_per_s: number };
  const rows = VARIANTS.map((v) => child(v) as VariantFigures);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
  const lines = [
    `decoder stand-in: ${rows[0].layers} layer(s) of width ${HIDDEN} (LLaMA-33B), batch 1, one new token on a ${PAST}-token past, CPU, ${THREADS || "all"} threads`,
    `read bandwidth (ReduceSum over 1 GiB): ${(bandwidth / 1e9).toFixed(1)} GB/s`,
    "",
    "| weights | bytes (MB) | decode ms/token (median) | floor ms (bytes / bandwidth) | ms / floor | peak RSS (MB) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) => {
      const floor = (r.weight_bytes / bandwidth) * 1000;
      return `| ${r.variant} | ${mb(r.weight_bytes)} | ${r.ms_per_token.toFixed(1)} | ${floor.toFixed(1)} | ${(r.ms_per_token / floor).toFixed(2)} | ${mb(r.rss_peak_kb * 1024)} |`;
    }),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
