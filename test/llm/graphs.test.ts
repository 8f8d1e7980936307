import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { LlmGraphs, newPositionIds, positionIds, toSelectOrder, type LlmSessions } from "../../src/llm/graphs.js";
import { HostKvCache } from "../../src/llm/kv-cache.js";
import type { OrtFeeds, Session } from "../../src/model/ort.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../../src/model/session.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { packageDir } from "../helpers/fixtures.js";

test("position ids: cumsum(mask) - 1, padded positions 1", () => {
  assert.deepEqual(positionIds([0, 0, 1, 1, 1]), [1, 1, 0, 1, 2]);
  assert.deepEqual(positionIds([1, 1, 1]), [0, 1, 2]);
});

test("a run's position ids are the last t of the whole mask's, row by row (padding inside the new tokens too)", () => {
  const mask = [
    [0, 0, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1],
    [0, 1, 1, 0, 1, 1],
  ];
  for (let t = 1; t <= 6; t++) {
    const expected = mask.flatMap((m) => positionIds(m).slice(m.length - t));
    assert.deepEqual(Array.from(newPositionIds(mask, t), Number), expected, `t = ${t}`);
  }
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

test("rows in a cache's feed order go back into select()'s order in place, whatever the cycles", () => {
  const orders = [
    [0],
    [1, 0],
    [2, 0, 1],
    [1, 2, 0],
    [0, 2, 1, 3],
    [3, 4, 0, 1, 2, 5],
    [4, 3, 2, 1, 0],
    [5, 0, 1, 4, 3, 2],
  ];
  for (const order of orders) {
    // Batch row b holds row order[b]: its 3 values say so.
    const data = Float32Array.from(order.flatMap((row) => [row, row + 0.25, row + 0.5]));
    toSelectOrder(data, order, 3);
    assert.deepEqual(Array.from(data), order.map((_, row) => [row, row + 0.25, row + 0.5]).flat(), `${order}`);
  }
});

test("a decode step's embeddings are the table's rows, in one buffer from step to step", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  try {
    const table = model.pkg.lookupTable("embed_tokens");
    assert.ok(table, "emu2-tiny's embedding graph is a plain lookup");
    const graphs = new LlmGraphs({ embedTokens: table } as unknown as LlmSessions, "float32", 32);
    const first = await graphs.embedStep([5, 450, 5]);
    assert.deepEqual(first, table.rows([5, 450, 5]));
    const second = await graphs.embedStep([263, 1, 32000]);
    assert.equal(second, first, "the next step's rows go into the same buffer");
    assert.deepEqual(second, table.rows([263, 1, 32000]));
    const fewer = await graphs.embedStep([7, 8]);
    assert.equal(fewer.length, 2 * 32);
    assert.deepEqual(fewer, table.rows([7, 8]));
  } finally {
    await model.release();
  }
});
