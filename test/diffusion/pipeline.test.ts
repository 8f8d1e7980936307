import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  conditioning,
  decodeLatents,
  denoise,
  generateImages,
  initialLatents,
  type GenerateImagesOptions,
  type VisualDecoderSessions,
} from "../../src/diffusion/pipeline.js";
import { eulerSchedule } from "../../src/diffusion/scheduler.js";
import type { VisualDecoderConfig } from "../../src/model/manifest.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../../src/model/session.js";
import { Golden, maxAbsDiff, meanAbsDiff } from "../helpers/golden.js";
import { goldenDir, packageDir } from "../helpers/fixtures.js";

const golden = new Golden(goldenDir("emu2-tiny", "diffusion"));
const section = golden.meta.visual_decoder as VisualDecoderConfig;
const modelDir = packageDir("emu2-tiny");
let sessions: VisualDecoderSessions;

before(async () => {
  sessions = {
    unet: await createSession(`${modelDir}/${section.unet_file}`, DEFAULT_SESSION_OPTIONS),
    vae: await createSession(`${modelDir}/${section.vae_decoder_file}`, DEFAULT_SESSION_OPTIONS),
  };
});
after(async () => {
  await sessions.unet.release();
  await sessions.vae.release();
});

/** Conditioning, initial latents and every denoising step, iterated here: the final latents and the steps seen. */
async function denoised(options: GenerateImagesOptions): Promise<{ latents: Float32Array; steps: number[] }> {
  const cond = await conditioning(section, options);
  const schedule = eulerSchedule(section.scheduler, options.steps ?? section.num_inference_steps);
  const latents = initialLatents(section, schedule, cond.batch, options.seed);
  const steps: number[] = [];
  for await (const step of denoise(sessions.unet, section, cond, schedule, latents)) steps.push(step.step);
  return { latents, steps };
}

function embeddings(name: string) {
  const a = golden.float32(name);
  return { data: a.data, dims: a.shape as [number, number, number] };
}

test("one UNet step on the CFG batch matches PyTorch", async () => {
  const ort = await import("onnxruntime-node");
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const name of ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]) {
    const a = golden.float32(`unet_step.${name}`);
    feeds[name] = new ort.Tensor("float32", a.data, a.shape);
  }
  const out = await sessions.unet.run(feeds);
  const want = golden.float32("unet_step.out_sample");
  assert.deepEqual(out.out_sample.dims, want.shape);
  const diff = maxAbsDiff(out.out_sample.data as Float32Array, want.data);
  assert.ok(diff <= 5e-6, `max abs diff ${diff} (measured 1.3e-6)`);
});

test("the short CFG run, step by step, reproduces PyTorch's latents and image; generateImages reports every step", async () => {
  const meta = golden.meta as { seed: number; steps: number; guidance_scale: number };
  const options = {
    cond: embeddings("run.cond"),
    uncond: embeddings("run.uncond"),
    steps: meta.steps,
    guidanceScale: meta.guidance_scale,
    seed: meta.seed,
  };
  const run = await denoised(options);
  assert.deepEqual(run.steps, [1, 2, 3, 4]);
  const latents = golden.float32("run.latents");
  // Measured max abs differences: latents 8.1e-6 (values up to ~10), image 1.3e-6. A wrong text_embeds
  // normalization moves the image by ~8e-4, so the bounds sit near the measured float32 noise.
  const latentsDiff = maxAbsDiff(run.latents, latents.data);
  assert.ok(latentsDiff <= 3e-5, `latents max abs diff ${latentsDiff}`);
  const image = golden.float32("run.image");
  const decoded = await decodeLatents(sessions.vae, section, run.latents, 1);
  assert.deepEqual(decoded.dims, [1, ...image.shape]);
  const steps: number[] = [];
  const result = await generateImages(sessions, section, { ...options, onStep: (p) => steps.push(p.step) });
  assert.deepEqual(steps, [1, 2, 3, 4]);
  assert.deepEqual(result.images, decoded.images);
  const imageDiff = maxAbsDiff(result.images, image.data);
  assert.ok(imageDiff <= 5e-6, `image max abs diff ${imageDiff}`);
  // The image is not flat: a broken decoder that returns a constant would not pass the comparison above by luck.
  assert.ok(Math.max(...result.images) - Math.min(...result.images) > 0.1);
});

test("guidance matters: a scale of 1 runs the cond batch alone and gives other latents", async () => {
  const meta = golden.meta as { seed: number; steps: number };
  const unguided = await denoised({
    cond: embeddings("run.cond"),
    steps: meta.steps,
    guidanceScale: 1,
    seed: meta.seed,
  });
  assert.ok(meanAbsDiff(unguided.latents, golden.float32("run.latents").data) > 1e-2);
  await assert.rejects(
    generateImages(sessions, section, { cond: embeddings("run.cond"), steps: 1, guidanceScale: 3, seed: 0 }),
    /needs uncond/,
  );
});

test("autoencoding (image features vs null-image features) matches PyTorch", async () => {
  const meta = golden.meta as { autoencode_seed: number; steps: number; guidance_scale: number };
  const result = await denoised({
    cond: embeddings("autoencode.features"),
    uncond: embeddings("autoencode.null_features"),
    steps: meta.steps,
    guidanceScale: meta.guidance_scale,
    seed: meta.autoencode_seed,
  });
  const diff = maxAbsDiff(result.latents, golden.float32("autoencode.latents").data);
  assert.ok(diff <= 3e-5, `latents max abs diff ${diff} (measured 9.5e-6)`);
});
