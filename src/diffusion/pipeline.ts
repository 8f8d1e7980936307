// The Emu2-Gen image pipeline (pipeline_emu2_gen.py semantics) over the package's unet and vae_decoder graphs, as
// steps (diffusers' pipelines, mlx-examples' generate_latents): conditioning (the UNet's fixed inputs), initial
// latents (seeded noise x init_noise_sigma), a denoising loop that yields after every step (one UNet call on the
// batch [cond; uncond], noise = uncond + s (cond - uncond), an Euler step), and decode (the VAE on latents /
// scaling_factor, the image (x / 2 + 0.5) clamped to [0, 1]). A caller that iterates the loop itself gets progress
// and can stop between steps; generateImages runs all four. Guidance applies only when s > 1 (the official do_classifier_free_guidance); otherwise the
// UNet sees the cond batch alone. The same loop does autoencoding when cond holds image features and uncond the
// features of an all-zero normalized image.
import type { Dtype, VisualDecoderConfig } from "../model/manifest.js";
import { fromOrt, toOrt, type OrtTensor, type Session } from "../model/ort.js";
import { checkTensor, type Tensor } from "../model/tensor.js";
import { initialNoise } from "./noise.js";
import { eulerSchedule, eulerStep, scaleModelInput, type EulerSchedule } from "./scheduler.js";

export interface VisualDecoderSessions {
  unet: Session;
  vae: Session;
}

export interface StepProgress {
  step: number; // 1-based, after the step finished
  steps: number;
  timestep: number;
}

export interface GenerateImagesOptions {
  /** Visual embeddings [B,Q,W]. */
  cond: Tensor;
  /** Required when guidanceScale > 1. */
  uncond?: Tensor;
  steps?: number;
  guidanceScale?: number;
  seed: number;
  /** Element type of the graphs' activations: the manifest's dtype. */
  dtype?: Dtype;
  onStep?: (progress: StepProgress) => void;
}

/** After a denoising step: its progress and the latents [B,C,h,w] so far (the loop's own buffer, updated in place). */
export interface DenoisedStep extends StepProgress {
  latents: Float32Array;
}

export interface GeneratedImages {
  /** RGB in [0,1], [B,3,H,W] row-major. */
  images: Float32Array;
  dims: [number, number, number, number];
}

/** The UNet inputs that stay fixed through the loop (built once, so the shapes never change). */
export interface Conditioning {
  batch: number;
  /** UNet batch rows: 2B with guidance ([cond; uncond]), else B. */
  rows: number;
  guided: boolean;
  guidanceScale: number;
  dtype: Dtype;
  feeds: { encoder_hidden_states: OrtTensor; text_embeds: OrtTensor; time_ids: OrtTensor };
}

const f = Math.fround;

/** The UNet's fixed inputs: [cond; uncond] when guidance applies (s > 1), text_embeds = their mean over the tokens, time_ids. */
export async function conditioning(
  config: VisualDecoderConfig,
  options: Pick<GenerateImagesOptions, "cond" | "uncond" | "guidanceScale" | "dtype">,
): Promise<Conditioning> {
  const dtype = options.dtype ?? "float32";
  const scale = options.guidanceScale ?? config.guidance_scale;
  const guided = scale > 1;
  if (options.cond.dims.length !== 3)
    throw new RangeError(`cond: expected dims [B,Q,W], got [${options.cond.dims.join(",")}]`);
  const [batch, queries, width] = options.cond.dims;
  checkTensor(options.cond, "cond");
  if (guided) {
    if (!options.uncond) throw new RangeError("guidance scale > 1 needs uncond embeddings");
    checkTensor(options.uncond, "uncond");
    if (options.uncond.dims.some((d, i) => d !== options.cond.dims[i])) {
      throw new RangeError(`uncond dims [${options.uncond.dims}] differ from cond dims [${options.cond.dims}]`);
    }
  }
  const rows = guided ? 2 * batch : batch;
  const hidden = new Float32Array(rows * queries * width);
  hidden.set(options.cond.data);
  if (guided) hidden.set(options.uncond!.data, batch * queries * width);
  const textEmbeds = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    // torch.mean over the tokens: a float32 sum divided by Q (the order of the sum differs, within float32 noise).
    for (let c = 0; c < width; c++) {
      let sum = 0;
      for (let q = 0; q < queries; q++) sum += hidden[(r * queries + q) * width + c];
      textEmbeds[r * width + c] = sum / queries;
    }
  }
  const timeIds = new Float32Array(rows * 6);
  for (let r = 0; r < rows; r++) timeIds.set(config.time_ids, r * 6);
  return {
    batch,
    rows,
    guided,
    guidanceScale: scale,
    dtype,
    feeds: {
      encoder_hidden_states: toOrt({ data: hidden, dims: [rows, queries, width] }, dtype),
      text_embeds: toOrt({ data: textEmbeds, dims: [rows, width] }, dtype),
      time_ids: toOrt({ data: timeIds, dims: [rows, 6] }, dtype),
    },
  };
}

