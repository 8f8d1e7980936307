// The WebGPU error explanations (from ONNX Runtime's real messages, recorded on lavapipe), the weight-size reader
// that names the tensor over a buffer limit, and the minimal ONNX writer (its graphs run on the CPU provider here,
// so this holds on machines without Vulkan too).
import assert from "node:assert/strict";
import { test } from "node:test";
import { rowSelectionGraph } from "../../src/llm/device-kv-cache.js";
import { readManifest } from "../../src/model/manifest.js";
import { initializerSizes } from "../../src/model/onnx-file.js";
import { int64Tensor, loadOrt } from "../../src/model/ort.js";
import { bufferLimitMessage, describeWebGpuFailure, ortReason, vulkanLoaderProblem } from "../../src/model/webgpu.js";
import { packageDir } from "../helpers/fixtures.js";

const NO_ADAPTER =
  "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(" +
  "const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success " +
  "was false. Failed to get a WebGPU adapter: No supported adapters";
const TOO_LARGE =
  "Non-zero status code returned while running MatMul node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/" +
  "providers/webgpu/shader_helper.cc:306 onnxruntime::webgpu::ShaderVariableHelper& onnxruntime::webgpu::ShaderHelper::" +
  "AddVariableImpl(bool, const std::string&, onnxruntime::webgpu::ShaderUsage, const onnxruntime::TensorShape&, uint32_t) " +
  "numbers_storage_buffers_ <= limits_.maxStorageBuffersPerShaderStage was false. Too many storage buffers in shader. Current: 18, Max is 16";

test("ONNX Runtime's messages lose their source location; no adapter and a weight over the limits are explained in one line", () => {
  assert.equal(ortReason(new Error(NO_ADAPTER)), "Failed to get a WebGPU adapter: No supported adapters");
  const noAdapter = describeWebGpuFailure(new Error(NO_ADAPTER));
  assert.ok(!noAdapter.includes("\n"));
  if (vulkanLoaderProblem()) assert.match(noAdapter, /Vulkan loader libvulkan\.so\.1 .*libvulkan1/);
  else
    assert.match(
      noAdapter,
      /the Vulkan loader found no usable GPU \(Failed to get a WebGPU adapter: No supported adapters\): install the GPU driver's Vulkan support/,
    );
  assert.equal(
    describeWebGpuFailure(new Error(TOO_LARGE)),
    "a tensor is larger than the WebGPU adapter's buffer limits (Too many storage buffers in shader. Current: 18, Max is 16): use a quantized (int8/int4) package or --device cpu",
  );
  assert.equal(
    bufferLimitMessage(
      "Too many storage buffers in shader. Current: 18, Max is 16",
      { name: "big_weight", bytes: 2170880000 },
      134217728,
    ),
    "weight big_weight (2170880000 bytes) is larger than the WebGPU adapter's buffer limits; the adapter binds at most 134217728 bytes per storage buffer (Too many storage buffers in shader. Current: 18, Max is 16): use a quantized (int8/int4) package or --device cpu",
  );
  assert.match(
    describeWebGpuFailure(new Error("Failed to allocate a buffer: out of memory")),
    /^the GPU ran out of memory/,
  );
});

test("initializerSizes names a graph's largest weight and its bytes", () => {
  const m = readManifest(`${packageDir("emu2-tiny")}/manifest.yaml`);
  const [largest] = initializerSizes(`${packageDir("emu2-tiny")}/${m.llm.embed_tokens_file}`);
  assert.equal(largest.name, "llm.model.embed_tokens.weight");
  assert.equal(largest.bytes, m.tokenizer.vocab_size * m.llm.hidden_size * 4);
});

test("the written row-selection graph gathers, repeats and reorders batch rows of every entry (CPU provider)", async () => {
  const ort = loadOrt();
  const shape = { layers: 2, heads: 1, headDim: 2, dtype: "float32" as const };
  const session = await ort.InferenceSession.create(rowSelectionGraph(shape), { executionProviders: ["cpu"] });
  // Entry e, row r holds [100e + 10r, 100e + 10r + 1] at its single past position.
  const entry = (e: number) =>
    new ort.Tensor("float32", Float32Array.from([0, 1, 10, 11, 20, 21].map((v) => v + 100 * e)), [3, 1, 1, 2]);
  const feeds = {
    rows: int64Tensor([2, 0, 2], [3]),
    "past_key_values.0.key": entry(0),
    "past_key_values.0.value": entry(1),
    "past_key_values.1.key": entry(2),
    "past_key_values.1.value": entry(3),
  };
  const out = await session.run(feeds);
  assert.deepEqual(Object.keys(out).sort(), [
    "selected.0.key",
    "selected.0.value",
    "selected.1.key",
    "selected.1.value",
  ]);
  assert.deepEqual(out["selected.1.value"].dims, [3, 1, 1, 2]);
  assert.deepEqual(Array.from(out["selected.1.value"].data as Float32Array), [320, 321, 300, 301, 320, 321]);
  assert.deepEqual(Array.from(out["selected.0.key"].data as Float32Array), [20, 21, 0, 1, 20, 21]);
  await session.release();
});
