// -m/--model and the session flags shared by every command that runs a model.
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Option, type Command } from "commander";
import { ModelPackage } from "../model/package.js";
import type { Device } from "../model/session.js";
import { UsageError } from "../util/errors.js";
import type { Reporter } from "./io.js";

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The packages that ship inside emu2, used when no -m is given (and EMU2_MODEL is unset). */
export const EMBEDDED_PACKAGES = {
  default: join(PROJECT_ROOT, "fixtures", "models", "emu2-tiny"),
  chat: join(PROJECT_ROOT, "fixtures", "models", "emu2-chat-tiny"),
} as const;

export interface ModelOptions {
  model?: string;
  device: Device;
  deviceId: string;
  threads: string;
  cpuFallback?: boolean;
}

function parseNonNegativeInt(flag: string) {
  return (value: string): string => {
    if (!/^\d+$/.test(value)) throw new UsageError(`${flag}: expected a whole number >= 0, got ${JSON.stringify(value)}`);
    return value;
  };
}

export function addModelOptions(command: Command): Command {
  return command
    .option("-m, --model <package>", "model package folder (default: $EMU2_MODEL, else the embedded tiny package)")
    .addOption(new Option("--device <device>", "where to run").choices(["cpu", "cuda"]).default("cpu"))
    .option("--device-id <n>", "CUDA device index", parseNonNegativeInt("--device-id"), "0")
    .option("--cpu-fallback", "run on the CPU when CUDA is unavailable instead of failing")
    .option("-t, --threads <n>", "CPU threads per operator (0 = all cores)", parseNonNegativeInt("--threads"), "0");
}

/** Opens the package the user named, or the embedded one with a one-line notice saying so. */
export function openModel(options: ModelOptions, reporter: Reporter, kind: keyof typeof EMBEDDED_PACKAGES = "default"): ModelPackage {
  let dir = options.model ?? (process.env.EMU2_MODEL || undefined);
  const embedded = dir === undefined;
  if (dir === undefined) {
    dir = EMBEDDED_PACKAGES[kind];
    if (!existsSync(dir)) throw new UsageError(`no -m/--model given and the embedded package ${dir} is missing: pass a model package folder`);
  }
  const pkg = ModelPackage.open(dir, {
    device: options.device,
    deviceId: Number(options.deviceId),
    threads: Number(options.threads),
    allowCpuFallback: options.cpuFallback ?? false,
    onFallback: (reason) => reporter.notice(`emu2: ${reason}`),
  });
  if (embedded) {
    const shown = relative(process.cwd(), dir) || dir;
    reporter.notice(`emu2: using the embedded package ${pkg.name} (${shown}): ${pkg.manifest.description}. Pass -m for a real model.`);
  }
  return pkg;
}