/** Seeded noise x init_noise_sigma [B,C,h,w]; image i uses seed + i. */
export function initialLatents(
  config: VisualDecoderConfig,
  schedule: EulerSchedule,
  batch: number,
  seed: number,
): Float32Array {
  const latents = initialNoise(seed, batch, config.latent_channels * config.latent_size * config.latent_size);
  for (let i = 0; i < latents.length; i++) latents[i] = f(latents[i] * schedule.initNoiseSigma);
  return latents;
}

/** The denoising loop on `latents` (updated in place): one UNet call and one Euler step per iteration, then a yield. */
export async function* denoise(
  unet: Session,
  config: VisualDecoderConfig,
  cond: Conditioning,
  schedule: EulerSchedule,
  latents: Float32Array,
): AsyncGenerator<DenoisedStep> {
  const { batch, rows, guided, dtype } = cond;
  const channels = config.latent_channels;
  const side = config.latent_size;
  const perImage = channels * side * side;
  const steps = schedule.timesteps.length;
  const modelInput = new Float32Array(rows * perImage);
  const timestep = new Float32Array(rows);
  const guidance = f(cond.guidanceScale);
  for (let step = 0; step < steps; step++) {
    scaleModelInput(schedule, step, latents, modelInput);
    if (guided) modelInput.copyWithin(batch * perImage, 0, batch * perImage);
    timestep.fill(schedule.timesteps[step]);
    const out = await unet.run({
      sample: toOrt({ data: modelInput, dims: [rows, channels, side, side] }, dtype),
      timestep: toOrt({ data: timestep, dims: [rows] }, dtype),
      ...cond.feeds,
    });
    const prediction = fromOrt(out.out_sample, "unet out_sample").data;
    let noise = prediction;
    if (guided) {
      noise = new Float32Array(batch * perImage);
      const offset = batch * perImage;
      for (let i = 0; i < noise.length; i++) {
        const c = prediction[i],
          u = prediction[offset + i];
        noise[i] = u + f(guidance * f(c - u));
      }
    }
    eulerStep(schedule, step, noise, latents);
    yield { step: step + 1, steps, timestep: schedule.timesteps[step], latents };
  }
}

/** The VAE on latents / scaling_factor; images (x / 2 + 0.5) clamped to [0, 1]. */
export async function decodeLatents(
  vae: Session,
  config: VisualDecoderConfig,
  latents: Float32Array,
  batch: number,
  dtype: Dtype = "float32",
): Promise<GeneratedImages> {
  const side = config.latent_size;
  const inverse = f(1 / config.scaling_factor);
  const scaled = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) scaled[i] = inverse * latents[i];
  const decoded = await vae.run({
    latent_sample: toOrt({ data: scaled, dims: [batch, config.latent_channels, side, side] }, dtype),
  });
  const sample = fromOrt(decoded.sample, "vae_decoder sample");
  const images = new Float32Array(sample.data.length);
  for (let i = 0; i < images.length; i++) images[i] = Math.min(1, Math.max(0, f(f(sample.data[i] / 2) + 0.5)));
  return { images, dims: sample.dims as [number, number, number, number] };
}

/** The whole pipeline: conditioning, initial latents, every denoising step (reported to onStep), decode. */
export async function generateImages(
  sessions: VisualDecoderSessions,
  config: VisualDecoderConfig,
  options: GenerateImagesOptions,
): Promise<GeneratedImages> {
  const cond = await conditioning(config, options);
  const schedule = eulerSchedule(config.scheduler, options.steps ?? config.num_inference_steps);
  const latents = initialLatents(config, schedule, cond.batch, options.seed);
  for await (const step of denoise(sessions.unet, config, cond, schedule, latents)) options.onStep?.(step);
  return decodeLatents(sessions.vae, config, latents, cond.batch, cond.dtype);
}
