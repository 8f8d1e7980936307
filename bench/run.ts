// `npm run bench`: emu2 (TypeScript, onnxruntime-node) against its peer, the PyTorch reference in python/emu2ref
// (the stand-in for the Python release), on the same tiny model, inputs and settings, in the same run.
//
// Each stage runs each side in a fresh process of its own (bench/ts_worker.ts, bench/peer_torch.py), one after the
// other, so that the peak resident set printed for a side is that side's alone and the two never share the cores.
// Times are medians after warm-up runs. Before timing is trusted, the outputs of both sides are compared: timings of
// different work would be meaningless, so a stage whose outputs disagree stops the bench.
//
// A stage is an entry of STAGES: the files it needs (with how to make them), and a run that hands the same job to
// both sides and turns their figures into rows. A new stage adds an entry here, a case in ts_worker.ts and a job in
// peer_torch.py.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, platform, arch, hostname, release, tmpdir, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type {
  DiffusionJob,
  FewshotFigures,
  FewshotJob,
  LlmJob,
  PreprocessFigures,
  ProcessFigures,
  PreprocessJob,
  TorchDiffusionFigures,
  TorchVisualEncoderFigures,
  TorchLlmFigures,
  TsDiffusionFigures,
  TsLlmFigures,
  TsVisualEncoderFigures,
  VisualEncoderJob,
  WorkerJob,
} from "./jobs.js";
import { fillNormals } from "../src/diffusion/noise.js";
import { readManifest, type Manifest } from "../src/model/manifest.js";
import { Emu2Error } from "../src/util/errors.js";
import { loadImage } from "../src/vision/image.js";
import { preprocessImage } from "../src/vision/preprocess.js";
import { freeResultsFile } from "./results.js";
import { absDiffs } from "./stats.js";
import { NETLIB_WARNING, torchEnv } from "./torch_env.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const PYTHON = "/usr/bin/python3";
const BUILD_HINT = `run ${PYTHON} python/build_tiny_packages.py`;
/** The package's name in python/build_tiny_packages.py, whose seeds and sizes the torch side rebuilds from. */
const PACKAGE_NAME = "emu2-tiny";
const PACKAGE_DIR = `fixtures/models/${PACKAGE_NAME}`;
/** The image the visual encoder stage encodes. */
const ENCODER_IMAGE = "fixtures/images/landscape.png";
const DIFFUSION_STEPS = 10;
const GUIDANCE_SCALE = 3.0;
const NOISE_SEED = 42;
/** The LLM stage's text prompt (no images), tokenized by the reference tokenizer: about 70 tokens. */
const LLM_PROMPT =
  "A lighthouse stands on a rocky cliff above a stormy sea at dusk. Waves crash against the rocks below while gulls " +
  "circle overhead, and a small fishing boat with a red hull heads back toward the harbor, its lantern glowing. " +
  "Describe the scene in detail, then suggest a title for the painting.";
const GREEDY_NEW_TOKENS = 32;
const NUM_BEAMS = 5;
const BEAM_NEW_TOKENS = 10;
const LENGTH_PENALTY = -1;
/** Mean |TS - PyTorch| of an output above which the two sides are not doing the same work (float32 both). */
const SAME_OUTPUT_TOLERANCE = 1e-3;

class BenchError extends Error {}

interface Row {
  stage: string;
  tsMs?: number;
  torchMs?: number;
  ts: ProcessFigures;
  /** Absent where the reference has nothing to compare (few-shot evaluation). */
  torch?: ProcessFigures;
  /** How the two sides' outputs compare, or what the figure means. */
  note: string;
}

interface Context {
  threads: number;
  workDir: string;
  manifest: Manifest;
  runTs<T>(job: WorkerJob): Promise<T>;
  runTorch<T>(job: Record<string, unknown>): Promise<T>;
}

interface Stage {
  name: string;
  needs: { path: string; hint: string }[];
  run(ctx: Context): Promise<{ rows: Row[]; method: string; raw: Record<string, unknown> }>;
}

function benchImages(): string[] {
  const folder = join(ROOT, "fixtures/images");
  if (!existsSync(folder)) return [];
  const top = readdirSync(folder)
    .filter((name) => statSync(join(folder, name)).isFile())
    .sort();
  return [...top.map((name) => `fixtures/images/${name}`), "fixtures/images/extra/photo.webp"];
}

