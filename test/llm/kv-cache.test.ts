// The host KV cache's row operations on small real ONNX Runtime tensors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HostKvCache } from "../../src/llm/kv-cache.js";
import { loadOrt } from "../../src/model/ort.js";

test("empty cache, absorb, select (expand / reorder / drop), fork, release", async () => {
  const ort = await loadOrt();
  const cache = await HostKvCache.empty({ layers: 2, heads: 1, headDim: 2, dtype: "float32" }, 2);
  assert.equal(cache.length, 0);
  assert.equal(cache.batch, 2);
  assert.deepEqual(Object.keys(cache.feeds()), ["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]);
  assert.deepEqual(cache.feeds()["past_key_values.1.value"].dims, [2, 1, 0, 2]);
  // Row r of every entry holds values r*10 .. (per-row 1 head x 3 positions x 2 dims = 6 values).
  const present = (offset: number) => new ort.Tensor("float32", Float32Array.from({ length: 12 }, (_, i) => Math.floor(i / 6) * 10 + (i % 6) + offset), [2, 1, 3, 2]);
  cache.absorb({ "present.0.key": present(0), "present.0.value": present(100), "present.1.key": present(200), "present.1.value": present(300) });
  assert.equal(cache.length, 3);
  const fork = cache.fork();
  await cache.select([1, 1, 0]);
  assert.equal(cache.batch, 3);
  const rows = (t: import("onnxruntime-node").Tensor) => Array.from(t.data as Float32Array).filter((_, i) => i % 6 === 0);
  assert.deepEqual(rows(cache.feeds()["past_key_values.0.value"]), [110, 110, 100]);
  await cache.select([2]);
  assert.deepEqual(rows(cache.feeds()["past_key_values.1.key"]), [200]);
  // The fork kept the contents from before the selections.
  assert.equal(fork.batch, 2);
  assert.deepEqual(rows(fork.feeds()["past_key_values.1.key"]), [200, 210]);
  await assert.rejects(fork.select([2]), /outside 0\.\.1/);
  assert.throws(() => cache.absorb({}), /present\.0\.key/);
  fork.release();
  assert.throws(() => fork.feeds(), /released/);
  assert.equal(cache.batch, 1);
});

test("float16 entries stay float16 through select", async () => {
  const ort = await loadOrt();
  const cache = await HostKvCache.empty({ layers: 1, heads: 1, headDim: 1, dtype: "float16" }, 2);
  const t = new ort.Tensor("float16", Uint16Array.from([0x3c00, 0x4000]), [2, 1, 1, 1]);
  cache.absorb({ "present.0.key": t, "present.0.value": t });
  await cache.select([1, 0]);
  const key = cache.feeds()["past_key_values.0.key"];
  assert.equal(key.type, "float16");
  assert.deepEqual(Array.from(key.data as Uint16Array), [0x4000, 0x3c00]);
});
