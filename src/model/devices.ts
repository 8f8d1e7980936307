// What ONNX Runtime can run on here (`emu2 info --devices`): the CPU, WebGPU (with the Vulkan adapters vulkaninfo
// names, and whether float16 runs on them), and CUDA when its provider libraries are installed.
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { Emu2Error } from "../util/errors.js";
import { writeOnnxModel } from "./onnx-writer.js";
import { loadOrt } from "./ort.js";
import {
  describeWebGpuFailure,
  listVulkanAdapters,
  noteWebGpuOpened,
  webGpuRunsFloat16,
  type VulkanAdapter,
} from "./webgpu.js";

export interface DeviceReport {
  cpu: { model: string; cores: number };
  webgpu: { available: boolean; reason?: string; float16?: boolean; adapters?: VulkanAdapter[] };
  cuda: { available: boolean; reason?: string };
}

/** Why WebGPU cannot run here (one line), or undefined where a one-node graph runs on it. */
export async function webGpuProblem(): Promise<string | undefined> {
  const ort = loadOrt();
  const graph = writeOnnxModel({
    name: "webgpu_probe",
    opset: 17,
    inputs: [{ name: "x", type: "float32", dims: [1] }],
    outputs: [{ name: "y", type: "float32", dims: [1] }],
    nodes: [{ op: "Neg", inputs: ["x"], outputs: ["y"] }],
  });
  noteWebGpuOpened(0);
  try {
    await (await ort.InferenceSession.create(graph, { executionProviders: ["webgpu"], logSeverityLevel: 3 })).release();
    return undefined;
  } catch (err) {
    return describeWebGpuFailure(err);
  }
}

/** onnxruntime-node looks for the CUDA provider libraries beside its binding (bin/napi-v6/linux/x64 in its package). */
function cudaLibraries(): string {
  const entry = createRequire(import.meta.url).resolve("onnxruntime-node");
  return join(dirname(entry), "..", "bin", "napi-v6", process.platform, process.arch);
}

export async function listDevices(): Promise<DeviceReport> {
  const cpu = { model: cpus()[0]?.model.trim() ?? "unknown", cores: cpus().length };
  const problem = await webGpuProblem();
  const webgpu: DeviceReport["webgpu"] = problem
    ? { available: false, reason: problem }
    : { available: true, float16: await webGpuRunsFloat16(), adapters: listVulkanAdapters() };
  const cudaLib = join(cudaLibraries(), "libonnxruntime_providers_cuda.so");
  const cuda = existsSync(cudaLib)
    ? { available: true }
    : { available: false, reason: "provider libraries not installed (npm run install-cuda)" };
  return { cpu, webgpu, cuda };
}

/** Variables of Mesa's device-select layer (src/vulkan/device-select-layer in Mesa) through which a user picks a GPU. */
const USER_SELECTION = ["MESA_VK_DEVICE_SELECT", "DRI_PRIME"] as const;
/** Loader variables that narrow the drivers (or layers) a Vulkan instance sees. */
const LOADER_FILTERS = ["VK_LOADER_DRIVERS_SELECT", "VK_LOADER_DRIVERS_DISABLE", "VK_DRIVER_FILES", "VK_ICD_FILENAMES"];
const LAYER_DISABLES = ["NODEVICE_SELECT", "VK_LOADER_LAYERS_DISABLE"];

const hex = (n: number) => n.toString(16);
const ids = (a: VulkanAdapter) => `${hex(a.vendorId)}:${hex(a.deviceId)}`;
const setIn = (env: NodeJS.ProcessEnv, names: readonly string[]) =>
  names.filter((n) => env[n] !== undefined && env[n] !== "").map((n) => `${n}=${env[n]}`);

