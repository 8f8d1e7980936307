// Every exported vision/LLM graph against its PyTorch module: the reference's random inputs through ONNX Runtime,
// compared with the reference's outputs (max abs diff <= 1e-4 in fp32).
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { fillNormals } from "../../src/diffusion/noise.js";
import { Golden, maxAbsDiff } from "../helpers/golden.js";
import { goldenDir, packageDir, TINY_PACKAGES } from "../helpers/fixtures.js";

function tensor(golden: Golden, name: string): ort.Tensor {
  const a = golden.get(name);
  if (a.dtype === "float32") return new ort.Tensor("float32", a.data, a.shape);
  if (a.dtype === "int64") return new ort.Tensor("int64", a.data, a.shape);
  throw new Error(`${name}: unexpected ${a.dtype}`);
}

const GRAPHS: Record<string, { file: string; inputs: string[]; outputs: string[] }> = {
  embed_tokens: { file: "embed_tokens.onnx", inputs: ["input_ids"], outputs: ["inputs_embeds"] },
  project_up: { file: "project_up.onnx", inputs: ["image_features"], outputs: ["image_embeds"] },
  lm_head: { file: "lm_head.onnx", inputs: ["hidden_states"], outputs: ["logits"] },
  project_down: { file: "project_down.onnx", inputs: ["hidden_states"], outputs: ["visual_embeds"] },
};

for (const name of TINY_PACKAGES) {
  const golden = new Golden(goldenDir(name, "llm-graphs"));
  const layers = golden.meta.layers as number;
  const session = (file: string) => ort.InferenceSession.create(join(packageDir(name), file));

  test(`${name}: visual_encoder matches PyTorch`, async () => {
    const shape = golden.meta.visual_encoder_pixel_shape as number[];
    const pixels = new Float32Array(shape.reduce((a, b) => a * b, 1));
    fillNormals(golden.meta.visual_encoder_pixel_seed as number, pixels);
    const s = await session("visual_encoder.onnx");
    assert.deepEqual([...s.inputNames], ["pixel_values"]);
    assert.deepEqual([...s.outputNames], ["last_hidden_state"]);
    const out = await s.run({ pixel_values: new ort.Tensor("float32", pixels, shape) });
    const expected = golden.float32("visual_encoder.last_hidden_state");
    assert.deepEqual(out.last_hidden_state.dims, expected.shape);
    assert.ok(maxAbsDiff(out.last_hidden_state.data as Float32Array, expected.data) <= 1e-4);
  });

  for (const [graph, spec] of Object.entries(GRAPHS)) {
    test(`${name}: ${graph} matches PyTorch`, async () => {
      const feeds = Object.fromEntries(spec.inputs.map((i) => [i, tensor(golden, `${graph}.${i}`)]));
      const s = await session(spec.file);
      assert.deepEqual([...s.inputNames], spec.inputs);
      assert.deepEqual([...s.outputNames], spec.outputs);
      const out = await s.run(feeds);
      for (const o of spec.outputs) {
        const expected = golden.float32(`${graph}.${o}`);
        assert.deepEqual(out[o].dims, expected.shape);
        assert.ok(maxAbsDiff(out[o].data as Float32Array, expected.data) <= 1e-4, `${graph}.${o}`);
      }
    });
  }

  for (const decoderCase of ["decoder", "decoder_first_step", "decoder_one_token"]) {
    test(`${name}: ${decoderCase} (KV cache, left padding) matches PyTorch`, async () => {
      const past = Array.from({ length: layers }, (_, i) => [
        `past_key_values.${i}.key`,
        `past_key_values.${i}.value`,
      ]).flat();
      const entries = Array.from({ length: layers }, (_, i) => [`${i}.key`, `${i}.value`]).flat();
      const inputs = ["inputs_embeds", "attention_mask", "position_ids", ...past];
      const feeds = Object.fromEntries(inputs.map((i) => [i, tensor(golden, `${decoderCase}.${i}`)]));
      const s = await session("decoder.onnx");
      // The names and order of docs/package-format.md, which the runtime binds by name; no presents.
      assert.deepEqual([...s.inputNames], inputs);
      assert.deepEqual([...s.outputNames], ["last_hidden_state", ...entries.map((n) => `new_key_values.${n}`)]);
      const out = await s.run(feeds);
      // The graph attends the past where it is fed; PyTorch's goldens attend the concatenated cache (HF's way).
      const expected = golden.float32(`${decoderCase}.last_hidden_state`);
      assert.deepEqual(out.last_hidden_state.dims, expected.shape);
      const diff = maxAbsDiff(out.last_hidden_state.data as Float32Array, expected.data);
      assert.ok(diff <= 5e-6, `last_hidden_state differs by ${diff}`);
      // new_key_values: PyTorch's presents' last T rows (T = this run's tokens) of every batch row and head.
      const t = Number(feeds.inputs_embeds.dims[1]);
      for (const n of entries) {
        const expected = golden.float32(`${decoderCase}.present.${n}`);
        const [b, h, total, d] = expected.shape;
        const rows = out[`new_key_values.${n}`];
        assert.deepEqual(rows.dims, [b, h, t, d], n);
        const last = new Float32Array(b * h * t * d);
        for (let bh = 0; bh < b * h; bh++)
          last.set(expected.data.subarray((bh * total + total - t) * d, (bh + 1) * total * d), bh * t * d);
        assert.ok(maxAbsDiff(rows.data as Float32Array, last) <= 1e-4, `new_key_values.${n}`);
      }
    });
  }
}

test("the tiny packages exist (built by python/build_tiny_packages.py)", () => {
  assert.deepEqual(TINY_PACKAGES, ["emu2-tiny", "emu2-chat-tiny"]);
});
