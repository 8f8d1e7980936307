// The TypeScript side of `npm run bench`: runs one job (JSON on stdin, built by bench/run.ts) in its own process
// and prints one JSON object with the timings and this process's resident-set sizes, so that each side's memory
// is measured alone. A failure prints {"error": "<one line>"} and exits 1.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  conditioning,
  denoise,
  generateImages,
  initialLatents,
  type GeneratedImages,
} from "../src/diffusion/pipeline.js";
import { eulerSchedule } from "../src/diffusion/scheduler.js";
import { Emu2 } from "../src/emu2.js";
import type { GenerationSettings } from "../src/llm/stage.js";
import { PLAIN_GREEDY } from "../src/llm/settings.js";
import type { VisionConfig, VisualDecoderConfig } from "../src/model/manifest.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../src/model/session.js";
import { loadImage } from "../src/vision/image.js";
import { VisualEncoder } from "../src/vision/encoder.js";
import { preprocessImage } from "../src/vision/preprocess.js";
import { loadTasks, runFewshotEval } from "../src/eval/runner.js";
import { predictionsFile } from "../src/eval/run-store.js";
import { loadTaskConfig } from "../src/eval/task-config.js";
import type { DiffusionJob, FewshotJob, LlmJob, PreprocessJob, VisualEncoderJob, WorkerJob } from "./jobs.js";
import { bareDecodeLoop } from "./bare_decode.js";
import { median } from "./stats.js";

async function runPreprocess(job: PreprocessJob): Promise<Record<string, unknown>> {
  const baseline = process.memoryUsage().rss;
  const config = { image_size: job.size, mean: job.mean, std: job.std };
  const images = [];
  for (const [index, path] of job.images.entries()) {
    for (let i = 0; i < job.warmup; i++) preprocessImage(await loadImage(path), config);
    const loadTimes: number[] = [];
    const totalTimes: number[] = [];
    let pixels: Float32Array | undefined;
    for (let i = 0; i < job.repeats; i++) {
      const start = performance.now();
      const image = await loadImage(path);
      const loaded = performance.now();
      pixels = preprocessImage(image, config);
      const end = performance.now();
      loadTimes.push(loaded - start);
      totalTimes.push(end - start);
    }
    if (!pixels) throw new RangeError("preprocess job: repeats must be at least 1");
    const output = join(job.out_dir, `preprocess-${index}.f32`);
    writeFileSync(output, pixels);
    images.push({
      image: path,
      load_ms: median(loadTimes),
      total_ms: median(totalTimes),
      total_samples_ms: totalTimes,
      output,
    });
  }
  return { images, rss_baseline_kb: Math.round(baseline / 1024) };
}

async function runVisualEncoder(job: VisualEncoderJob): Promise<Record<string, unknown>> {
  const baseline = process.memoryUsage().rss;
  const sessionStart = performance.now();
  const session = await createSession(job.visual_encoder, { ...DEFAULT_SESSION_OPTIONS, threads: job.threads });
  const sessionMs = performance.now() - sessionStart;
  const encoder = new VisualEncoder(session, job.vision as VisionConfig, job.dtype);
  const bytes = readFileSync(job.pixels);
  const pixels = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  for (let i = 0; i < job.warmup; i++) await encoder.encodePixels(pixels, job.n_query);
  const times: number[] = [];
  let features: Float32Array | undefined;
  for (let i = 0; i < job.repeats; i++) {
    const start = performance.now();
    features = (await encoder.encodePixels(pixels, job.n_query)).data;
    times.push(performance.now() - start);
  }
  if (!features) throw new RangeError("visual_encoder job: repeats must be at least 1");
  const output = join(job.out_dir, "visual-features-ts.f32");
  writeFileSync(output, features);
  return {
    session_ms: sessionMs,
    encode_ms: median(times),
    features: output,
    rss_baseline_kb: Math.round(baseline / 1024),
  };
}

