// What ONNX Runtime's WebGPU provider needs from the machine, and the one-line explanations of what is missing.
// The provider (inside the onnxruntime-node binary; README "GPU") runs on Dawn's Vulkan backend: it
// needs the Vulkan loader (libvulkan.so.1) and a Vulkan driver for the GPU (or Mesa's lavapipe in software).
import { execFileSync, spawnSync } from "node:child_process";
import { writeOnnxModel } from "./onnx-writer.js";
import { loadOrt } from "./ort.js";

export const VULKAN_LOADER = "libvulkan.so.1";

export const VULKAN_LOADER_HINT =
  "install the Vulkan loader (Debian/Ubuntu package libvulkan1, Fedora vulkan-loader); on NVIDIA the driver's Vulkan " +
  "component too (e.g. libnvidia-gl-<version>)";

export const VULKAN_DRIVER_HINT =
  "install the GPU driver's Vulkan support (NVIDIA: the driver's Vulkan component, e.g. libnvidia-gl-<version>; AMD/Intel: " +
  "mesa-vulkan-drivers), or Mesa's software lavapipe (mesa-vulkan-drivers 23 or later) to test without a GPU";

/**
 * Why the Vulkan loader cannot be used, searched the way the provider loads it (dlopen of libvulkan.so.1), or
 * undefined when it loads. process.dlopen is Node's plain dlopen: a library that loads but is not a Node addon fails
 * with "did not self-register", which means it was found and loaded.
 */
export function vulkanLoaderProblem(): string | undefined {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, VULKAN_LOADER);
    return undefined;
  } catch (err) {
    const message = (err as Error).message;
    if (/did not self-register/i.test(message)) return undefined;
    if (/cannot open shared object file/i.test(message)) return `the Vulkan loader ${VULKAN_LOADER} is not installed`;
    return `the Vulkan loader ${VULKAN_LOADER} cannot be loaded (${message.split("\n")[0]})`;
  }
}

export interface VulkanAdapter {
  /** Position in Dawn's ranking for a high-performance request: 0 is the adapter ONNX Runtime gets. */
  index: number;
  /** vulkaninfo's GPU number (the loader's order). */
  vulkanIndex: number;
  name: string;
  type: string;
  driver: string;
  /** VkPhysicalDeviceProperties.vendorID and deviceID (PCI ids for PCI GPUs): what Mesa's device-select layer matches. */
  vendorId: number;
  deviceId: number;
  /** The PCI address, where the driver has VK_EXT_pci_bus_info: tells apart GPUs of one vendor:device. */
  pci?: { domain: number; bus: number; device: number; function: number };
  /** Largest storage buffer one shader binding can see (VkPhysicalDeviceLimits.maxStorageBufferRange). */
  maxStorageBufferRange?: number;
  /** Largest single allocation (VkPhysicalDeviceMaintenance3Properties.maxMemoryAllocationSize). */
  maxMemoryAllocationSize?: number;
  /** shaderFloat16: what WebGPU's shader-f16 feature rests on. */
  shaderFloat16?: boolean;
}

/** Dawn's preference for a high-performance adapter: discrete GPUs, then integrated, then the rest. */
const TYPE_RANK: Record<string, number> = { discrete_gpu: 0, integrated_gpu: 1, virtual_gpu: 2, cpu: 3 };

/** vulkaninfo's full report (the child inherits this process's environment, so it sees the devices Dawn will see). */
function runVulkanInfo(): string | undefined {
  try {
    return execFileSync("vulkaninfo", [], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 20_000,
      maxBuffer: 64 << 20,
    });
  } catch {
    return undefined;
  }
}

/**
 * The Vulkan devices as vulkaninfo (package vulkan-tools) reports them, ranked the way Dawn ranks adapters for ONNX
 * Runtime's high-performance request (stable within a type); undefined when vulkaninfo is not installed or fails.
 * ONNX Runtime itself offers no adapter listing.
 */
export function listVulkanAdapters(): VulkanAdapter[] | undefined {
  const text = runVulkanInfo();
  return text === undefined ? undefined : parseVulkanInfo(text);
}

/** The adapters of vulkaninfo's full text report, in Dawn's ranking (see listVulkanAdapters). */
export function parseVulkanInfo(text: string): VulkanAdapter[] {
  const start = text.indexOf("Device Properties and Extensions:");
  if (start < 0) return [];
  const sections = text
    .slice(start)
    .split(/^GPU(\d+):\s*$/m)
    .slice(1);
  const adapters: VulkanAdapter[] = [];
  for (let i = 0; i + 1 < sections.length; i += 2) {
    const body = sections[i + 1];
    const field = (name: string) => body.match(new RegExp(`^\\s*${name}\\s*=\\s*(.+)$`, "m"))?.[1].trim();
    const number = (name: string) => {
      const v = field(name);
      return v === undefined ? undefined : Number(v);
    };
    // vulkaninfo prints the ids in hex (0x10de) and the PCI bus fields in decimal.
    const [domain, bus, device, fn] = ["pciDomain", "pciBus", "pciDevice", "pciFunction"].map(number);
    adapters.push({
      index: 0,
      vulkanIndex: Number(sections[i]),
      name: field("deviceName") ?? "unknown",
      type: (field("deviceType") ?? "unknown").replace(/^PHYSICAL_DEVICE_TYPE_/, "").toLowerCase(),
      driver: field("driverInfo") || field("driverName") || "unknown",
      vendorId: number("vendorID") ?? -1,
      deviceId: number("deviceID") ?? -1,
      ...(domain !== undefined && bus !== undefined && device !== undefined && fn !== undefined
        ? { pci: { domain, bus, device, function: fn } }
        : {}),
      maxStorageBufferRange: number("maxStorageBufferRange"),
      maxMemoryAllocationSize: number("maxMemoryAllocationSize"),
      shaderFloat16: field("shaderFloat16") === undefined ? undefined : field("shaderFloat16") === "true",
    });
  }
  const rank = (a: VulkanAdapter) => TYPE_RANK[a.type] ?? 4;
  return adapters
    .sort((a, b) => rank(a) - rank(b) || a.vulkanIndex - b.vulkanIndex)
    .map((a, index) => ({ ...a, index }));
}

