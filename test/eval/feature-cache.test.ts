import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { FeatureCache, packageFeatureKey } from "../../src/eval/feature-cache.js";
import { packageDir } from "../helpers/fixtures.js";
import { GREEDY } from "../helpers/settings.js";

const IMAGES = [
  "fixtures/datasets/coco/val2014/COCO_val2014_000000000101.jpg",
  "fixtures/datasets/coco/val2014/COCO_val2014_000000000102.jpg",
].map((p) => resolve(p));

test("features from the disk cache equal the encoder's, keyed by image content and package", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const dir = mkdtempSync(join(tmpdir(), "emu2-features-"));
  try {
    const first = new FeatureCache(model, dir);
    const computed = await first.features(IMAGES[0], 64);
    assert.deepEqual(first.stats, { computed: 1, fromDisk: 0 });
    const direct = await model.imageFeatures({ path: IMAGES[0] });
    assert.deepEqual(computed.dims, [1, 64, 32]);
    assert.deepEqual(computed.data, direct.data);
    // A second run (another cache object) reads it back bit for bit; a copy of the image under another name too.
    const copy = join(dir, "renamed.jpg");
    cpSync(IMAGES[0], copy);
    const second = new FeatureCache(model, dir);
    assert.deepEqual((await second.features(copy, 64)).data, computed.data);
    assert.deepEqual(second.stats, { computed: 0, fromDisk: 1 });
    await second.features(IMAGES[1], 64);
    assert.deepEqual(second.stats, { computed: 1, fromDisk: 1 });
    assert.equal(readdirSync(join(dir, packageFeatureKey(model))).length, 2);
    // Another package has another key.
    const chat = Emu2.open(packageDir("emu2-chat-tiny"));
    assert.notEqual(packageFeatureKey(chat), packageFeatureKey(model));
    await chat.release();
    // The RICES vector is the mean of the pooled tokens.
    const v = await second.vector(IMAGES[0]);
    const mean0 = Array.from({ length: 64 }, (_, t) => computed.data[t * 32]).reduce((s, x) => s + x, 0) / 64;
    assert.ok(Math.abs(v[0] - mean0) < 1e-6);
  } finally {
    await model.release();
  }
});

test("a prompt prepared with the cache as its image source generates what the encoder path generates", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  try {
    const cache = new FeatureCache(model, mkdtempSync(join(tmpdir(), "emu2-features-")));
    const prompt = {
      kind: "sequence" as const,
      parts: [
        { kind: "image" as const, image: { path: IMAGES[1] } },
        { kind: "text" as const, text: "a " },
        { kind: "image" as const, image: { path: IMAGES[0] } },
        { kind: "text" as const, text: "b" },
      ],
    };
    const settings = { ...GREEDY, maxNewTokens: 4, minNewTokens: 1, numBeams: 2, lengthPenalty: -1 };
    const plain = await model.generateText([prompt], settings);
    const cached = await model.generateText([prompt], settings, { imageFeatures: cache.source });
    assert.deepEqual(cached[0].ids, plain[0].ids);
    const a = await model.prepare(prompt);
    const b = await model.prepare(prompt, { imageFeatures: cache.source });
    assert.deepEqual(b.features!.data, a.features!.data, "images in prompt order");
    assert.deepEqual(cache.stats, { computed: 2, fromDisk: 2 });
  } finally {
    await model.release();
  }
});
