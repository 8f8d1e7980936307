// The host KV cache's row operations on small real ONNX Runtime tensors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { generateText, prefill } from "../../src/llm/generate.js";
import { regressImage } from "../../src/llm/regress.js";
import { LlmGraphs } from "../../src/llm/graphs.js";
import { capacityFor, HostKvCache, PartCaches, type KvCache, type KvCacheFactory } from "../../src/llm/kv-cache.js";
import { loadOrt } from "../../src/model/ort.js";
import { packageDir } from "../helpers/fixtures.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { filledSlots, inFeedOrder } from "../helpers/kv.js";
import { GREEDY } from "../helpers/settings.js";
import { LlmGoldens } from "./goldens.js";

test("empty cache, absorb, select (expand / reorder / drop), fork, release", async () => {
  const ort = loadOrt();
  const cache = await HostKvCache.empty({ layers: 2, heads: 1, headDim: 2, dtype: "float32" }, 2);
  assert.equal(cache.length, 0);
  assert.equal(cache.batch, 2);
  assert.deepEqual(Object.keys(cache.feeds()), [
    "past_key_values.0.key",
    "past_key_values.0.value",
    "past_key_values.1.key",
    "past_key_values.1.value",
  ]);
  assert.deepEqual(cache.feeds()["past_key_values.1.value"].dims, [2, 1, 0, 2]);
  // Row r of every entry holds values r*10 .. (per-row 1 head x 3 positions x 2 dims = 6 values).
  const present = (offset: number) =>
    new ort.Tensor(
      "float32",
      Float32Array.from({ length: 12 }, (_, i) => Math.floor(i / 6) * 10 + (i % 6) + offset),
      [2, 1, 3, 2],
    );
  cache.absorb({
    "present.0.key": present(0),
    "present.0.value": present(100),
    "present.1.key": present(200),
    "present.1.value": present(300),
  });
  assert.equal(cache.length, 3);
  const fork = cache.fork();
  await cache.select([1, 1, 0]);
  assert.equal(cache.batch, 3);
  const rows = (t: import("onnxruntime-node").Tensor) =>
    Array.from(t.data as Float32Array).filter((_, i) => i % 6 === 0);
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

test("new_key_values rows go into the free slots of every batch row and head; the buffer grows by an eighth", async () => {
  const ort = loadOrt();
  const cache = await HostKvCache.empty({ layers: 1, heads: 2, headDim: 1, dtype: "float32" }, 2);
  // Value = 100 * batch row + 10 * head + position, so every element says where it belongs.
  const rows = (from: number, t: number) =>
    new ort.Tensor(
      "float32",
      Float32Array.from(
        { length: 4 * t },
        (_, i) => 100 * Math.floor(i / (2 * t)) + 10 * (Math.floor(i / t) % 2) + from + (i % t),
      ),
      [2, 2, t, 1],
    );
  const step = (from: number, t: number) =>
    cache.absorb({ "new_key_values.0.key": rows(from, t), "new_key_values.0.value": rows(from, t) });
  step(0, 2);
  assert.deepEqual(filledSlots(cache, "0.value"), [0, 1, 10, 11, 100, 101, 110, 111]);
  assert.equal(cache.capacity, capacityFor(2));
  assert.deepEqual(cache.feeds()["past_key_values.0.key"].dims, [2, 2, capacityFor(2), 1]);
  const buffer = (cache.feeds()["past_key_values.0.key"].data as Float32Array).buffer;
  step(2, 1);
  step(3, 2);
  assert.equal(cache.length, 5);
  // Written in place: no allocation per token while there is room.
  assert.equal((cache.feeds()["past_key_values.0.key"].data as Float32Array).buffer, buffer);
  const expected = (n: number) => [0, 10, 100, 110].flatMap((base) => Array.from({ length: n }, (_, p) => base + p));
  assert.deepEqual(filledSlots(cache, "0.value"), expected(5));
  // Past the room: a larger buffer, the filled slots moved with it.
  step(5, capacityFor(2) - 4);
  assert.equal(cache.length, capacityFor(2) + 1);
  assert.equal(cache.capacity, capacityFor(capacityFor(2) + 1));
  assert.deepEqual(filledSlots(cache, "0.key"), expected(capacityFor(2) + 1));
  // A decoder without new_key_values hands back presents, which the cache takes as they are; one with them is
  // asked for those alone.
  assert.deepEqual(cache.outputsToFetch(["last_hidden_state", "present.0.key", "present.0.value"]), [
    "present.0.key",
    "present.0.value",
  ]);
  assert.deepEqual(
    cache.outputsToFetch(["present.0.key", "present.0.value", "new_key_values.0.key", "new_key_values.0.value"]),
    ["new_key_values.0.key", "new_key_values.0.value"],
  );
  assert.throws(() => cache.absorb({ "new_key_values.0.key": rows(5, 1) }), /no new_key_values\.0\.value/);
  assert.throws(
    () =>
      cache.absorb({
        "new_key_values.0.key": new ort.Tensor("float32", new Float32Array(2), [1, 2, 1, 1]),
        "new_key_values.0.value": rows(5, 1),
      }),
    /does not extend the past/,
  );
});

/** A one-entry cache of `batch` rows whose slots say where they came from: 10 * row + head (2 heads). */
async function labelledCache(batch: number, rankOrder: boolean): Promise<HostKvCache> {
  const ort = loadOrt();
  const cache = await HostKvCache.empty({ layers: 1, heads: 2, headDim: 1, dtype: "float32" }, batch, 8, 0, rankOrder);
  const rows = Float32Array.from({ length: 2 * batch }, (_, i) => 10 * Math.floor(i / 2) + (i % 2));
  cache.absorb({
    "new_key_values.0.key": new ort.Tensor("float32", rows, [batch, 2, 1, 1]),
    "new_key_values.0.value": new ort.Tensor("float32", rows, [batch, 2, 1, 1]),
  });
  return cache;
}

const bufferOf = (cache: HostKvCache) => (cache.feeds()["past_key_values.0.key"].data as Float32Array).buffer;

/**
 * Selections of a 3-row labelledCache, each with the filled slots it leaves in select()'s order (which way the cache
 * keeps its rows does not show in them).
 */
const SELECTIONS = [
  // A swap: rows 0 and 1 each read the other (in rank order, a cycle: one row goes aside).
  { rows: [1, 0, 2], slots: [10, 11, 0, 1, 20, 21] },
  // A chain, as when a beam drops out and the rest shift: row 2 takes row 1 and row 1 takes row 0.
  { rows: [0, 0, 1], slots: [10, 11, 10, 11, 0, 1] },
  // Rows 0 and 2 swap around row 1, which stays.
  { rows: [2, 1, 0], slots: [0, 1, 10, 11, 10, 11] },
  // Duplicates and drops, as beam search picks: rows 0 and 1 both read row 2, row 2 reads row 0.
  { rows: [2, 2, 0], slots: [10, 11, 10, 11, 0, 1] },
];

for (const rankOrder of [true, false]) {
  test(`row selection keeps whole rows in one buffer${rankOrder ? ", moving them into rank order" : ", leaving them where they lie"}`, async () => {
    const cache = await labelledCache(3, rankOrder);
    const first = bufferOf(cache);
    // The first head's first slot of each batch row, as the buffer holds them.
    const raw = () =>
      Array.from(cache.feeds()["past_key_values.0.key"].data as Float32Array).filter((_, i) => i % 16 === 0);
    // Left where they lie: the swap writes no row, and the chain copies one row, over the one no row reads.
    const feedOrders = [
      [1, 0, 2],
      [2, 0, 1],
    ];
    const raws = [
      [0, 10, 20],
      [0, 10, 10],
    ];
    for (const [k, { rows, slots }] of SELECTIONS.entries()) {
      await cache.select(rows);
      assert.deepEqual(filledSlots(cache, k % 2 ? "0.value" : "0.key"), slots, `select([${rows}])`);
      if (rankOrder) assert.equal(cache.feedOrder(), undefined, "row i stays in batch row i");
      else if (k < feedOrders.length) {
        assert.deepEqual(cache.feedOrder(), feedOrders[k]);
        assert.deepEqual(raw(), raws[k]);
      }
    }
    // Every reorder wrote the same buffer: 5 beams never hold two copies of their cache.
    assert.equal(bufferOf(cache), first);
    if (rankOrder) return;
    // A permutation that puts every row back in its rank's batch row.
    await cache.select([2, 0, 1]);
    assert.deepEqual(filledSlots(cache, "0.key"), [0, 1, 10, 11, 10, 11]);
    assert.equal(cache.feedOrder(), undefined, "batch row i holds row i again");
    assert.equal(bufferOf(cache), first);
    // A fork keeps the order; a batch change (beam expansion) copies into rank order.
    const fork = cache.fork();
    await cache.select([1, 0, 2]);
    assert.deepEqual(filledSlots(fork, "0.key"), [0, 1, 10, 11, 10, 11]);
    await fork.select([2, 0]);
    assert.deepEqual(filledSlots(fork, "0.key"), [10, 11, 0, 1]);
    assert.equal(fork.feedOrder(), undefined);
    assert.deepEqual(filledSlots(cache, "0.key"), [10, 11, 0, 1, 10, 11]);
  });
}

for (const rankOrder of [false, true]) {
  test(`beams of one prompt share its slots: moves between them and across prompts both give whole rows${rankOrder ? " (rank order)" : ""}`, async () => {
    const ort = loadOrt();
    const cache = await HostKvCache.empty({ layers: 1, heads: 1, headDim: 1, dtype: "float32" }, 2, 8, 0, rankOrder);
    // The decoder's new rows come in the cache's feed order.
    const absorb = (values: number[], t: number) => {
      const fed = inFeedOrder(cache, values, t);
      const rows = new ort.Tensor("float32", Float32Array.from(fed), [values.length / t, 1, t, 1]);
      cache.absorb({ "new_key_values.0.key": rows, "new_key_values.0.value": rows });
    };
    // Two prompts of two slots, then two beams each (rows 0-1 prompt 0's, 2-3 prompt 1's), each beam a token of its own.
    absorb([1, 2, 3, 4], 2);
    await cache.select([0, 0, 1, 1]);
    absorb([10, 11, 12, 13], 1);
    assert.deepEqual(filledSlots(cache, "0.key"), [1, 2, 10, 1, 2, 11, 3, 4, 12, 3, 4, 13]);
    // Within each prompt's beams (what beam search does).
    await cache.select([1, 1, 3, 2]);
    assert.deepEqual(filledSlots(cache, "0.key"), [1, 2, 11, 1, 2, 11, 3, 4, 13, 3, 4, 12]);
    // Across prompts: the rows' prompt slots differ and must move too.
    await cache.select([2, 3, 0, 0]);
    assert.deepEqual(filledSlots(cache, "0.value"), [3, 4, 13, 3, 4, 12, 1, 2, 11, 1, 2, 11]);
    // A row that came from the other prompt shares that prompt's slots from then on (and no longer its old one's).
    await cache.select([0, 1, 0, 3]);
    absorb([20, 21, 22, 23], 1);
    await cache.select([0, 1, 3, 3]);
    assert.deepEqual(filledSlots(cache, "0.key"), [3, 4, 13, 20, 3, 4, 12, 21, 1, 2, 11, 23, 1, 2, 11, 23]);
    await cache.select([3, 0, 2, 1]);
    absorb([30, 31, 32, 33], 1);
    assert.deepEqual(
      filledSlots(cache, "0.key"),
      [1, 2, 11, 23, 30, 3, 4, 13, 20, 31, 1, 2, 11, 23, 32, 3, 4, 12, 21, 33],
    );
  });
}

test("row selection never writes a buffer a fork still reads", async () => {
  const ort = loadOrt();
  const cache = await HostKvCache.empty({ layers: 1, heads: 1, headDim: 2, dtype: "float32" }, 2);
  const rows = new ort.Tensor("float32", Float32Array.from([1, 2, 3, 4]), [2, 1, 1, 2]);
  cache.absorb({ "new_key_values.0.key": rows, "new_key_values.0.value": rows });
  await cache.select([1, 0]);
  await cache.select([1, 0]);
  assert.deepEqual(filledSlots(cache, "0.key"), [1, 2, 3, 4]);
  // Both now read the same past: neither may write it again (row picks and appends that change it would show).
  const fork = cache.fork();
  await fork.select([1, 1]);
  await fork.select([0, 0]);
  assert.deepEqual(filledSlots(fork, "0.key"), [3, 4, 3, 4]);
  assert.deepEqual(filledSlots(cache, "0.key"), [1, 2, 3, 4]);
  const other = cache.fork();
  const tensor = (values: number[]) => new ort.Tensor("float32", Float32Array.from(values), [2, 1, 1, 2]);
  const more = tensor([5, 6, 7, 8]);
  cache.absorb({ "new_key_values.0.key": more, "new_key_values.0.value": more });
  const elsewhere = tensor([9, 10, 11, 12]);
  other.absorb({ "new_key_values.0.key": elsewhere, "new_key_values.0.value": elsewhere });
  assert.deepEqual(filledSlots(cache, "0.key"), [1, 2, 5, 6, 3, 4, 7, 8]);
  assert.deepEqual(filledSlots(other, "0.key"), [1, 2, 9, 10, 3, 4, 11, 12]);
  await cache.select([1, 1]);
  await cache.select([0, 0]);
  await other.select([1, 0]);
  await other.select([1, 1]);
  assert.deepEqual(filledSlots(cache, "0.key"), [3, 4, 7, 8, 3, 4, 7, 8]);
  assert.deepEqual(filledSlots(other, "0.key"), [1, 2, 9, 10, 1, 2, 9, 10]);
});

test("float16 entries stay float16 through select", async () => {
  const ort = loadOrt();
  const cache = await HostKvCache.empty({ layers: 1, heads: 1, headDim: 1, dtype: "float16" }, 2);
  const t = new ort.Tensor("float16", Uint16Array.from([0x3c00, 0x4000]), [2, 1, 1, 1]);
  cache.absorb({ "present.0.key": t, "present.0.value": t });
  await cache.select([1, 0]);
  const key = cache.feeds()["past_key_values.0.key"];
  assert.equal(key.type, "float16");
  assert.deepEqual(Array.from(key.data as Uint16Array), [0x4000, 0x3c00]);
});

test("a cache told the most tokens it will hold keeps no free slots beyond them", async () => {
  const ort = loadOrt();
  // A 40-token prompt with 3 new tokens to come: 43 slots, not the 72 (40 + 32) of an unbounded cache.
  assert.equal(capacityFor(40), 72);
  assert.equal(capacityFor(40, 43), 43);
  // A bound above the growth rule changes nothing; one below what is needed never loses a token.
  assert.equal(capacityFor(40, 1000), 72);
  assert.equal(capacityFor(40, 10), 40);
  const cache = await HostKvCache.empty({ layers: 1, heads: 1, headDim: 1, dtype: "float32" }, 1, 43);
  const rows = (t: number) => new ort.Tensor("float32", new Float32Array(t), [1, 1, t, 1]);
  const step = (t: number) => cache.absorb({ "new_key_values.0.key": rows(t), "new_key_values.0.value": rows(t) });
  step(40);
  assert.equal(cache.capacity, 43);
  for (let i = 0; i < 3; i++) step(1);
  assert.equal(cache.capacity, 43);
  assert.equal(cache.length, 43);
  // The generation's bound does not hold for a fork (a scored candidate continues its context).
  const fork = cache.fork();
  fork.absorb({ "new_key_values.0.key": rows(1), "new_key_values.0.value": rows(1) });
  assert.equal(fork.capacity, capacityFor(44));
});

/** emu2-tiny's LLM graphs on the CPU and a host-cache factory: the context generation runs on, built by hand. */
async function tinyGraphs(model: Emu2): Promise<{ graphs: LlmGraphs; hostCache: KvCacheFactory }> {
  const { hidden_size: hidden, num_layers: layers, num_heads: heads, head_dim: headDim } = model.manifest.llm;
  const [embedTokens, projectUp, decoder, lmHead, projectDown] = await Promise.all(
    (["embed_tokens", "project_up", "decoder", "lm_head", "project_down"] as const).map((r) => model.pkg.session(r)),
  );
  return {
    graphs: new LlmGraphs({ embedTokens, projectUp, decoder, lmHead, projectDown }, model.manifest.dtype, hidden),
    hostCache: HostKvCache.factory({ layers, heads, headDim, dtype: model.manifest.dtype }),
  };
}

test("generation bounds its cache by the longest prompt plus what it may add (greedy, beam search, regression)", async () => {
  const { graphs, hostCache } = await tinyGraphs(Emu2.open(packageDir("emu2-tiny")));
  const bounds: (number | undefined)[] = [];
  const capacities: number[] = [];
  const ctx = {
    graphs,
    newCache: async (batch: number, maxLength?: number) => {
      bounds.push(maxLength);
      const cache = (await hostCache(batch, maxLength)) as HostKvCache;
      // The most slots the cache fed the decoder, read before each of its runs.
      const feeds = cache.feeds.bind(cache);
      cache.feeds = () => {
        capacities.push(cache.capacity);
        return feeds();
      };
      return cache;
    },
    imageTokenId: 32000,
    eosTokenId: 2,
    padTokenId: 0,
  };
  const prompts = [
    [1, 450, 2654, 1559],
    [1, 450, 2654, 1559, 610, 491, 278],
  ];
  const run = async (what: () => Promise<unknown>) => {
    bounds.length = 0;
    capacities.length = 0;
    await what();
    return { bounds: [...bounds], most: Math.max(...capacities) };
  };
  const greedy = await run(() => generateText(ctx, prompts, null, { ...GREEDY, maxNewTokens: 5, minNewTokens: 5 }));
  // 5 new tokens: 4 of them go back through the decoder (the last ends the generation).
  assert.deepEqual(greedy, { bounds: [7 + 4], most: 7 + 4 });
  const beam = await run(() =>
    generateText(ctx, prompts, null, { ...GREEDY, numBeams: 3, maxNewTokens: 4, minNewTokens: 4 }),
  );
  assert.deepEqual(beam, { bounds: [7 + 3], most: 7 + 3 });
  // Regression: the prompt and [IMG], then 3 steps of which the last runs no decoder.
  const regression = await run(() => regressImage(ctx, prompts, null, 32001, 3));
  assert.deepEqual(regression, { bounds: [8 + 2], most: 8 + 2 });
});

test("decoding on the cache, with beam-style row expansion and reordering, gives the logits of a full recompute at every step", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const ref = new LlmGoldens("emu2-tiny");
  const llm = await model.llm();
  const { graphs, hostCache } = await tinyGraphs(model);
  const ctx = {
    graphs,
    newCache: hostCache,
    imageTokenId: ref.meta.image_token_id,
    eosTokenId: 2,
    padTokenId: ref.meta.pad_token_id,
  };
  // Two prompts of different lengths (left padding), the second with an image; then beams: rows expand 2 -> 4, are
  // reordered and duplicated at every step, each row getting its own next token.
  const prompts = [ref.prompt(0), ref.prompt(1)];
  const selections = [
    [0, 0, 1, 1],
    [1, 0, 3, 2],
    [0, 0, 2, 3],
    [3, 1, 1, 0],
    [2, 3, 0, 1],
  ];
  const {
    cache,
    mask: promptMask,
    last,
  } = await prefill(
    ctx,
    prompts.map((p) => p.ids),
    ref.features(ref.meta.prompts[1].images),
    selections.length,
  );
  let sequences = prompts.map((p) => [...p.ids]);
  let rowFeatures = prompts.map((p) => p.features);
  let mask = promptMask;
  let rows = last;
  try {
    for (let step = 0; ; step++) {
      const logits = await graphs.lmHead(rows, sequences.length);
      const v = logits.length / sequences.length;
      for (const [i, sequence] of sequences.entries()) {
        const full = await llm.promptLogits(sequence, rowFeatures[i]);
        const diff = maxAbsDiff(logits.subarray(i * v, (i + 1) * v), full.subarray(full.length - v));
        // Measured up to 1.8e-5 (float32 summation order of one long run vs many short ones).
        assert.ok(diff <= 5e-5, `step ${step} row ${i}: cached logits differ from a full recompute by ${diff}`);
      }
      if (step === selections.length) break;
      const selection = selections[step];
      await cache.select(selection);
      sequences = selection.map((r) => [...sequences[r]]);
      rowFeatures = selection.map((r) => rowFeatures[r]);
      mask = selection.map((r) => [...mask[r], 1]);
      const tokens = sequences.map((_, i) => 1000 + 37 * step + 101 * i);
      sequences.forEach((s, i) => s.push(tokens[i]));
      rows = graphs.lastRows(
        await graphs.decoder(await graphs.embedTokens(tokens.map((t) => [t])), mask, cache),
        tokens.length,
      );
    }
  } finally {
    cache.release();
    await model.release();
  }
});

test("the parts of a split decoder's cache feed their rows in one order, or say they do not", async () => {
  const ort = loadOrt();
  const parts = (rankOrder: boolean[]) =>
    PartCaches.factory(
      rankOrder.map((rank, k) =>
        HostKvCache.factory({ layers: 1, firstLayer: k, heads: 1, headDim: 1, dtype: "float32" }, 0, rank),
      ),
    )(3);
  const fill = (cache: KvCache) => {
    const rows = new ort.Tensor("float32", Float32Array.from([0, 10, 20]), [3, 1, 1, 1]);
    cache.absorb({
      "new_key_values.0.key": rows,
      "new_key_values.0.value": rows,
      "new_key_values.1.key": rows,
      "new_key_values.1.value": rows,
    });
  };
  const hosts = await parts([false, false]);
  await fill(hosts);
  await hosts.select([1, 0, 0]);
  assert.deepEqual(hosts.feedOrder(), [1, 0, 2]);
  assert.deepEqual(filledSlots(hosts, "1.key"), [10, 0, 0]);
  const mixed = await parts([true, false]);
  await fill(mixed);
  await mixed.select([1, 0, 0]);
  assert.throws(() => mixed.feedOrder(), /hold their rows in different orders/);
  const ranked = await parts([true, true]);
  await fill(ranked);
  await ranked.select([1, 0, 0]);
  assert.equal(ranked.feedOrder(), undefined);
  assert.deepEqual(filledSlots(ranked, "0.key"), [10, 0, 0]);
});
