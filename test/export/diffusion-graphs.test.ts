import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../../src/model/session.js";
import { Golden, maxAbsDiff } from "../helpers/golden.js";
import { goldenDir, packageDir } from "../helpers/fixtures.js";

const golden = new Golden(goldenDir("emu2-tiny", "diffusion-graphs"));
const modelDir = packageDir("emu2-tiny");

async function parity(file: string, prefix: string, inputs: string[], output: string): Promise<number> {
  const session = await createSession(`${modelDir}/${file}`, DEFAULT_SESSION_OPTIONS);
  try {
    assert.deepEqual([...session.inputNames].sort(), [...inputs].sort());
    assert.deepEqual([...session.outputNames], [output]);
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of inputs) {
      const a = golden.float32(`${prefix}.${name}`);
      feeds[name] = new ort.Tensor("float32", a.data, a.shape);
    }
    const out = (await session.run(feeds))[output];
    const want = golden.float32(`${prefix}.${output}`);
    assert.deepEqual(out.dims, want.shape);
    return maxAbsDiff(out.data as Float32Array, want.data);
  } finally {
    await session.release();
  }
}

test("unet.onnx matches the PyTorch UNet (max abs diff <= 1e-4)", async () => {
  const diff = await parity(
    golden.meta.unet_file as string,
    "unet",
    ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
    "out_sample",
  );
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
});

test("vae_decoder.onnx matches the PyTorch VAE decoder (max abs diff <= 1e-4)", async () => {
  const diff = await parity(golden.meta.vae_decoder_file as string, "vae_decoder", ["latent_sample"], "sample");
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
});
