// -m/--model and the session flags shared by every command that runs a model.
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Option, type Command } from "commander";
import { ModelPackage } from "../model/package.js";
import { DEVICES, type Device, type Placement } from "../model/session.js";
import { PackageError, UsageError } from "../util/errors.js";
import { wholeNumberFlag } from "./flags.js";
import type { Reporter } from "./io.js";

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The package that ships inside emu2, used when no -m is given (and EMU2_MODEL is unset): emu2-toy, a miniature
 * Emu2 trained on a synthetic world of colored shapes (docs/emu2-toy/README.md), so that a first run shows something
 * a person can check: it captions and answers questions about such images and draws them from their captions.
 */
export const EMBEDDED_PACKAGE = join(PROJECT_ROOT, "fixtures", "models", "emu2-toy");

export interface ModelOptions {
  model?: string;
  device: Device;
  deviceId: string;
  threads: string;
  cpuFallback?: boolean;
  deviceMap?: Record<string, Placement>;
}

/**
 * `part0=cpu,part1=cuda:1,lm_head=webgpu` -> graph key -> placement (keys are checked against the package on open).
 * WebGPU takes an adapter index as CUDA takes a device index.
 */
export function parseDeviceMap(value: string): Record<string, Placement> {
  const map: Record<string, Placement> = {};
  for (const entry of value.split(",")) {
    const m = /^([A-Za-z0-9_]+)=(cpu|cuda|webgpu)(?::(\d+))?$/.exec(entry.trim());
    if (!m || (m[2] === "cpu" && m[3] !== undefined)) {
      throw new UsageError(
        `--device-map: expected graph=device entries like part0=cpu,part1=cuda:1 (devices cpu, cuda, webgpu), got ${JSON.stringify(entry)}`,
      );
    }
    if (m[1] in map) throw new UsageError(`--device-map: ${m[1]} is placed twice`);
    map[m[1]] = { device: m[2] as Device, deviceId: Number(m[3] ?? 0) };
  }
  return map;
}

export function addModelOptions(command: Command): Command {
  return command
    .option("-m, --model <package>", "model package folder (default: $EMU2_MODEL, else the embedded emu2-toy)")
    .addOption(
      new Option(
        "--device <device>",
        "where to run (webgpu: any GPU with a Vulkan driver; cuda: after npm run install-cuda)",
      )
        .choices(DEVICES)
        .default("cpu"),
    )
    .option(
      "--device-id <n>",
      "CUDA device index, or WebGPU adapter index (emu2 info --devices)",
      wholeNumberFlag("--device-id"),
      "0",
    )
    .option(
      "--device-map <map>",
      "place graphs on devices: part0=cpu,part1=cuda:1 or part1=webgpu (decoder parts of a package exported with --decoder-parts) or a graph role (lm_head=cuda)",
      parseDeviceMap,
    )
    .option("--cpu-fallback", "run on the CPU when the GPU (CUDA or WebGPU) is unavailable instead of failing")
    .option("-t, --threads <n>", "CPU threads per operator (0 = all cores)", wholeNumberFlag("--threads"), "0");
}

/** Opens the package the user named, or the embedded one with a one-line notice saying so. */
export function openModel(options: ModelOptions, reporter: Reporter): ModelPackage {
  let dir = options.model ?? (process.env.EMU2_MODEL || undefined);
  const embedded = dir === undefined;
  if (dir === undefined) {
    dir = EMBEDDED_PACKAGE;
    if (!existsSync(dir))
      throw new UsageError(
        `no -m/--model given and the embedded package ${dir} is missing: pass a model package folder`,
      );
  }
  const fromEnvironment = options.model === undefined && !embedded;
  let pkg: ModelPackage;
  try {
    pkg = ModelPackage.open(dir, {
      device: options.device,
      deviceId: Number(options.deviceId),
      threads: Number(options.threads),
      allowCpuFallback: options.cpuFallback ?? false,
      deviceMap: options.deviceMap,
      onFallback: (reason) => reporter.notice(`emu2: ${reason}`),
    });
  } catch (err) {
    // A package that came from the environment is named as such: the user may not remember setting it.
    if (fromEnvironment && err instanceof PackageError)
      throw new PackageError(`$EMU2_MODEL: ${err.message} (fix or unset EMU2_MODEL, or pass -m)`);
    throw err;
  }
  if (embedded) {
    const shown = relative(process.cwd(), dir) || dir;
    reporter.notice(
      `emu2: using the embedded package ${pkg.name} (${shown}): ${pkg.manifest.description}. Pass -m for a real model.`,
    );
  }
  return pkg;
}
