import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { LlmGraphs, positionIds } from "../../src/llm/graphs.js";
import { HostKvCache } from "../../src/llm/kv-cache.js";
import type { OrtFeeds, Session } from "../../src/model/ort.js";
import { packageDir } from "../helpers/fixtures.js";

test("position ids: cumsum(mask) - 1, padded positions 1", () => {
  assert.deepEqual(positionIds([0, 0, 1, 1, 1]), [1, 1, 0, 1, 2]);
  assert.deepEqual(positionIds([1, 1, 1]), [0, 1, 2]);
});

test("a host-memory cache has the decoder return only this run's key/value rows, not the whole cache", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  try {
    const { hidden_size: hidden, num_layers: layers, num_heads: heads, head_dim: headDim } = model.manifest.llm;
    const [embedTokens, projectUp, decoder, lmHead, projectDown] = await Promise.all(
      (["embed_tokens", "project_up", "decoder", "lm_head", "project_down"] as const).map((r) => model.pkg.session(r)),
    );
    const fetched: string[][] = [];
    const recording = Object.create(decoder) as Session;
    recording.run = ((feeds: OrtFeeds, names: string[]) => {
      fetched.push([...names]);
      return decoder.run(feeds, names);
    }) as Session["run"];
    const graphs = new LlmGraphs(
      { embedTokens, projectUp, decoder: recording, lmHead, projectDown },
      model.manifest.dtype,
      hidden,
    );
    const cache = await HostKvCache.empty({ layers, heads, headDim, dtype: model.manifest.dtype }, 1);
    const ids = [1, 450, 4996, 17354];
    await graphs.decoder(await graphs.embedTokens([ids]), [ids.map(() => 1)], cache);
    await graphs.decoder(await graphs.embedTokens([[263]]), [[...ids.map(() => 1), 1]], cache);
    const rows = Array.from({ length: layers }, (_, i) => [`new_key_values.${i}.key`, `new_key_values.${i}.value`]);
    assert.deepEqual(fetched, [
      ["last_hidden_state", ...rows.flat()],
      ["last_hidden_state", ...rows.flat()],
    ]);
    assert.equal(cache.length, 5);
    cache.release();
  } finally {
    await model.release();
  }
});
