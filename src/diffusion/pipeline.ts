// The Emu2-Gen image pipeline (pipeline_emu2_gen.py semantics) over the package's unet and vae_decoder graphs:
// seeded latents x init_noise_sigma; per step one UNet call on the batch [cond; uncond], noise = uncond +
// s (cond - uncond), an Euler step; then the VAE decodes latents / scaling_factor and the image is (x / 2 + 0.5)
// clamped to [0, 1]. Guidance applies only when s > 1 (the official do_classifier_free_guidance); otherwise the
// UNet sees the cond batch alone. The same loop does autoencoding when cond holds image features and uncond the
// features of an all-zero normalized image.
import type { Dtype, VisualDecoderConfig } from "../model/manifest.js";
import { fromOrt, toOrt, type Session } from "../model/ort.js";
import { checkTensor, type Tensor } from "../model/tensor.js";
import { initialNoise } from "./noise.js";
import { eulerSchedule, eulerStep, scaleModelInput } from "./scheduler.js";

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

export interface GeneratedImages {
  /** RGB in [0,1], [B,3,H,W] row-major. */
  images: Float32Array;
  dims: [number, number, number, number];
  /** Final latents [B,C,h,w] (before the division by scaling_factor). */
  latents: Float32Array;
}

const f = Math.fround;

export async function generateImages(
  sessions: VisualDecoderSessions,
  config: VisualDecoderConfig,
  options: GenerateImagesOptions,
): Promise<GeneratedImages> {
  const dtype = options.dtype ?? "float32";
  const steps = options.steps ?? config.num_inference_steps;
  const scale = options.guidanceScale ?? config.guidance_scale;
  const guided = scale > 1;
  if (options.cond.dims.length !== 3) throw new RangeError(`cond: expected dims [B,Q,W], got [${options.cond.dims.join(",")}]`);
  const [batch, queries, width] = options.cond.dims;
  checkTensor(options.cond, "cond");
  if (guided) {
    if (!options.uncond) throw new RangeError("guidance scale > 1 needs uncond embeddings");
    checkTensor(options.uncond, "uncond");
    if (options.uncond.dims.some((d, i) => d !== options.cond.dims[i])) {
      throw new RangeError(`uncond dims [${options.uncond.dims}] differ from cond dims [${options.cond.dims}]`);
    }
  }

  // One UNet batch for the whole loop: the inputs that do not change are built once, and the shapes stay fixed.
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

  const channels = config.latent_channels;
  const side = config.latent_size;
  const perImage = channels * side * side;
  const schedule = eulerSchedule(config.scheduler, steps);
  const latents = initialNoise(options.seed, batch, perImage);
  for (let i = 0; i < latents.length; i++) latents[i] = f(latents[i] * schedule.initNoiseSigma);

  const tensor = (data: Float32Array, dims: readonly number[]) => toOrt({ data, dims }, dtype);
  const fixedFeeds = {
    encoder_hidden_states: await tensor(hidden, [rows, queries, width]),
    text_embeds: await tensor(textEmbeds, [rows, width]),
    time_ids: await tensor(timeIds, [rows, 6]),
  };
  const modelInput = new Float32Array(rows * perImage);
  const timestep = new Float32Array(rows);
  const guidance = f(scale);
  for (let step = 0; step < steps; step++) {
    scaleModelInput(schedule, step, latents, modelInput);
    if (guided) modelInput.copyWithin(batch * perImage, 0, batch * perImage);
    timestep.fill(schedule.timesteps[step]);
    const out = await sessions.unet.run({
      sample: await tensor(modelInput, [rows, channels, side, side]),
      timestep: await tensor(timestep, [rows]),
      ...fixedFeeds,
    });
    const prediction = fromOrt(out.out_sample, "unet out_sample").data;
    let noise = prediction;
    if (guided) {
      noise = new Float32Array(batch * perImage);
      const offset = batch * perImage;
      for (let i = 0; i < noise.length; i++) {
        const c = prediction[i], u = prediction[offset + i];
        noise[i] = u + f(guidance * f(c - u));
      }
    }
    eulerStep(schedule, step, noise, latents);
    options.onStep?.({ step: step + 1, steps, timestep: schedule.timesteps[step] });
  }

  const inverse = f(1 / config.scaling_factor);
  const scaled = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) scaled[i] = inverse * latents[i];
  const decoded = await sessions.vae.run({ latent_sample: await tensor(scaled, [batch, channels, side, side]) });
  const sample = fromOrt(decoded.sample, "vae_decoder sample");
  const images = new Float32Array(sample.data.length);
  for (let i = 0; i < images.length; i++) images[i] = Math.min(1, Math.max(0, f(f(sample.data[i] / 2) + 0.5)));
  const dims = sample.dims as [number, number, number, number];
  return { images, dims, latents };
}