async function runDiffusion(job: DiffusionJob): Promise<Record<string, unknown>> {
  const baseline = process.memoryUsage().rss;
  const options = { ...DEFAULT_SESSION_OPTIONS, threads: job.threads };
  const sessionStart = performance.now();
  const unet = await createSession(job.unet, options);
  const vae = await createSession(job.vae_decoder, options);
  const sessionMs = performance.now() - sessionStart;

  const section = job.section as VisualDecoderConfig;
  const all = new Float32Array(readFileSync(job.embeddings).buffer.slice(0));
  const perSide = job.queries * job.width;
  const dims = [1, job.queries, job.width] as const;
  const cond = { data: all.subarray(0, perSide), dims };
  const uncond = { data: all.subarray(perSide, 2 * perSide), dims };

  let stepEnds: number[] = [];
  const once = () => {
    stepEnds = [];
    return generateImages({ unet, vae }, section, {
      cond,
      uncond,
      steps: job.steps,
      guidanceScale: job.guidance_scale,
      seed: job.noise_seed,
      onStep: () => stepEnds.push(performance.now()),
    });
  };
  for (let i = 0; i < job.warmup; i++) await once();
  const totals: number[] = [];
  const stepPeriods: number[] = [];
  let result: GeneratedImages | undefined;
  for (let i = 0; i < job.repeats; i++) {
    const start = performance.now();
    result = await once();
    totals.push(performance.now() - start);
    for (let s = 1; s < stepEnds.length; s++) stepPeriods.push(stepEnds[s] - stepEnds[s - 1]);
  }

  if (!result) throw new RangeError("diffusion job: repeats must be at least 1");

  // The VAE graph alone on the final latents, fed as the pipeline feeds it (latents / scaling_factor).
  const { Tensor } = await import("onnxruntime-node");
  const cond1 = await conditioning(section, { cond, uncond, guidanceScale: job.guidance_scale });
  const schedule = eulerSchedule(section.scheduler, job.steps);
  const latents = initialLatents(section, schedule, 1, job.noise_seed);
  for await (const _ of denoise(unet, section, cond1, schedule, latents));
  const scaled = latents.map((v) => Math.fround(1 / section.scaling_factor) * v);
  const side = section.latent_size;
  const decodeFeed = { latent_sample: new Tensor("float32", scaled, [1, section.latent_channels, side, side]) };
  for (let i = 0; i < job.warmup; i++) await vae.run(decodeFeed);
  const decodeTimes: number[] = [];
  for (let i = 0; i < job.repeats; i++) {
    const start = performance.now();
    await vae.run(decodeFeed);
    decodeTimes.push(performance.now() - start);
  }

  const image = join(job.out_dir, "diffusion-image-ts.f32");
  writeFileSync(image, result.images);
  return {
    session_ms: sessionMs,
    total_ms: median(totals),
    total_samples_ms: totals,
    step_ms: median(stepPeriods),
    vae_decode_ms: median(decodeTimes),
    image,
    image_dims: result.dims,
    rss_baseline_kb: Math.round(baseline / 1024),
  };
}

const OVERHEAD_ROUNDS = 100;

/**
 * The generation overhead: emu2's time per greedy token (the period between the starts of consecutive decoder
 * runs, so everything of a step: the embedding lookup, decoder, lm_head and the JS between them) against a bare loop
 * of the same lookup and session runs on a fixed past of the prompt's length, fetching what emu2 fetches. The two take turns, so
 * that both see the machine in the same state, for OVERHEAD_ROUNDS rounds after as many warm-up rounds (a round is
 * cheap, and with ten this VM's drift moved the ratio between 1.16 and 1.29 from run to run); the ratio is the
 * median of the rounds' ratios of median steps.
 */
async function decodeOverhead(
  model: Emu2,
  job: LlmJob,
  greedy: () => Promise<void>,
): Promise<{ bare_token_ms: number; emu2_token_ms: number; emu2_bare_ratio: number }> {
  const [decoder, lmHead] = await Promise.all((["decoder", "lm_head"] as const).map((role) => model.pkg.session(role)));
  const embed = model.pkg.lookupTable("embed_tokens") ?? (await model.pkg.session("embed_tokens"));
  const bareStep = await bareDecodeLoop(
    { embed, decoder, lmHead },
    model.manifest.llm,
    model.manifest.dtype,
    1,
    job.ids.length,
  );
  const bareSteps = async (n: number) => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) times.push((await bareStep()).total);
    return times;
  };
  const starts: number[] = [];
  const run = decoder.run.bind(decoder) as (...args: unknown[]) => ReturnType<typeof decoder.run>;
  const timedRun = (async (...args: unknown[]) => {
    starts.push(performance.now());
    return run(...args);
  }) as typeof decoder.run;
  const bare: number[] = [];
  const emu2: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < 2 * OVERHEAD_ROUNDS; round++) {
    const times = await bareSteps(job.greedy_new_tokens);
    starts.length = 0;
    decoder.run = timedRun;
    try {
      await greedy();
    } finally {
      decoder.run = run as typeof decoder.run;
    }
    if (round < OVERHEAD_ROUNDS) continue;
    bare.push(...times);
    // starts[0] is the prefill; the first period after it is the first decode step on new shapes.
    const steps = starts.slice(3).map((start, i) => start - starts[i + 2]);
    emu2.push(...steps);
    ratios.push(median(steps) / median(times));
  }
  return { bare_token_ms: median(bare), emu2_token_ms: median(emu2), emu2_bare_ratio: median(ratios) };
}

