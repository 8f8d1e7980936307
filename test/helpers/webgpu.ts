// Whether this machine can run the WebGPU tests: ONNX Runtime's WebGPU provider needs a Vulkan loader and device
// (CI installs Mesa's lavapipe, .ci/run). Where there is none, each WebGPU suite is skipped with this one reason.
import { writeOnnxModel } from "../../src/model/onnx-writer.js";
import { loadOrt } from "../../src/model/ort.js";
import { describeWebGpuFailure } from "../../src/model/webgpu.js";

async function probe(): Promise<string | false> {
  const ort = await loadOrt();
  const graph = writeOnnxModel({
    name: "probe",
    opset: 17,
    inputs: [{ name: "x", type: "float32", dims: [1] }],
    outputs: [{ name: "y", type: "float32", dims: [1] }],
    nodes: [{ op: "Neg", inputs: ["x"], outputs: ["y"] }],
  });
  try {
    await (await ort.InferenceSession.create(graph, { executionProviders: ["webgpu"], logSeverityLevel: 3 })).release();
    return false;
  } catch (err) {
    return `skipped: no Vulkan device (${describeWebGpuFailure(err)})`;
  }
}

/** false where WebGPU works, else the reason the WebGPU tests are skipped. */
export const NO_WEBGPU: string | false = await probe();
