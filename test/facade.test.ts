// The facade end to end against the PyTorch reference: a text prompt through tokenizer, LLM regression (cond and
// the empty-prompt null condition) and the visual decoder gives the reference's image; and decoding with the KV
// cache equals decoding by full recompute through the same graphs.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { readFileSync } from "node:fs";
import { Emu2 } from "../src/emu2.js";
import { ImageLoadError } from "../src/vision/image.js";
import { positionIds } from "../src/llm/stage.js";
import { Golden, maxAbsDiff } from "./helpers/golden.js";
import { goldenDir, packageDir } from "./helpers/fixtures.js";
import { GREEDY } from "./helpers/settings.js";

test("text -> image: the facade reproduces the reference's 4-step guided image within 5e-6 max abs diff", async () => {
  const diffusion = new Golden(goldenDir("emu2-tiny", "diffusion"));
  const llm = new Golden(goldenDir("emu2-tiny", "llm"));
  const meta = diffusion.meta as { seed: number; steps: number; guidance_scale: number };
  const model = Emu2.open(packageDir("emu2-tiny"));
  const prompt = (llm.meta as { prompts: { text: string }[] }).prompts[0].text;
  const [image] = await model.generateImages(
    { kind: "sequence", parts: [{ kind: "text", text: prompt }] },
    { steps: meta.steps, cfgScale: meta.guidance_scale, seed: meta.seed },
  );
  const expected = diffusion.float32("run.image");
  assert.deepEqual([3, image.height, image.width], expected.shape.slice(-3));
  // Measured 1.2e-6 (float32 summation order); a wrong text_embeds normalization moves pixels by ~8e-4.
  const diff = maxAbsDiff(image.data, expected.data);
  assert.ok(diff <= 5e-6, `max abs diff ${diff}`);
  await model.release();
});

test("greedy decoding with the KV cache equals full recompute of the whole sequence at every step", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const llm = await model.llm();
  const ids = model.tokenizer().encode("A red car parked by the sea.");
  const [cached] = await llm.generateText([ids], null, {
    maxNewTokens: 8,
    ...GREEDY,
  });
  const [decoder, lmHead, layers, heads, headDim] = [
    await model.pkg.session("decoder"),
    await model.pkg.session("lm_head"),
    model.manifest.llm.num_layers,
    model.manifest.llm.num_heads,
    model.manifest.llm.head_dim,
  ];
  const sequence = [...ids];
  for (let step = 0; step < cached.ids.length; step++) {
    const embeds = await llm.embed([sequence], null);
    const t = sequence.length;
    const mask = new Array<number>(t).fill(1);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor("float32", embeds, [1, t, model.manifest.llm.hidden_size]),
      attention_mask: new ort.Tensor("int64", BigInt64Array.from(mask, BigInt), [1, t]),
      position_ids: new ort.Tensor("int64", BigInt64Array.from(positionIds(mask), BigInt), [1, t]),
    };
    for (let i = 0; i < layers; i++) {
      for (const kind of ["key", "value"])
        feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor("float32", new Float32Array(0), [1, heads, 0, headDim]);
    }
    const hidden = (await decoder.run(feeds)).last_hidden_state.data as Float32Array;
    const h = model.manifest.llm.hidden_size;
    const last = hidden.slice((t - 1) * h, t * h);
    const logits = (await lmHead.run({ hidden_states: new ort.Tensor("float32", last, [1, 1, h]) })).logits
      .data as Float32Array;
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    assert.equal(best, cached.ids[step], `step ${step}`);
    sequence.push(best);
  }
  await model.release();
});

test("scoring continuations after an image prompt equals the reference's scores", async () => {
  const llm = new Golden(goldenDir("emu2-tiny", "llm"));
  const meta = llm.meta as {
    prompts: { text: string; images: string[] }[];
    score: { candidates: string[]; context_prompt: number };
  };
  const context = meta.prompts[meta.score.context_prompt];
  const model = Emu2.open(packageDir("emu2-tiny"));
  const parts = [
    { kind: "image" as const, image: { path: `fixtures/images/${context.images[0]}` } },
    { kind: "text" as const, text: context.text.replace("[<IMG_PLH>]", "") },
  ];
  const scores = await model.scoreContinuations({ kind: "sequence", parts }, meta.score.candidates);
  const sums = llm.float32("score.sum").data;
  scores.forEach((s, i) => assert.ok(Math.abs(s.sum - sums[i]) <= 1e-4, `${s.candidate}: ${s.sum} vs ${sums[i]}`));
  await model.release();
});

