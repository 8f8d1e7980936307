// emu2-toy through the TypeScript runtime: a model that has learned something (docs/emu2-toy/README.md), so the whole
// chain (image loading and preprocessing, encoder, pooling, splicing, KV cache, greedy decoding) is tested on
// behaviour a person can check, beyond the goldens of the random-weight packages. The slice is fixed held-out data
// (fixtures/toy-eval); the floor sits under the figure measured on the committed package (99 of 100 on the whole
// file), far above what a broken chain gives (a model blind to the image names the color and the shape
// of about one scene in 24).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Emu2, imageToPng } from "../../src/emu2.js";
import { TOY_EVAL, readJsonl } from "../../tools/toy-eval.js";
import { emu2 } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";
import { GREEDY } from "../helpers/settings.js";

const SLICE = 40;
const CAPTION_FLOOR = 0.9;
// Exactly the reference caption: also the count, and the quadrant of a single shape (which pooled token is which);
// 34 of 40 here (89 of 100 on the whole file).
const EXACT_FLOOR = 0.8;

test("emu2-toy captions name the color, shape, count and place of held-out scenes", async () => {
  const model = Emu2.open(packageDir("emu2-toy"));
  try {
    const scenes = readJsonl<{ image: string; prompt: string; captions: string[]; color: string; shape: string }>(
      join(TOY_EVAL, "caption.jsonl"),
    ).slice(0, SLICE);
    const results = await model.generateText(
      scenes.map((s) => ({
        kind: "sequence",
        parts: [
          { kind: "image", image: { path: join(TOY_EVAL, s.image) } },
          { kind: "text", text: s.prompt },
        ],
      })),
      { ...GREEDY, maxNewTokens: model.manifest.generation.max_new_tokens },
    );
    const named = results.filter((r, i) => {
      const words = new Set(r.text.trim().toLowerCase().split(/\s+/));
      return words.has(scenes[i].color) && (words.has(scenes[i].shape) || words.has(`${scenes[i].shape}s`));
    });
    assert.ok(named.length / scenes.length >= CAPTION_FLOOR, `${named.length} of ${scenes.length} name both`);
    const exact = results.filter((r, i) => r.text.trim() === scenes[i].captions[0]);
    assert.ok(exact.length / scenes.length >= EXACT_FLOOR, `${exact.length} of ${scenes.length} exact`);
  } finally {
    await model.release();
  }
});

// Text-to-image, judged as issue 11 asks: the toy captions the image it drew from a held-out scene's caption, and that
// caption must name the prompt's color and shape. The whole generation chain runs (the prompt, the regression of the
// n_query visual embeddings, the guidance null, the UNet, the Euler loop, the VAE, PNG encoding) and then the
// captioning chain on the PNG. The floor sits under the figure measured on the committed package (29 of 32 here, 94 of
// 100 on the first 100: docs/emu2-toy/decoder.md); a chain that loses the conditioning draws the average image, whose
// caption names the prompt's color and shape about one time in 24.
const DRAW_SLICE = 32;
// The package before this one drew 27 of 32 here (85 of 100), one before it 20 of 32 (68 of 100).
const DRAW_FLOOR = 0.8;

test("emu2-toy draws what a caption names: its own caption of the image has the prompt's color and shape", async () => {
  const model = Emu2.open(packageDir("emu2-toy"));
  try {
    const scenes = readJsonl<{ prompt: string; captions: string[]; color: string; shape: string }>(
      join(TOY_EVAL, "caption.jsonl"),
    ).slice(0, DRAW_SLICE);
    const drawn: Buffer[] = [];
    for (const s of scenes) {
      const [image] = await model.generateImages(
        { kind: "sequence", parts: [{ kind: "text", text: s.captions[0] }] },
        { seed: 0 },
      );
      assert.equal(image.width, 64);
      drawn.push(await imageToPng(image, {}));
    }
    const captions = await model.generateText(
      drawn.map((bytes, i) => ({
        kind: "sequence",
        parts: [
          { kind: "image", image: { bytes, label: `drawn-${i}.png` } },
          { kind: "text", text: scenes[i].prompt },
        ],
      })),
      { ...GREEDY, maxNewTokens: model.manifest.generation.max_new_tokens },
    );
    const named = captions.filter((r, i) => {
      const words = new Set(r.text.trim().toLowerCase().split(/\s+/));
      return words.has(scenes[i].color) && (words.has(scenes[i].shape) || words.has(`${scenes[i].shape}s`));
    });
    assert.ok(named.length / scenes.length >= DRAW_FLOOR, `${named.length} of ${scenes.length} name both`);
  } finally {
    await model.release();
  }
});

// In-context learning, the point of Emu2's few-shot claims: nonsense words name the toy's colors and shapes in one
// fixed mapping the model never saw (its training drew a new mapping per episode), so only the demonstrations can say
// which word is which. `emu2 fewshot-eval` (the user's command: demonstrations, interleaved prompt, encoder, splicing,
// KV cache, ranking of the four labels) on a fixed held-out slice; 4 shots must beat 0 by a wide margin (measured:
// color 10 -> 100%, shape 30 -> 90% on these 20 queries each). A chain that
// drops or misplaces the demonstrations' images, or scores the wrong tokens, stays near chance (25%) at 4 shots.
const FEWSHOT_LIMIT = 20;
// Accuracy in percent, as fewshot-eval reports it.
const FEWSHOT_MARGIN = 50;

test("emu2-toy learns nonsense labels in context: 4 shots beat 0 shots on held-out scenes", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-toy-fewshot-"));
  const r = emu2([
    "fewshot-eval",
    "--tasks",
    "toy-nonsense-color,toy-nonsense-shape",
    "--data-dir",
    "fixtures",
    "--shots",
    "0,4",
    "--demos",
    "balanced",
    "--limit",
    String(FEWSHOT_LIMIT),
    "-m",
    packageDir("emu2-toy"),
    "-o",
    dir,
    "--json",
  ]);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as { results: Record<string, Record<string, { mean: number }>> };
  for (const task of ["toy-nonsense-color", "toy-nonsense-shape"]) {
    const zero = results.results[task]["0"].mean;
    const four = results.results[task]["4"].mean;
    assert.ok(four - zero >= FEWSHOT_MARGIN, `${task}: ${zero} at 0 shots, ${four} at 4`);
  }
});
