// The one place that creates ONNX Runtime sessions. Everything else asks a ModelPackage for a graph by role.
import { existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { Emu2Error, PackageError } from "../util/errors.js";
import { loadOrt, type Session, type SessionCreateOptions } from "./ort.js";

export type Device = "cpu" | "cuda";
export type GraphOptimization = "disabled" | "basic" | "extended" | "all";

export interface SessionOptions {
  device: Device;
  deviceId: number;
  /** Threads inside one operator; 0 lets ONNX Runtime choose (all cores). */
  threads: number;
  graphOptimization: GraphOptimization;
  /** Where to keep optimized graphs so later runs skip optimization; undefined disables the cache. */
  optimizedCacheDir?: string;
  /** Use the CPU when CUDA was asked for but its provider libraries are missing. */
  allowCpuFallback: boolean;
  /** Called once when the CPU is used in place of CUDA. */
  onFallback?: (reason: string) => void;
  /** Graphs placed elsewhere than `device`: `part0`, `part1`, ... (decoder parts) or a graph role -> placement. */
  deviceMap?: Record<string, Placement>;
}

export interface Placement {
  device: Device;
  deviceId: number;
}

export const DEFAULT_SESSION_OPTIONS: SessionOptions = {
  device: "cpu",
  deviceId: 0,
  threads: 0,
  graphOptimization: "all",
  allowCpuFallback: false,
};

export const CUDA_INSTALL_HINT =
  "install the CUDA provider libraries with `npm run install-cuda` (needs internet, CUDA 12 and cuDNN 9), or use --device cpu";

export async function createSession(modelPath: string, options: SessionOptions): Promise<Session> {
  const ort = await loadOrt();
  if (!existsSync(modelPath)) throw new PackageError(`${modelPath}: no such graph file`);
  const base: SessionCreateOptions = {
    graphOptimizationLevel: options.graphOptimization,
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    logSeverityLevel: 3,
  };
  if (options.optimizedCacheDir) {
    mkdirSync(options.optimizedCacheDir, { recursive: true });
    base.optimizedModelFilePath = join(options.optimizedCacheDir, `${options.device}-${basename(modelPath)}`);
  }
  if (options.device === "cuda") {
    try {
      return await ort.InferenceSession.create(modelPath, { ...base, executionProviders: [{ name: "cuda", deviceId: options.deviceId }] });
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
      if (!options.allowCpuFallback) {
        throw new Emu2Error(`CUDA is not available to ONNX Runtime (${reason}): ${CUDA_INSTALL_HINT}`);
      }
      options.onFallback?.(`CUDA unavailable (${reason}); running on the CPU`);
    }
  }
  try {
    return await ort.InferenceSession.create(modelPath, { ...base, executionProviders: ["cpu"] });
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    throw new PackageError(`${modelPath}: ONNX Runtime cannot load this graph: ${reason}`);
  }
}