const preprocessStage: Stage = {
  name: "image preprocessing",
  needs: [
    {
      path: "fixtures/images/landscape.png",
      hint: "the fixture images are part of the repository: git checkout fixtures/images",
    },
    {
      path: "fixtures/images/extra/photo.webp",
      hint: "the fixture images are part of the repository: git checkout fixtures/images",
    },
    {
      path: "python/emu2ref/preprocess.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
  ],
  async run(ctx) {
    const vision = ctx.manifest.vision;
    const size = vision.image_size;
    const job: PreprocessJob = {
      kind: "preprocess",
      threads: ctx.threads,
      warmup: 3,
      repeats: 25,
      out_dir: ctx.workDir,
      images: benchImages().map((path) => join(ROOT, path)),
      size,
      mean: [...vision.mean],
      std: [...vision.std],
    };
    const ts = await ctx.runTs<PreprocessFigures>(job);
    const torch = await ctx.runTorch<PreprocessFigures>({ ...job });
    const rows = ts.images.map((mine, i): Row => {
      const peer = torch.images[i];
      const diff = absDiffs(readFloats(mine.output), readFloats(peer.output));
      return {
        stage: `preprocess ${relative(join(ROOT, "fixtures/images"), mine.image)} -> ${size}`,
        tsMs: mine.total_ms,
        torchMs: peer.total_ms,
        ts,
        torch,
        note: `decode ${fmtMs(mine.load_ms)} vs ${fmtMs(peer.load_ms)} ms; max |diff| ${diff.max.toExponential(1)}`,
      };
    });
    const method =
      `loadImage + preprocessImage vs emu2ref load_rgb + preprocess (PIL), ${size}x${size}; ` +
      `per image ${job.warmup} warm-up runs, then the median of ${job.repeats}`;
    return { rows, method, raw: { job, ts, torch } };
  },
};

const diffusionStage: Stage = {
  name: "visual decoder",
  needs: [
    { path: `${PACKAGE_DIR}/unet.onnx`, hint: BUILD_HINT },
    { path: `${PACKAGE_DIR}/vae_decoder.onnx`, hint: BUILD_HINT },
    {
      path: "python/emu2ref/golden_diffusion.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
    {
      path: "python/emu2ref/export_diffusion.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
  ],
  async run(ctx) {
    const section = ctx.manifest.visual_decoder;
    if (!section) throw new BenchError(`${PACKAGE_DIR}/manifest.yaml has no visual_decoder section: ${BUILD_HINT}`);
    // The decoder is conditioned on n_query embeddings of the vision width (its cross_attention_dim).
    const queries = ctx.manifest.vision.n_query;
    const width = ctx.manifest.vision.width;

    // Stand-ins for the LLM's regressed embeddings: seeded normals, one file both sides read.
    const perSide = queries * width;
    const embeddings = new Float32Array(2 * perSide);
    fillNormals(7, embeddings.subarray(0, perSide));
    fillNormals(8, embeddings.subarray(perSide));
    const embeddingsFile = join(ctx.workDir, "embeddings.f32");
    writeFileSync(embeddingsFile, embeddings);

    const job: DiffusionJob = {
      kind: "diffusion",
      threads: ctx.threads,
      warmup: 2,
      repeats: 15,
      out_dir: ctx.workDir,
      unet: join(ROOT, PACKAGE_DIR, "unet.onnx"),
      vae_decoder: join(ROOT, PACKAGE_DIR, "vae_decoder.onnx"),
      package: PACKAGE_NAME,
      width,
      section,
      embeddings: embeddingsFile,
      queries,
      steps: DIFFUSION_STEPS,
      guidance_scale: GUIDANCE_SCALE,
      noise_seed: NOISE_SEED,
    };
    const ts = await ctx.runTs<TsDiffusionFigures>(job);
    const torch = await ctx.runTorch<TorchDiffusionFigures>({ ...job });
    const diff = absDiffs(readFloats(ts.image), readFloats(torch.image));
    checkSameWork("visual decoder", diff.mean);
    const [, channels, imageHeight, imageWidth] = ts.image_dims;
    const rss = { ts, torch };
    const rows: Row[] = [
      {
        stage: `generate ${DIFFUSION_STEPS} steps, cfg ${GUIDANCE_SCALE} (${channels}x${imageHeight}x${imageWidth})`,
        tsMs: ts.total_ms,
        torchMs: torch.total_ms,
        ...rss,
        note: `same image: mean |diff| ${diff.mean.toExponential(1)}, max ${diff.max.toExponential(1)}`,
      },
      {
        stage: "  one denoising step (UNet on 2 rows, CFG, Euler)",
        tsMs: ts.step_ms,
        torchMs: torch.step_ms,
        ...rss,
        note: "median step period",
      },
      { stage: "  VAE decode alone", tsMs: ts.vae_decode_ms, torchMs: torch.vae_decode_ms, ...rss, note: "" },
      {
        stage: "  setup: ORT sessions (unet + vae) / torch build",
        tsMs: ts.session_ms,
        torchMs: torch.build_ms,
        ...rss,
        note: "not comparable: a graph load vs a seeded init; no ratio",
      },
    ];
    const method =
      `generateImages (onnxruntime-node) vs golden_diffusion.generate (torch modules rebuilt as ` +
      `build_tiny_packages.py builds ${PACKAGE_NAME}), ${queries}x${width} embeddings, noise seed ${NOISE_SEED}; ` +
      `${job.warmup} warm-up runs, then the median of ${job.repeats}`;
    return { rows, method, raw: { job, ts, torch, image_diff: diff } };
  },
};

const visualEncoderStage: Stage = {
  name: "visual encoder",
  needs: [
    { path: `${PACKAGE_DIR}/visual_encoder.onnx`, hint: BUILD_HINT },
    { path: ENCODER_IMAGE, hint: "the fixture images are part of the repository: git checkout fixtures/images" },
    {
      path: "python/emu2ref/eva_vit.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
  ],
  async run(ctx) {
    const vision = ctx.manifest.vision;
    const pixels = preprocessImage(await loadImage(join(ROOT, ENCODER_IMAGE)), vision);
    const pixelsFile = join(ctx.workDir, "pixels.f32");
    writeFileSync(pixelsFile, pixels);
    const job: VisualEncoderJob = {
      kind: "visual_encoder",
      threads: ctx.threads,
      warmup: 2,
      repeats: 15,
      out_dir: ctx.workDir,
      package: PACKAGE_NAME,
      visual_encoder: join(ROOT, PACKAGE_DIR, vision.file),
      vision,
      dtype: ctx.manifest.dtype,
      vocab_size: ctx.manifest.tokenizer.vocab_size,
      pixels: pixelsFile,
      n_query: vision.n_query,
    };
    const ts = await ctx.runTs<TsVisualEncoderFigures>(job);
    const torch = await ctx.runTorch<TorchVisualEncoderFigures>({ ...job });
    const diff = absDiffs(readFloats(ts.features), readFloats(torch.features));
    checkSameWork("visual encoder", diff.mean);
    const patches = (vision.image_size / vision.patch_size) ** 2;
    const rows: Row[] = [
      {
        stage: `encode 1 image (${patches + 1} tokens, width ${vision.width}) + pool to ${vision.n_query}`,
        tsMs: ts.encode_ms,
        torchMs: torch.encode_ms,
        ts,
        torch,
        note: `same features: mean |diff| ${diff.mean.toExponential(1)}, max ${diff.max.toExponential(1)}`,
      },
      {
        stage: "  setup: ORT session / torch build",
        tsMs: ts.session_ms,
        torchMs: torch.build_ms,
        ts,
        torch,
        note: "not comparable: a graph load vs a seeded init (vision + LLM); no ratio",
      },
    ];
    const method =
      `VisualEncoder.encodePixels (onnxruntime-node) vs EvaViT + pool_visual_features (torch modules ` +
      `rebuilt as build_tiny_packages.py builds ${PACKAGE_NAME}) on the same pixels of ${ENCODER_IMAGE}; ` +
      `${job.warmup} warm-up runs, then the median of ${job.repeats}`;
    return { rows, method, raw: { job, ts, torch, features_diff: diff } };
  },
};

const llmStage: Stage = {
  name: "llm",
  needs: [
    ...(["embed_tokens", "decoder", "lm_head", "project_up", "project_down", "tokenizer"] as const).map((role) => ({
      path: `${PACKAGE_DIR}/${role === "tokenizer" ? "tokenizer.json" : `${role}.onnx`}`,
      hint: BUILD_HINT,
    })),
    {
      path: "python/emu2ref/generation.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
    {
      path: "python/emu2ref/tokenizer.py",
      hint: "the PyTorch reference is part of the repository: git checkout python/emu2ref",
    },
  ],
  async run(ctx) {
    const tokenizer = ctx.manifest.tokenizer;
    const { ids } = await ctx.runTorch<{ ids: number[] }>({
      kind: "tokenize",
      tokenizer: join(ROOT, PACKAGE_DIR, tokenizer.file),
      text: LLM_PROMPT,
    });
    const job: LlmJob = {
      kind: "llm",
      threads: ctx.threads,
      // Ten warm-up runs, and as many greedy generations before the first row: a process's first greedy
      // generations take up to twice as long (their logits land on heap pages touched for the first time; the greedy
      // row's note gives them).
      warmup: 10,
      repeats: 10,
      out_dir: ctx.workDir,
      package: PACKAGE_NAME,
      package_dir: join(ROOT, PACKAGE_DIR),
      vocab_size: tokenizer.vocab_size,
      eos_token_id: tokenizer.eos_token_id,
      pad_token_id: tokenizer.pad_token_id,
      ids,
      greedy_new_tokens: GREEDY_NEW_TOKENS,
      num_beams: NUM_BEAMS,
      beam_new_tokens: BEAM_NEW_TOKENS,
      length_penalty: LENGTH_PENALTY,
    };
    const ts = await ctx.runTs<TsLlmFigures>(job);
    const torch = await ctx.runTorch<TorchLlmFigures>({ ...job });
    checkSameIds("llm first token", [ts.first_token], [torch.first_token]);
    checkSameIds(`llm greedy ${GREEDY_NEW_TOKENS} tokens`, ts.greedy_ids, torch.greedy_ids);
    checkSameIds(`llm beam search ${NUM_BEAMS} beams`, ts.beam_ids, torch.beam_ids);
    const hfDir = join(ctx.workDir, "hf-layout");
    await ctx.runTorch({ kind: "export_hf_layout", package: join(ROOT, PACKAGE_DIR), out: hfDir });
    const peer = await runJson<TransformersJsFigures>(
      "transformers.js peer",
      process.execPath,
      ["--import", "tsx", join(ROOT, "bench/peer_transformersjs.ts")],
      JSON.stringify({
        model_dir: hfDir,
        ids,
        new_tokens: GREEDY_NEW_TOKENS,
        threads: ctx.threads,
        warmup: job.warmup,
        repeats: job.repeats,
        package_dir: job.package_dir,
      }),
    );
    // transformers.js keeps the eos that ends a sequence; emu2 returns the ids before it.
    const eosAt = peer.ids.indexOf(tokenizer.eos_token_id);
    const peerIds = eosAt >= 0 ? peer.ids.slice(0, eosAt) : peer.ids;
    checkSameIds(`llm greedy ${GREEDY_NEW_TOKENS} tokens (transformers.js)`, ts.greedy_ids, peerIds);
    const tokensPerS = (ms: number) => ((ts.greedy_ids.length / ms) * 1000).toFixed(0);
    const rows: Row[] = [
      {
        stage: `prefill ${ids.length} tokens -> first token (time to first token)`,
        tsMs: ts.first_token_ms,
        torchMs: torch.first_token_ms,
        ts,
        torch,
        note: `same token ${ts.first_token}`,
      },
      {
        stage: `greedy ${ts.greedy_ids.length} new tokens (KV cache)`,
        tsMs: ts.greedy_ms,
        torchMs: torch.greedy_ms,
        ts,
        torch,
        note:
          `same ids; ${tokensPerS(ts.greedy_ms)} vs ${tokensPerS(torch.greedy_ms)} tokens/s; the process's first ` +
          `${ts.greedy_warmup_ms.length} (process warm-up): ${ts.greedy_warmup_ms.map(fmtMs).join(", ")} ms`,
      },
      {
        stage: `greedy ${ts.greedy_ids.length} new tokens vs transformers.js, taking turns in one process`,
        tsMs: peer.alternating.emu2_ms,
        ts,
        note:
          `same ids; transformers.js ${fmtMs(peer.alternating.transformers_js_ms)} ms, TS/transformers.js ` +
          `${peer.alternating.ratio.toFixed(2)}x (median of ${peer.alternating.rounds} rounds' ratios); alone in its ` +
          `process transformers.js ${fmtMs(peer.greedy_ms)} ms (peak RSS ${fmtRss(peer)})`,
      },
      {
        stage: "  per greedy token: emu2's step vs a bare session.run loop (generation overhead)",
        tsMs: ts.emu2_token_ms,
        ts,
        note:
          `bare loop ${fmtMs(ts.bare_token_ms)} ms (embed_tokens, decoder, lm_head on a ${ids.length}-token past), ` +
          `emu2/bare ${ts.emu2_bare_ratio.toFixed(2)}x (the median of the rounds' ratios, the two taking turns)`,
      },
      {
        stage: `beam search ${NUM_BEAMS} beams, ${BEAM_NEW_TOKENS} tokens, length penalty ${LENGTH_PENALTY}`,
        tsMs: ts.beam_ms,
        torchMs: torch.beam_ms,
        ts,
        torch,
        note: `same ids (${ts.beam_ids.length} tokens)`,
      },
      {
        stage: "  setup: Emu2.open(...).llm() (ORT sessions, embedding table) / torch build",
        tsMs: ts.session_ms,
        torchMs: torch.build_ms,
        ts,
        torch,
        note: "not comparable: graph loads vs a seeded init (vision + LLM); no ratio",
      },
    ];
    const method =
      `LlmStage.generateText (onnxruntime-node, KV cache; numBeams 1 / ${NUM_BEAMS}, minNewTokens 0) vs ` +
      `emu2ref.generation greedy / beam_search (KV cache; torch modules rebuilt as build_tiny_packages.py builds ` +
      `${PACKAGE_NAME}) on one ${ids.length}-token text prompt (reference tokenizer); every run embeds the prompt and ` +
      `prefills it; first token = a 1-token greedy run; tokens/s = new tokens / whole greedy run; ` +
      `${job.warmup} warm-up runs, then the median of ${job.repeats}`;
    return {
      rows,
      method: `${method}; transformers.js ${TRANSFORMERS_JS_METHOD}`,
      raw: { job, ts, torch, transformers_js: peer },
    };
  },
};

const TRANSFORMERS_JS_METHOD =
  "(@huggingface/transformers, its own generate loop, greedy, on the same onnxruntime-node): the package's " +
  "embed_tokens + decoder + lm_head joined into one graph in the Hugging Face layout (bench/export_hf_layout.py), " +
  "same ids in, whole generation timed";

interface TransformersJsFigures extends ProcessFigures {
  ids: number[];
  greedy_ms: number;
  /** The two sides' greedy generations alternating in the peer's process (bench/peer_transformersjs.ts). */
  alternating: { emu2_ms: number; transformers_js_ms: number; ratio: number; rounds: number };
}

const FEWSHOT_TASK = "vqav2";
const FEWSHOT_SHOTS = 8;
const FEWSHOT_SAMPLES = 18;

const fewshotStage: Stage = {
  name: "few-shot eval",
  needs: [{ path: "fixtures/datasets/vqav2", hint: "run node --import tsx tools/make-fixture-datasets.ts" }],
  async run(ctx) {
    const job: FewshotJob = {
      kind: "fewshot",
      threads: ctx.threads,
      warmup: 1,
      repeats: 3,
      out_dir: ctx.workDir,
      package_dir: join(ROOT, PACKAGE_DIR),
      data_dir: join(ROOT, "fixtures/datasets"),
      task: FEWSHOT_TASK,
      shots: FEWSHOT_SHOTS,
      limit: FEWSHOT_SAMPLES,
    };
    const ts = await ctx.runTs<FewshotFigures>(job);
    const perS = (ms: number) => ((ts.samples / ms) * 1000).toFixed(1);
    const rows: Row[] = [
      {
        stage: `${FEWSHOT_SHOTS}-shot ${FEWSHOT_TASK} (configs/eval), ${ts.samples} samples, feature cache`,
        tsMs: ts.cached_ms / ts.samples,
        ts,
        note: `${perS(ts.cached_ms)} samples/s; ${ts.cached_encodes} image encodes per run; no reference harness to compare`,
      },
      {
        stage: `${FEWSHOT_SHOTS}-shot ${FEWSHOT_TASK}, ${ts.samples} samples, no feature cache`,
        tsMs: ts.uncached_ms / ts.samples,
        ts,
        note: `${perS(ts.uncached_ms)} samples/s; ${ts.uncached_encodes} image encodes per run; same predictions as with the cache`,
      },
    ];
    const method =
      `runFewshotEval (the engine of emu2 fewshot-eval) on ${PACKAGE_NAME} and fixtures/datasets: the ` +
      `${FEWSHOT_TASK} config's decoding (Emu2's VQA settings), random demonstrations, batch size 1, a fresh output ` +
      `directory and (with the cache) a fresh feature cache per run; ms per sample = wall time of a run / samples; ` +
      `${job.warmup} warm-up run, median of ${job.repeats}`;
    return { rows, method, raw: { job, ts } };
  },
};

const STAGES: Stage[] = [preprocessStage, visualEncoderStage, diffusionStage, llmStage, fewshotStage];

/** Stops the bench when the two sides' outputs differ: their timings would compare different work. */
function checkSameWork(stage: string, meanAbsDiff: number): void {
  if (!(meanAbsDiff <= SAME_OUTPUT_TOLERANCE)) {
    throw new BenchError(
      `${stage}: the ONNX graphs and the torch modules rebuilt as python/build_tiny_packages.py builds ${PACKAGE_NAME} ` +
        `disagree (mean |diff| ${meanAbsDiff.toExponential(2)} > ${SAME_OUTPUT_TOLERANCE}): ${PACKAGE_DIR} is stale; ${BUILD_HINT}`,
    );
  }
}

/** Stops the bench when the two sides generated different tokens: their timings would compare different work. */
function checkSameIds(what: string, ts: number[], torch: number[]): void {
  if (ts.length !== torch.length || ts.some((id, i) => id !== torch[i])) {
    throw new BenchError(
      `${what}: TS generated [${ts.join(", ")}] but PyTorch [${torch.join(", ")}] from the same prompt: ` +
        `${PACKAGE_DIR} is stale or the runtimes disagree; ${BUILD_HINT}`,
    );
  }
}

function readFloats(file: string): Float32Array {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Runs a command with `input` on stdin; its stdout's last line is the JSON reply. */
function runJson<T>(
  side: string,
  command: string,
  args: string[],
  input: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", (err) => reject(new BenchError(`${side}: cannot start ${command} (${err.message})`)));
    child.on("close", (code) => {
      const last = stdout.trim().split("\n").pop() ?? "";
      let reply: (T & { error?: string }) | undefined;
      try {
        reply = JSON.parse(last) as T & { error?: string };
      } catch {
        reply = undefined;
      }
      if (reply?.error) return reject(new BenchError(`${side}: ${reply.error}`));
      if (code !== 0 || !reply) {
        const why = (stderr.trim().split("\n").pop() ?? "").trim() || `exit code ${code}`;
        return reject(new BenchError(`${side}: ${why}`));
      }
      resolvePromise(reply);
    });
    child.stdin.end(input);
  });
}

/** `npm run bench -- <part of a stage name>...` runs only those stages (all without arguments). */
function selectedStages(): Stage[] {
  const wanted = process.argv.slice(2);
  if (wanted.length === 0) return STAGES;
  const chosen = STAGES.filter((s) => wanted.some((w) => s.name.includes(w)));
  if (chosen.length === 0)
    throw new BenchError(`no stage matches ${wanted.join(", ")}: stages are ${STAGES.map((s) => s.name).join(", ")}`);
  return chosen;
}

function checkNeeds(): void {
  if (!existsSync(PYTHON))
    throw new BenchError(`${PYTHON} missing: the PyTorch peer needs Debian's python3 with python3-torch`);
  if (!existsSync(join(ROOT, PACKAGE_DIR, "manifest.yaml")))
    throw new BenchError(`${PACKAGE_DIR}/manifest.yaml missing: ${BUILD_HINT}`);
  for (const stage of STAGES) {
    for (const need of stage.needs) {
      if (!existsSync(join(ROOT, need.path))) throw new BenchError(`${need.path} missing: ${need.hint}`);
    }
  }
}

async function nodeVersions(): Promise<{ ort: string; sharp: string; vips: string; sharpThreads: number }> {
  try {
    const ort = await import("onnxruntime-node");
    const sharp = (await import("sharp")).default;
    return {
      ort: ort.env.versions.common ?? "?",
      sharp: sharp.versions.sharp ?? "?",
      vips: sharp.versions.vips,
      sharpThreads: sharp.concurrency(),
    };
  } catch (err) {
    throw new BenchError(
      `cannot load onnxruntime-node/sharp (${(err as Error).message.split("\n")[0]}): run npm install`,
    );
  }
}

function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return "-";
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

/** "peak (after imports) MB" of one side's process. */
function fmtRss(figures: ProcessFigures | undefined): string {
  if (figures === undefined) return "-";
  const mb = (kb: number) => (kb / 1024).toFixed(0);
  return `${mb(figures.rss_peak_kb)} (${mb(figures.rss_baseline_kb)}) MB`;
}

function table(rows: Row[]): string {
  const header = ["stage", "emu2 TS ms", "PyTorch ms", "TS/PyTorch", "TS peak RSS", "PyTorch peak RSS", "note"];
  const cells = rows.map((r) => [
    r.stage,
    fmtMs(r.tsMs),
    fmtMs(r.torchMs),
    r.tsMs !== undefined && r.torchMs !== undefined && !r.note.startsWith("not comparable")
      ? `${(r.tsMs / r.torchMs).toFixed(2)}x`
      : "-",
    fmtRss(r.ts),
    fmtRss(r.torch),
    r.note,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === 0 || i === c.length - 1 ? v.padEnd(widths[i]) : v.padStart(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

interface DeviceKvFigures {
  skipped?: string;
  adapter?: string;
  rows?: { context: number; host_ms_per_token: number; device_ms_per_token: number; steps: number }[];
}

/** Per-token decode on the WebGPU provider: KV cache in host memory vs kept on the device (bench/device_kv.ts). */
function deviceKvTable(f: DeviceKvFigures): string {
  if (f.skipped || !f.rows) return `device KV cache: skipped: ${f.skipped ?? "no figures"}`;
  const lines = [
    `device KV cache, WebGPU on ${f.adapter}: per-token decode (embed, decoder, lm_head, argmax) of ${PACKAGE_NAME}, ` +
      `median of ${f.rows[0]?.steps} steps after 2 warm-up steps; same ids both ways`,
    "context  host KV ms/token  device KV ms/token  device/host",
  ];
  for (const r of f.rows) {
    lines.push(
      `${String(r.context).padStart(7)}  ${fmtMs(r.host_ms_per_token).padStart(16)}  ${fmtMs(r.device_ms_per_token).padStart(18)}  ` +
        `${(r.device_ms_per_token / r.host_ms_per_token).toFixed(2).padStart(10)}x`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const started = performance.now();
  const startedAt = new Date();
  checkNeeds();
  const manifest = readManifest(join(ROOT, PACKAGE_DIR, "manifest.yaml"));
  const versions = await nodeVersions();
  // Compute threads per side (EMU2_BENCH_THREADS, default every core): `EMU2_BENCH_THREADS=1` runs each side on one
  // compute thread while their runtimes' helper threads (V8's compiler and GC, OpenMP) keep the other core.
  const threads = Number(process.env.EMU2_BENCH_THREADS ?? availableParallelism());
  if (!Number.isInteger(threads) || threads < 1)
    throw new BenchError(
      `EMU2_BENCH_THREADS=${process.env.EMU2_BENCH_THREADS}: expected a whole number of threads >= 1`,
    );
  const workDir = mkdtempSync(join(tmpdir(), "emu2-bench-"));
  try {
    const runTorch = <T>(job: Record<string, unknown>) =>
      runJson<T>("PyTorch peer", PYTHON, [join(ROOT, "bench/peer_torch.py")], JSON.stringify(job), torchEnv());
    const runTs = <T>(job: WorkerJob) =>
      runJson<T>(
        "TypeScript worker",
        process.execPath,
        ["--import", "tsx", join(ROOT, "bench/ts_worker.ts")],
        JSON.stringify(job),
      );
    const probe = await runTorch<{
      blas: string;
      python: string;
      torch: string;
      numpy: string;
      pillow: string;
      torch_default_threads: number;
      torch_parallel_backend: string;
      torch_mkl: boolean;
    }>({ kind: "probe" });

    const machine = {
      host: hostname(),
      cpu: cpus()[0]?.model ?? "?",
      cores: availableParallelism(),
      memory_gb: +(totalmem() / 2 ** 30).toFixed(1),
      os: `${platform()} ${release()} ${arch()}`,
      node: process.version,
      onnxruntime_node: versions.ort,
      sharp: versions.sharp,
      libvips: versions.vips,
      python: probe.python,
      torch: probe.torch,
      torch_blas: probe.blas,
      numpy: probe.numpy,
      pillow: probe.pillow,
    };
    const threading = {
      ort_intra_op: threads,
      ort_inter_op: 1,
      torch_threads: threads,
      torch_interop_threads: 1,
      torch_default_threads: probe.torch_default_threads,
      torch_backend: probe.torch_parallel_backend,
      torch_mkl: probe.torch_mkl,
      sharp_libvips_threads: versions.sharpThreads,
    };
    console.log(
      "emu2 bench: emu2 (TypeScript, onnxruntime-node) vs the PyTorch reference (python/emu2ref), same tiny model and inputs",
    );
    console.log(`machine  ${machine.cpu}, ${machine.cores} cores, ${machine.memory_gb} GB, ${machine.os}`);
    console.log(
      `versions node ${machine.node}, onnxruntime-node ${machine.onnxruntime_node}, sharp ${machine.sharp} (libvips ${machine.libvips}); ` +
        `python ${machine.python}, torch ${machine.torch}, numpy ${machine.numpy}, pillow ${machine.pillow}`,
    );
    console.log(
      `threads  ORT intra-op ${threading.ort_intra_op}, inter-op 1 (sequential); torch.set_num_threads(${threading.torch_threads}), ` +
        `interop 1 (torch default here: ${threading.torch_default_threads}; ${threading.torch_backend}; ` +
        `MKL ${threading.torch_mkl ? "yes" : "no"}); ` +
        `sharp/libvips ${threading.sharp_libvips_threads}; JS resize and PIL are single-threaded`,
    );
    console.log(`blas     PyTorch: ${machine.torch_blas}`);
    if (!machine.torch_blas.startsWith("OpenBLAS")) console.log(`warning  ${NETLIB_WARNING}`);
    console.log(
      "times are medians after warm-up; ratio = TS / PyTorch (below 1: TS faster); " +
        "RSS: peak (after imports) of each side's own process\n",
    );

    const rows: Row[] = [];
    const methods: string[] = [];
    const stages: Record<string, unknown> = {};
    for (const stage of selectedStages()) {
      const stageStart = performance.now();
      process.stderr.write(`running ${stage.name}...\n`);
      const ctx: Context = { threads, workDir, manifest, runTs, runTorch };
      const result = await stage.run(ctx);
      rows.push(...result.rows);
      methods.push(`${stage.name}: ${result.method}`);
      stages[stage.name] = { ...result.raw, wall_s: (performance.now() - stageStart) / 1000 };
    }
    console.log(table(rows));
    console.log(`\n${methods.join("\n")}`);

    process.stderr.write("running device KV cache (WebGPU)...\n");
    const deviceKv = await runJson<DeviceKvFigures>(
      "device KV worker",
      process.execPath,
      ["--import", "tsx", join(ROOT, "bench/device_kv.ts")],
      "",
    );
    stages["device KV cache"] = deviceKv;
    console.log(`\n${deviceKvTable(deviceKv)}`);

    const wall = (performance.now() - started) / 1000;
    const resultsFile = freeResultsFile(machine.host, startedAt, "-tiny");
    const summary = rows.map((r) => ({
      stage: r.stage,
      ts_ms: r.tsMs,
      torch_ms: r.torchMs,
      ts_rss_peak_kb: r.ts.rss_peak_kb,
      torch_rss_peak_kb: r.torch?.rss_peak_kb,
      note: r.note,
    }));
    writeFileSync(
      resultsFile,
      JSON.stringify(
        { date: new Date().toISOString(), machine, threading, rows: summary, stages, wall_s: wall },
        null,
        2,
      ) + "\n",
    );
    console.log(`wrote ${resultsFile}; total ${wall.toFixed(1)} s`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  if (err instanceof BenchError || err instanceof Emu2Error) {
    console.error(`bench: ${err.message}`);
    process.exit(1);
  }
  throw err;
});