/**
 * Whether Mesa's device-select layer (VkLayer_MESA_device_select, package mesa-vulkan-drivers) takes part in a
 * Vulkan instance made with this process's environment: with MESA_VK_DEVICE_SELECT=list the layer prints
 * "selectable devices:" and ends the program (vulkaninfo here) when devices are enumerated. undefined when
 * vulkaninfo cannot run. The layer works for every driver (NVIDIA's included), not only Mesa's.
 */
export function deviceSelectLayerActive(): boolean | undefined {
  const r = spawnSync("vulkaninfo", ["--summary"], {
    encoding: "utf8",
    env: { ...process.env, MESA_VK_DEVICE_SELECT: "list" },
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 20_000,
  });
  if (r.error || r.status === null) return undefined;
  return r.stderr.includes("selectable devices:");
}

// ONNX Runtime creates one Dawn instance per process, on its first WebGPU session (webgpu_context.cc,
// WebGpuContextFactory: context 0 and its instance are made once), and Dawn makes its Vulkan instance and lists
// the adapters then: the environment that picks the adapter counts only before that first session.
let openedAdapter: number | undefined;

/** The --device-id this process's WebGPU instance is for, once a WebGPU session was made or an adapter chosen. */
export function webGpuOpenedAdapter(): number | undefined {
  return openedAdapter;
}

/** Records the adapter of this process's WebGPU instance; a probe without a choice gets Dawn's first, index 0. */
export function noteWebGpuOpened(index: number): void {
  openedAdapter ??= index;
}

/** The useful part of an ONNX Runtime error: its first line without the source location and failed condition. */
export function ortReason(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split("\n")[0];
  const condition = line.lastIndexOf(" was false. ");
  return condition >= 0 ? line.slice(condition + " was false. ".length) : line.replace(/^\S+\.cc:\d+ /, "");
}

export function isBufferLimit(reason: string): boolean {
  return /storage buffers in shader|maxBufferSize|maxStorageBufferBindingSize|exceeds the maximum/i.test(reason);
}

/** A weight over the adapter's limits, named when known (ONNX Runtime's own message does not name it). */
export function bufferLimitMessage(
  reason: string,
  weight?: { name: string; bytes: number },
  bindingLimit?: number,
): string {
  const what = weight ? `weight ${weight.name} (${weight.bytes} bytes)` : "a tensor";
  const limit = bindingLimit ? `; the adapter binds at most ${bindingLimit} bytes per storage buffer` : "";
  return `${what} is larger than the WebGPU adapter's buffer limits${limit} (${reason}): use a quantized (int8/int4) package or --device cpu`;
}

/** A one-line explanation of why a WebGPU session could not be created or run. */
export function describeWebGpuFailure(err: unknown): string {
  const reason = ortReason(err);
  if (/Failed to get a WebGPU adapter/i.test(reason)) {
    const loader = vulkanLoaderProblem();
    if (loader) return `WebGPU is not available: ${loader}: ${VULKAN_LOADER_HINT}; or use --device cpu`;
    return `WebGPU is not available: the Vulkan loader found no usable GPU (${reason}): ${VULKAN_DRIVER_HINT}; or use --device cpu`;
  }
  if (/out of memory|OutOfMemory|Failed to allocate|allocation failed/i.test(reason)) {
    return `the GPU ran out of memory (${reason}): use a smaller or quantized package, fewer beams or a shorter context, or --device cpu`;
  }
  if (isBufferLimit(reason)) return bufferLimitMessage(reason);
  return `WebGPU failed: ${reason}`;
}

/**
 * Whether the WebGPU adapter runs float16 arithmetic (WebGPU's shader-f16 feature): a one-node float16 graph must
 * be placed entirely on WebGPU. Without the feature ONNX Runtime would quietly run every float16 node on the CPU.
 * Dawn hides shader-f16 on NVIDIA under Vulkan (ONNX Runtime maintainers in transformers.js issue 1309), so this is read, not assumed.
 */
export async function webGpuRunsFloat16(): Promise<boolean> {
  const ort = loadOrt();
  const graph = writeOnnxModel({
    name: "shader_f16_probe",
    opset: 17,
    inputs: [{ name: "a", type: "float16", dims: [4] }],
    outputs: [{ name: "b", type: "float16", dims: [4] }],
    nodes: [{ op: "Add", inputs: ["a", "a"], outputs: ["b"] }],
  });
  noteWebGpuOpened(0);
  try {
    const session = await ort.InferenceSession.create(graph, {
      executionProviders: ["webgpu"],
      logSeverityLevel: 3,
      extra: { session: { disable_cpu_ep_fallback: "1" } },
    });
    await session.release();
    return true;
  } catch {
    return false;
  }
}
