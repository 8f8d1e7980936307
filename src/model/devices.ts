// What ONNX Runtime can run on here (`emu2 info --devices`): the CPU, WebGPU (with the Vulkan adapters vulkaninfo
// names, and whether float16 runs on them), and CUDA when its provider libraries are installed.
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { writeOnnxModel } from "./onnx-writer.js";
import { loadOrt } from "./ort.js";
import { describeWebGpuFailure, listVulkanAdapters, webGpuRunsFloat16, type VulkanAdapter } from "./webgpu.js";

export interface DeviceReport {
  cpu: { model: string; cores: number };
  webgpu: { available: boolean; reason?: string; float16?: boolean; adapters?: VulkanAdapter[] };
  cuda: { available: boolean; reason?: string };
}

/** Why WebGPU cannot run here (one line), or undefined where a one-node graph runs on it. */
export async function webGpuProblem(): Promise<string | undefined> {
  const ort = await loadOrt();
  const graph = writeOnnxModel({
    name: "webgpu_probe",
    opset: 17,
    inputs: [{ name: "x", type: "float32", dims: [1] }],
    outputs: [{ name: "y", type: "float32", dims: [1] }],
    nodes: [{ op: "Neg", inputs: ["x"], outputs: ["y"] }],
  });
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
