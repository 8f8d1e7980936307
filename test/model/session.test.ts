// The adapter choice of a WebGPU session, in a fresh process (this test process has opened WebGPU already, in the
// probe of test/helpers/webgpu.ts): the first WebGPU session of a process puts the device-select variables for its
// --device-id into the environment, and a later different index is refused.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { webGpuAdapterVariables } from "../../src/model/devices.js";
import { deviceSelectLayerActive, listVulkanAdapters } from "../../src/model/webgpu.js";
import { NO_WEBGPU } from "../helpers/webgpu.js";

// The variables are read when ONNX Runtime creates the process's first WebGPU session (the Vulkan instance is made
// then): the script records them at that call.
const script = `
const { createSession, selectWebGpuAdapter, DEFAULT_SESSION_OPTIONS } = await import(${JSON.stringify(resolve("src/model/session.ts"))});
const { loadOrt } = await import(${JSON.stringify(resolve("src/model/ort.ts"))});
const { writeOnnxModel } = await import(${JSON.stringify(resolve("src/model/onnx-writer.ts"))});
const names = ["MESA_VK_DEVICE_SELECT", "DRI_PRIME", "MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE"];
const ort = loadOrt();
const create = ort.InferenceSession.create.bind(ort.InferenceSession);
let variables;
ort.InferenceSession.create = (...args) => {
  variables ??= Object.fromEntries(names.filter((n) => process.env[n] !== undefined).map((n) => [n, process.env[n]]));
  return create(...args);
};
const graph = writeOnnxModel({
  name: "neg", opset: 17,
  inputs: [{ name: "x", type: "float32", dims: [1] }], outputs: [{ name: "y", type: "float32", dims: [1] }],
  nodes: [{ op: "Neg", inputs: ["x"], outputs: ["y"] }],
});
const session = await createSession(graph, { ...DEFAULT_SESSION_OPTIONS, device: "webgpu", deviceId: 0 });
let later;
try { selectWebGpuAdapter(1); } catch (err) { later = err.message; }
await session.release();
process.stdout.write(JSON.stringify({ variables, later }));
`;

test(
  "--device-id 0 goes through Mesa's device-select layer: its variables are set before the first WebGPU session; another index later is refused",
  { skip: NO_WEBGPU || (deviceSelectLayerActive() ? false : "skipped: Mesa's device-select layer is not active here") },
  () => {
    const file = join(mkdtempSync(join(tmpdir(), "emu2-adapter-")), "first-session.mjs");
    writeFileSync(file, script);
    // With MESA_VK_DEVICE_SELECT_DEBUG the layer lists what it enumerates: it is part of this process's Vulkan instance.
    const r = spawnSync(process.execPath, ["--import", "tsx", file], {
      encoding: "utf8",
      env: { ...process.env, MESA_VK_DEVICE_SELECT_DEBUG: "1" },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^selectable devices:\n {2}GPU 0: [0-9a-f]+:[0-9a-f]+ "/m);
    // On lavapipe alone: MESA_VK_DEVICE_SELECT=10005:0 and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1.
    const expected = webGpuAdapterVariables(0, listVulkanAdapters(), true, process.env);
    assert.deepEqual(JSON.parse(r.stdout), {
      variables: expected,
      later:
        "--device-id 1: this process already runs WebGPU on adapter 0, and ONNX Runtime keeps one WebGPU adapter per " +
        "process: use the same --device-id for every WebGPU graph (or another process)",
    });
  },
);
