// EulerDiscreteScheduler as diffusers computes it for epsilon prediction with s_churn 0 and no Karras sigmas (the
// Emu2-Gen / SDXL setting). Arithmetic that diffusers does in float32 is rounded to float32 here (Math.fround) so the
// schedule and every step match python/emu2ref/scheduler.py to the last bit where the operations allow.
import type { VisualDecoderConfig } from "../model/manifest.js";

export type SchedulerConfig = VisualDecoderConfig["scheduler"];

const f = Math.fround;

export interface EulerSchedule {
  /** The UNet's timestep value at each step, float32. */
  timesteps: Float32Array;
  /** sigma at each step plus the final 0 (steps + 1 values), float32. */
  sigmas: Float32Array;
  /** Scale of the initial noise: sqrt(max sigma^2 + 1) for "leading" spacing, max sigma otherwise. */
  initNoiseSigma: number;
}

/** sigma_t = sqrt((1 - alphabar_t) / alphabar_t) for each training timestep, as diffusers' float32 tensors hold it. */
export function trainingSigmas(config: SchedulerConfig): Float32Array {
  const n = config.num_train_timesteps;
  // torch.linspace(sqrt(beta_start), sqrt(beta_end), n, float32) ** 2: the first half counts up from the start,
  // the second half down from the end, with a float32 step.
  const start = f(Math.sqrt(config.beta_start));
  const end = f(Math.sqrt(config.beta_end));
  const step = f(f(end - start) / (n - 1));
  const sigmas = new Float32Array(n);
  let alphaBar = 1; // torch's CPU cumprod accumulates float32 products in double
  for (let i = 0; i < n; i++) {
    const root = i < n / 2 ? f(start + f(step * i)) : f(end - f(step * (n - 1 - i)));
    const beta = f(root * root);
    alphaBar *= f(1 - beta);
    const ac = f(alphaBar);
    sigmas[i] = f(Math.sqrt(f(f(1 - ac) / ac)));
  }
  return sigmas;
}

export function eulerSchedule(config: SchedulerConfig, steps: number): EulerSchedule {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer (got ${steps})`);
  const n = config.num_train_timesteps;
  if (steps > n) throw new RangeError(`steps ${steps} exceeds the ${n} training timesteps`);
  // Timesteps in float64 (the sigma interpolation sees them so), stored as float32 like diffusers' tensor.
  const exact = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    const k = steps - 1 - i; // timesteps run from high noise to low
    switch (config.timestep_spacing) {
      case "leading":
        exact[i] = k * Math.floor(n / steps) + config.steps_offset;
        break;
      case "trailing":
        exact[i] = roundHalfEven(n - i * (n / steps)) - 1;
        break;
      case "linspace":
        exact[i] = k * ((n - 1) / Math.max(steps - 1, 1));
        break;
    }
  }
  const train = trainingSigmas(config);
  const timesteps = Float32Array.from(exact);
  const sigmas = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) sigmas[i] = interpolate(train, exact[i]);
  sigmas[steps] = 0;
  let max = 0;
  for (const s of sigmas) max = Math.max(max, s);
  const initNoiseSigma = config.timestep_spacing === "leading" ? f(Math.sqrt(f(f(max * max) + 1))) : max;
  return { timesteps, sigmas, initNoiseSigma };
}

/** np.interp over the integer grid 0..n-1, in float64. */
function interpolate(values: Float32Array, t: number): number {
  if (t <= 0) return values[0];
  if (t >= values.length - 1) return values[values.length - 1];
  const lo = Math.floor(t);
  const frac = t - lo;
  return frac === 0 ? values[lo] : values[lo] + (values[lo + 1] - values[lo]) * frac;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The UNet input at step i: sample / sqrt(sigma^2 + 1), written into `out`. */
export function scaleModelInput(schedule: EulerSchedule, step: number, sample: Float32Array, out: Float32Array): void {
  const sigma = schedule.sigmas[step];
  const divisor = f(Math.sqrt(f(f(sigma * sigma) + 1)));
  for (let i = 0; i < sample.length; i++) out[i] = sample[i] / divisor;
}

/** One Euler step x_t -> x_{t-1} in place: x0 = x - sigma eps, d = (x - x0) / sigma, x += d (sigma_next - sigma). */
export function eulerStep(schedule: EulerSchedule, step: number, noisePred: Float32Array, sample: Float32Array): void {
  const sigma = schedule.sigmas[step];
  const dt = f(schedule.sigmas[step + 1] - sigma);
  for (let i = 0; i < sample.length; i++) {
    const x = sample[i];
    const predOriginal = f(x - f(sigma * noisePred[i]));
    const derivative = f(f(x - predOriginal) / sigma);
    sample[i] = x + f(derivative * dt);
  }
}
