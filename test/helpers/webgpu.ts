// Whether this machine can run the WebGPU tests: ONNX Runtime's WebGPU provider needs a Vulkan loader and device
// (CI installs Mesa's lavapipe, .ci/run). Where there is none, each WebGPU suite is skipped with this one reason,
// found by the same probe `emu2 info --devices` runs.
import { webGpuProblem } from "../../src/model/devices.js";

const problem = await webGpuProblem();

/** false where WebGPU works, else the reason the WebGPU tests are skipped. */
export const NO_WEBGPU: string | false = problem === undefined ? false : `skipped: no Vulkan device (${problem})`;