test("stop strings: a stop text in the middle of the answer, spanning two tokens, ends generation at the token that completes it and is trimmed with what follows; with several stops the earliest wins", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const tokenizer = model.tokenizer();
  const input = { kind: "sequence" as const, parts: [{ kind: "text" as const, text: "A red car parked by the sea." }] };
  const settings = {
    ...GREEDY,
    maxNewTokens: 12,
  };
  const [full] = await model.generateText([input], settings);
  assert.equal(full.stopReason, "length");
  const prefixes = full.ids.map((_, i) => tokenizer.decode(full.ids.slice(0, i + 1)));
  // A stop text made of the last two characters of token k's text and the first two of token k+1's.
  const spanning = (k: number) => prefixes[k + 1].slice(prefixes[k].length - 2, prefixes[k].length + 2);
  const expected = (stop: string) => {
    const end = prefixes.findIndex((text) => text.includes(stop));
    return { ids: full.ids.slice(0, end + 1), text: prefixes[end].slice(0, prefixes[end].indexOf(stop)) };
  };
  const early = spanning(3);
  const late = spanning(7);
  assert.ok(
    prefixes[3].length >= 2 && !prefixes[3].includes(early) && prefixes[4].includes(early),
    `"${early}" spans tokens 3 and 4`,
  );
  // Completed by the same token as `early` but starting two characters before it: the text is cut at the earlier start.
  const overlapping = prefixes[4].slice(prefixes[3].length - 4, prefixes[3].length + 1);
  assert.ok(!prefixes[3].includes(overlapping) && prefixes[4].includes(overlapping));
  for (const [stop, first] of [
    [[early], early],
    [[late], late],
    [[late, early], early],
    [[early, overlapping], overlapping],
  ] as const) {
    const [out] = await model.generateText([input], { ...settings, stop: [...stop] });
    const want = expected(first);
    assert.equal(out.stopReason, "stop", `stop ${JSON.stringify(stop)}`);
    assert.deepEqual(out.ids, want.ids, `stop ${JSON.stringify(stop)}: ids`);
    assert.equal(out.text, want.text, `stop ${JSON.stringify(stop)}: trimmed text`);
    assert.ok(want.text.length > 0 && want.ids.length < full.ids.length, "the stop lies in the middle of the answer");
  }
  // Streaming hands over exactly the trimmed text: no part of the stop, nothing after it.
  let streamed = "";
  const [out] = await model.generateText(
    [input],
    { ...settings, stop: [late] },
    { onText: (_, delta) => (streamed += delta) },
  );
  assert.equal(out.text, expected(late).text);
  assert.equal(streamed, out.text);
  await model.release();
});

test("one in-memory image that does not decode fails its own prompt with an ImageLoadError naming it; the batch runs", async () => {
  const model = Emu2.open(packageDir("emu2-tiny"));
  const settings = {
    maxNewTokens: 3,
    ...GREEDY,
  };
  const image = (bytes: Buffer, label: string) => ({
    kind: "sequence" as const,
    parts: [
      { kind: "image" as const, image: { bytes, label } },
      { kind: "text" as const, text: "Describe it." },
    ],
  });
  const results = await model.generateTextEach(
    [image(Buffer.from("not an image"), "upload #2"), image(readFileSync("fixtures/images/blocks.png"), "upload #3")],
    settings,
  );
  const [bad, good] = results;
  assert.ok("error" in bad && bad.error instanceof ImageLoadError, "the bad image's prompt has an ImageLoadError");
  assert.match((bad.error as Error).message, /^upload #2: not an image in a supported format/);
  assert.ok("ids" in good && good.ids.length === 3, "the good image's prompt was answered");
  await model.release();
});
