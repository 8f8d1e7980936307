import assert from "node:assert/strict";
import { test } from "node:test";
import { eulerSchedule, eulerStep, scaleModelInput, type SchedulerConfig } from "../../src/diffusion/scheduler.js";
import type { VisualDecoderConfig } from "../../src/model/manifest.js";
import { Golden, maxAbsDiff } from "../helpers/golden.js";
import { goldenDir } from "../helpers/fixtures.js";

const golden = new Golden(goldenDir("emu2-tiny", "diffusion"));
const section = golden.meta.visual_decoder as VisualDecoderConfig;

test("Euler sigmas, timesteps and init_noise_sigma match diffusers for 50 and 4 steps", () => {
  for (const steps of golden.meta.scheduler_steps as number[]) {
    const schedule = eulerSchedule(section.scheduler, steps);
    const sigmas = golden.float32(`scheduler.${steps}.sigmas`).data;
    assert.equal(schedule.sigmas.length, steps + 1);
    assert.ok(maxAbsDiff(schedule.sigmas, sigmas) <= 1e-6, `sigmas for ${steps} steps`);
    assert.deepEqual(Array.from(schedule.timesteps), Array.from(golden.float32(`scheduler.${steps}.timesteps`).data));
    assert.ok(
      Math.abs(schedule.initNoiseSigma - golden.float32(`scheduler.${steps}.init_noise_sigma`).data[0]) <= 1e-6,
    );
  }
});

test("leading spacing: SDXL's 50-step schedule runs 981..1 and starts the noise at sigma 13.1585", () => {
  const s = eulerSchedule(section.scheduler, 50);
  assert.equal(s.timesteps[0], 981);
  assert.equal(s.timesteps[49], 1);
  assert.equal(s.sigmas[50], 0);
  // sigma(981) and sqrt(sigma^2 + 1), the values diffusers reports for SDXL's EulerDiscreteScheduler at 50 steps.
  assert.ok(Math.abs(s.sigmas[0] - 13.1204) < 1e-3, `sigma max ${s.sigmas[0]}`);
  assert.ok(Math.abs(s.initNoiseSigma - 13.1585) < 1e-3, `init_noise_sigma ${s.initNoiseSigma}`);
});

test("other spacings differ from leading and stay within the training range", () => {
  const cfg = (spacing: SchedulerConfig["timestep_spacing"]): SchedulerConfig => ({
    ...section.scheduler,
    timestep_spacing: spacing,
  });
  assert.deepEqual(Array.from(eulerSchedule(cfg("trailing"), 4).timesteps), [999, 749, 499, 249]);
  assert.deepEqual(Array.from(eulerSchedule(cfg("linspace"), 4).timesteps), [999, 666, 333, 0]);
  assert.throws(() => eulerSchedule(section.scheduler, 0), /positive integer/);
});

test("an Euler step with the true noise lands on the clean sample", () => {
  const s = eulerSchedule(section.scheduler, 4);
  const clean = Float32Array.from([0.5, -1, 2]);
  const eps = Float32Array.from([1, -0.25, 0.75]);
  const x = clean.map((v, i) => v + s.sigmas[3] * eps[i]);
  eulerStep(s, 3, eps, x); // last step: sigma_next = 0
  assert.ok(maxAbsDiff(x, clean) < 1e-5);
  const scaled = new Float32Array(3);
  scaleModelInput(s, 0, Float32Array.from([1, 2, 3]), scaled);
  assert.ok(Math.abs(scaled[0] * Math.sqrt(s.sigmas[0] ** 2 + 1) - 1) < 1e-6);
});