async function runLlm(job: LlmJob): Promise<Record<string, unknown>> {
  const baseline = process.memoryUsage().rss;
  const sessionStart = performance.now();
  const model = Emu2.open(job.package_dir, { threads: job.threads });
  const llm = await model.llm();
  const sessionMs = performance.now() - sessionStart;

  // Plain greedy / beam search as the reference functions run them: no sampling, penalties, stop strings or
  // minimum length (min_new_tokens 0 on both sides).
  const plain: GenerationSettings = { ...PLAIN_GREEDY, maxNewTokens: 1 };
  const greedySettings = { ...plain, maxNewTokens: job.greedy_new_tokens };
  // The process's first greedy generations, timed apart before any row: they take up to twice as long as later
  // ones (their logits land on heap pages touched for the first time), which would otherwise fall on the first row.
  const processWarmupMs: number[] = [];
  for (let i = 0; i < job.warmup; i++) {
    const start = performance.now();
    await llm.generateText([job.ids], null, greedySettings);
    processWarmupMs.push(performance.now() - start);
  }
  const timed = async (settings: GenerationSettings): Promise<{ ms: number; ids: number[] }> => {
    for (let i = 0; i < job.warmup; i++) await llm.generateText([job.ids], null, settings);
    const times: number[] = [];
    let ids: number[] | undefined;
    for (let i = 0; i < job.repeats; i++) {
      const start = performance.now();
      [{ ids }] = await llm.generateText([job.ids], null, settings);
      times.push(performance.now() - start);
    }
    if (!ids) throw new RangeError("llm job: repeats must be at least 1");
    return { ms: median(times), ids };
  };
  const first = await timed(plain);
  const greedy = await timed(greedySettings);
  const beam = await timed({
    ...plain,
    maxNewTokens: job.beam_new_tokens,
    numBeams: job.num_beams,
    lengthPenalty: job.length_penalty,
  });
  const overhead = await decodeOverhead(model, job, async () => {
    await llm.generateText([job.ids], null, greedySettings);
  });
  return {
    ...overhead,
    session_ms: sessionMs,
    first_token_ms: first.ms,
    first_token: first.ids[0],
    greedy_ms: greedy.ms,
    greedy_warmup_ms: processWarmupMs,
    greedy_ids: greedy.ids,
    beam_ms: beam.ms,
    beam_ids: beam.ids,
    rss_baseline_kb: Math.round(baseline / 1024),
  };
}

/**
 * The same few-shot run with the image feature cache (a fresh cache each time: every distinct image is encoded once
 * per run) and without it (every image of every prompt goes through the encoder). Both must write the same
 * predictions: otherwise they did different work.
 */
async function runFewshot(job: FewshotJob): Promise<Record<string, unknown>> {
  const baseline = process.memoryUsage().rss;
  const model = Emu2.open(job.package_dir, { ...DEFAULT_SESSION_OPTIONS, threads: job.threads });
  await model.llm();
  await model.visualEncoder();
  const tasks = loadTasks([loadTaskConfig(job.task)], job.data_dir);
  const name = tasks[0].config.name;
  const settings = { trials: 1, seed: 0, demos: "random" as const, limit: job.limit, shots: [job.shots] };
  const once = async (cached: boolean, run: number) => {
    const outputDir = join(job.out_dir, `fewshot-${cached ? "cached" : "uncached"}-${run}`);
    let encodes = 0;
    const encoder = await model.visualEncoder();
    const original = encoder.encodeImage.bind(encoder);
    encoder.encodeImage = (...args) => {
      encodes += 1;
      return original(...args);
    };
    const start = performance.now();
    await runFewshotEval({
      model,
      tasks,
      settings,
      outputDir,
      resume: false,
      shard: null,
      batchSize: 1,
      featureCacheDir: cached ? join(outputDir, "features") : null,
    });
    const ms = performance.now() - start;
    encoder.encodeImage = original;
    return { ms, encodes, predictions: readFileSync(predictionsFile(outputDir, name, job.shots, 0), "utf8") };
  };
  for (let i = 0; i < job.warmup; i++) await once(true, -1 - i);
  const cached: number[] = [];
  const uncached: number[] = [];
  let figures: { cached?: Awaited<ReturnType<typeof once>>; uncached?: Awaited<ReturnType<typeof once>> } = {};
  for (let i = 0; i < job.repeats; i++) {
    const c = await once(true, i);
    const u = await once(false, i);
    if (c.predictions !== u.predictions)
      throw new Error("fewshot job: the runs with and without the feature cache wrote different predictions");
    cached.push(c.ms);
    uncached.push(u.ms);
    figures = { cached: c, uncached: u };
  }
  await model.release();
  return {
    samples: job.limit,
    cached_ms: median(cached),
    uncached_ms: median(uncached),
    cached_encodes: figures.cached?.encodes ?? 0,
    uncached_encodes: figures.uncached?.encodes ?? 0,
    rss_baseline_kb: Math.round(baseline / 1024),
  };
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const job = JSON.parse(Buffer.concat(chunks).toString("utf8")) as WorkerJob;
  let result: Record<string, unknown>;
  switch (job.kind) {
    case "preprocess":
      result = await runPreprocess(job);
      break;
    case "visual_encoder":
      result = await runVisualEncoder(job);
      break;
    case "diffusion":
      result = await runDiffusion(job);
      break;
    case "llm":
      result = await runLlm(job);
      break;
    case "fewshot":
      result = await runFewshot(job);
      break;
  }
  result.rss_peak_kb = process.resourceUsage().maxRSS;
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stdout.write(JSON.stringify({ error: message.replace(/\s+/g, " ").trim() }) + "\n");
  process.exit(1);
});