/**
 * The environment that makes Dawn's Vulkan instance offer only adapter `index` of `emu2 info --devices`, through
 * Mesa's device-select layer (read when the instance is created): MESA_VK_DEVICE_SELECT=<vendorID>:<deviceID>
 * (hex), or DRI_PRIME=pci-<domain>_<bus>_<device>_<function> where two adapters share vendor:device (the layer
 * takes the last of equal ids), with MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 so that only the chosen adapter
 * is enumerated (moving it first is not enough: Dawn re-ranks adapters by type). An empty result leaves Dawn's
 * first adapter, index 0. Throws, in one line, why `index` cannot be chosen here. A user's own
 * MESA_VK_DEVICE_SELECT or DRI_PRIME is kept, not overridden.
 */
export function webGpuAdapterVariables(
  index: number,
  adapters: VulkanAdapter[] | undefined,
  layerActive: boolean | undefined,
  env: NodeJS.ProcessEnv,
): Record<string, string> {
  const flag = `--device-id ${index}`;
  if (adapters === undefined) {
    if (index === 0) return {};
    throw new Emu2Error(
      `${flag}: emu2 lists the WebGPU adapters with vulkaninfo, which is not installed (package vulkan-tools)`,
    );
  }
  const own = env.MESA_VK_DEVICE_SELECT;
  if (own !== undefined && own !== "") {
    const m = /^([0-9a-f]+):([0-9a-f]+)!?$/i.exec(own);
    if (!m) throw new Emu2Error(`MESA_VK_DEVICE_SELECT=${own}: expected <vendorID>:<deviceID> in hex (e.g. 10de:2684)`);
    const [vendor, device] = [parseInt(m[1], 16), parseInt(m[2], 16)];
    if (!adapters.some((a) => a.vendorId === vendor && a.deviceId === device)) {
      const have = adapters.map((a) => `${ids(a)} ${a.name}`).join(", ") || "none";
      throw new Emu2Error(
        `MESA_VK_DEVICE_SELECT=${own} names no Vulkan device of this machine (it has: ${have}); ` +
          "Mesa's device-select layer would quietly use another: correct or unset it",
      );
    }
  }
  const chosen = setIn(env, USER_SELECTION);
  if (chosen.length > 0) {
    if (index === 0) return {};
    throw new Emu2Error(
      `${flag}: the environment already chooses the Vulkan adapter (${chosen.join(", ")}); ` +
        "unset it to choose with --device-id, or leave --device-id at 0",
    );
  }
  if (index > 0 && index >= adapters.length) {
    const filters = setIn(env, LOADER_FILTERS);
    throw new Emu2Error(
      `${flag}: unknown WebGPU adapter index: this machine has ${adapters.length} (see emu2 info --devices)` +
        (filters.length ? `; ${filters.join(", ")} limits the drivers the Vulkan loader uses` : ""),
    );
  }
  if (!layerActive) {
    if (index === 0) return {};
    const disabled = setIn(env, LAYER_DISABLES);
    throw new Emu2Error(
      `${flag}: choosing a WebGPU adapter needs Mesa's device-select Vulkan layer, which is not active here` +
        (disabled.length ? ` (disabled by ${disabled.join(", ")})` : " (install the package mesa-vulkan-drivers)") +
        "; or hide the other GPUs from the Vulkan loader (VK_LOADER_DRIVERS_SELECT) and pass --device-id 0",
    );
  }
  const target = adapters[index];
  const twins = adapters.filter((a) => ids(a) === ids(target));
  const only = { MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: "1" };
  if (twins.length === 1) return { MESA_VK_DEVICE_SELECT: ids(target), ...only };
  if (twins.every((a) => a.pci !== undefined) && target.pci) {
    const { domain, bus, device, function: fn } = target.pci;
    const p2 = (n: number) => hex(n).padStart(2, "0");
    return { DRI_PRIME: `pci-${hex(domain).padStart(4, "0")}_${p2(bus)}_${p2(device)}_${fn}`, ...only };
  }
  if (index === 0) return {};
  throw new Emu2Error(
    `${flag}: adapters ${twins.map((a) => a.index).join(" and ")} are the same model (${target.name}, ${ids(target)}) ` +
      "and the driver reports no PCI address (VK_EXT_pci_bus_info) to tell them apart",
  );
}
