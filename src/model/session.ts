// The one place that creates ONNX Runtime sessions. Everything else asks a ModelPackage for a graph by role.
import { existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { Emu2Error, PackageError } from "../util/errors.js";
import { loadOrt, type Session, type SessionCreateOptions } from "./ort.js";
import { initializerSizes } from "./onnx-file.js";
import { webGpuAdapterVariables } from "./devices.js";
import {
  bufferLimitMessage,
  describeWebGpuFailure,
  deviceSelectLayerActive,
  isBufferLimit,
  listVulkanAdapters,
  noteWebGpuOpened,
  ortReason,
  webGpuOpenedAdapter,
} from "./webgpu.js";

export const DEVICES = ["cpu", "cuda", "webgpu"] as const;
export type Device = (typeof DEVICES)[number];
export type GraphOptimization = "disabled" | "basic" | "extended" | "all";

export interface SessionOptions {
  device: Device;
  /** CUDA: the device index. WebGPU: the adapter index of `emu2 info --devices`. */
  deviceId: number;
  /** Threads inside one operator; 0 lets ONNX Runtime choose (all cores). */
  threads: number;
  graphOptimization: GraphOptimization;
  /** Where to keep optimized graphs so later runs skip optimization; undefined disables the cache. */
  optimizedCacheDir?: string;
  /** Use the CPU when the GPU (CUDA or WebGPU) was asked for but is not available. */
  allowCpuFallback: boolean;
  /** Called once when the CPU is used in place of the GPU. */
  onFallback?: (reason: string) => void;
  /** Graphs placed elsewhere than `device`: `part0`, `part1`, ... (decoder parts) or a graph role -> placement. */
  deviceMap?: Record<string, Placement>;
}

export interface Placement {
  device: Device;
  deviceId: number;
}

/** What one graph needs beyond the package-wide options. */
export interface GraphOptions {
  /** Names graph errors (a role or a file). */
  what?: string;
  /** Outputs that stay on the device as WebGPU buffers (the decoder's presents); others come back to host memory. */
  deviceOutputs?: readonly string[];
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

/**
 * Makes adapter `index` of `emu2 info --devices` the one ONNX Runtime's WebGPU provider gets. The provider takes no
 * adapter choice (1.30: its deviceId is a context key, and Dawn hands it the adapter it ranks first), so the choice
 * goes through Mesa's device-select Vulkan layer: its variables are set in this process's environment (Node's
 * process.env writes reach the native environment) before the first WebGPU session, when Dawn creates its Vulkan
 * instance. That instance lives as long as the process, so a later different index is refused.
 */
export function selectWebGpuAdapter(index: number): void {
  const opened = webGpuOpenedAdapter();
  if (opened === index) return;
  if (opened !== undefined) {
    throw new Emu2Error(
      `--device-id ${index}: this process already runs WebGPU on adapter ${opened}, and ONNX Runtime keeps one WebGPU ` +
        "adapter per process: use the same --device-id for every WebGPU graph (or another process)",
    );
  }
  Object.assign(
    process.env,
    webGpuAdapterVariables(index, listVulkanAdapters(), deviceSelectLayerActive(), process.env),
  );
  noteWebGpuOpened(index);
}

/** A session of a graph file (or of graph bytes the runtime built) on the chosen device. */
export async function createSession(
  source: string | Uint8Array,
  options: SessionOptions,
  graph: GraphOptions = {},
): Promise<Session> {
  const ort = loadOrt();
  const what = graph.what ?? (typeof source === "string" ? source : "graph");
  if (typeof source === "string" && !existsSync(source)) throw new PackageError(`${source}: no such graph file`);
  const base: SessionCreateOptions = {
    graphOptimizationLevel: options.graphOptimization,
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    logSeverityLevel: 3,
  };
  if (options.optimizedCacheDir && typeof source === "string") {
    mkdirSync(options.optimizedCacheDir, { recursive: true });
    base.optimizedModelFilePath = join(options.optimizedCacheDir, `${options.device}-${basename(source)}`);
  }
  if (options.device === "cuda") {
    try {
      return await ort.InferenceSession.create(source as string, {
        ...base,
        executionProviders: [{ name: "cuda", deviceId: options.deviceId }],
      });
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
      if (!options.allowCpuFallback) {
        throw new Emu2Error(`CUDA is not available to ONNX Runtime (${reason}): ${CUDA_INSTALL_HINT}`);
      }
      options.onFallback?.(`CUDA unavailable (${reason}); running on the CPU`);
    }
  }
  if (options.device === "webgpu") {
    selectWebGpuAdapter(options.deviceId);
    try {
      const session = await ort.InferenceSession.create(source as string, {
        ...base,
        // Every session uses WebGPU context 0, so that buffers one graph leaves on the device can feed another.
        executionProviders: ["webgpu"],
        ...(graph.deviceOutputs?.length
          ? { preferredOutputLocation: Object.fromEntries(graph.deviceOutputs.map((n) => [n, "gpu-buffer" as const])) }
          : {}),
      });
      return explainRunFailures(session, what, typeof source === "string" ? source : undefined);
    } catch (err) {
      if (err instanceof Emu2Error) throw err;
      const reason = describeWebGpuFailure(err);
      if (!options.allowCpuFallback) throw new Emu2Error(`${what}: ${reason}`);
      options.onFallback?.(`${reason.replace(/; or use --device cpu$/, "")}; running on the CPU`);
    }
  }
  try {
    return await ort.InferenceSession.create(source as string, { ...base, executionProviders: ["cpu"] });
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    throw new PackageError(`${what}: ONNX Runtime cannot load this graph: ${reason}`);
  }
}

/** Failures inside a WebGPU run (out of memory, a weight over the adapter's limits) become one emu2 line. */
function explainRunFailures(session: Session, what: string, file: string | undefined): Session {
  const run = session.run.bind(session) as (...args: unknown[]) => ReturnType<Session["run"]>;
  session.run = (async (...args: unknown[]) => {
    try {
      return await run(...args);
    } catch (err) {
      const reason = ortReason(err);
      const message = isBufferLimit(reason) && file ? largestWeightMessage(file, reason) : describeWebGpuFailure(err);
      throw new Emu2Error(`${what} on WebGPU: ${message}`);
    }
  }) as Session["run"];
  return session;
}

/** ONNX Runtime does not say which tensor was too large: the graph's largest weight is named, with the limit. */
function largestWeightMessage(file: string, reason: string): string {
  return bufferLimitMessage(reason, initializerSizes(file)[0], listVulkanAdapters()?.[0]?.maxStorageBufferRange);
}
