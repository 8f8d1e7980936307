// Video input through the facade against the PyTorch reference (fixtures/golden/emu2-chat-tiny/video/, written by
// python/emu2ref/golden_video.py): the sampled frames, the [VIDEO] / [IMG] + 64 x [gIMG] + [/IMG] expansion, frame
// features pooled to video_n_query, spliced at the [gIMG] rows beside an image's <image> rows, and the answers.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { Emu2 } from "../src/emu2.js";
import type { GenerationSettings } from "../src/llm/stage.js";
import type { Part, PromptInput } from "../src/prompt/types.js";
import { Golden, maxAbsDiff } from "./helpers/golden.js";
import { goldenDir, packageDir } from "./helpers/fixtures.js";
import { GREEDY } from "./helpers/settings.js";

const NAME = "emu2-chat-tiny";
const haveGolden = existsSync(goldenDir(NAME, "video"));
const golden = haveGolden ? new Golden(goldenDir(NAME, "video")) : undefined;
const meta = golden?.meta as {
  video: string;
  frames_requested: number;
  frame_indices: number[];
  image: string;
  video_n_query: number;
  n_query: number;
  prompts: { items: string[] }[];
  greedy: { max_new_tokens: number; min_new_tokens: number };
  beam: { num_beams: number; length_penalty: number; max_new_tokens: number; min_new_tokens: number };
  eos_token_id: number;
  pad_token_id: number;
};
const base: GenerationSettings = {
  ...GREEDY,
  maxNewTokens: 12,
  minNewTokens: 1,
};

/** The reference's item list as a prompt: "[VIDEO]" frames "[/VIDEO]" is one video part here. */
function promptFor(items: string[], video: string): PromptInput {
  const parts: Part[] = [];
  for (const item of items) {
    if (item === "[VIDEO]") parts.push({ kind: "video", video: { path: resolve(video) } });
    else if (item === "image") parts.push({ kind: "image", image: { path: resolve(meta.image) } });
    else if (item !== "frames" && item !== "[/VIDEO]") parts.push({ kind: "text", text: item });
  }
  return { kind: "sequence", parts };
}

function generated(row: number[]): number[] {
  const end = row.findIndex((id) => id === meta.eos_token_id || id === meta.pad_token_id);
  return end < 0 ? row : row.slice(0, end);
}

test(
  "video prompts: ids, frame features at the [gIMG] rows, logits, greedy and beam answers equal the reference",
  { skip: !haveGolden },
  async () => {
    const g = golden as Golden;
    const model = Emu2.open(packageDir(NAME));
    try {
      const tokens = model.manifest.tokenizer.special_tokens;
      const frameFeatures = g.float32("frames.features");
      const [frames, vQuery, width] = frameFeatures.shape;
      assert.equal(vQuery, model.manifest.vision.video_n_query);
      for (const [i, spec] of meta.prompts.entries()) {
        const prepared = await model.prepare(promptFor(spec.items, meta.video), { frames: meta.frames_requested });
        const ids = prepared.encoded.ids;
        assert.deepEqual(ids, g.ints(`p${i}.ids`), `prompt ${i} ids`);
        assert.deepEqual(
          prepared.videos[0].frames.map((f) => f.index),
          meta.frame_indices,
        );
        // [VIDEO] right before the first frame's [IMG]; every frame is [IMG] + video_n_query x [gIMG] + [/IMG].
        const first = ids.indexOf(tokens["[VIDEO]"]);
        assert.equal(ids[first + 1], tokens["[IMG]"]);
        assert.deepEqual(ids.slice(first + 2, first + 2 + vQuery), Array(vQuery).fill(tokens["[gIMG]"]));
        assert.equal(ids[first + 2 + vQuery], tokens["[/IMG]"]);
        // The features of the [gIMG] rows, in order, are the reference's frame features.
        const features = prepared.features as { data: Float32Array; dims: readonly number[] };
        const frameRows: number[] = [];
        ids
          .filter((id) => id === tokens["<image>"] || id === tokens["[gIMG]"])
          .forEach((id, r) => {
            if (id === tokens["[gIMG]"]) frameRows.push(r);
          });
        assert.equal(frameRows.length, frames * vQuery);
        const ours = new Float32Array(frameRows.length * width);
        frameRows.forEach((r, k) => ours.set(features.data.subarray(r * width, (r + 1) * width), k * width));
        const featureDiff = maxAbsDiff(ours, frameFeatures.data);
        // Measured 2.0e-6 (ONNX Runtime vs PyTorch float32); logits below 2.3e-5.
        assert.ok(featureDiff <= 1e-5, `prompt ${i}: frame features differ by ${featureDiff}`);

        const llm = await model.llm();
        const logits = await llm.promptLogits(ids, prepared.features);
        const last = g.float32(`p${i}.logits_last`).data;
        const diff = maxAbsDiff(logits.subarray(logits.length - last.length), last);
        assert.ok(diff <= 1e-4, `prompt ${i}: last logits differ by ${diff}`);
        const [greedy] = await llm.generateText([ids], prepared.features, {
          ...base,
          maxNewTokens: meta.greedy.max_new_tokens,
          minNewTokens: meta.greedy.min_new_tokens,
        });
        assert.deepEqual(greedy.ids, generated(g.ints(`p${i}.greedy`)), `prompt ${i} greedy`);
        const [beam] = await llm.generateText([ids], prepared.features, {
          ...base,
          numBeams: meta.beam.num_beams,
          lengthPenalty: meta.beam.length_penalty,
          maxNewTokens: meta.beam.max_new_tokens,
          minNewTokens: meta.beam.min_new_tokens,
        });
        assert.deepEqual(beam.ids, generated(g.ints(`p${i}.beam`)), `prompt ${i} beam`);
      }
    } finally {
      await model.release();
    }
  },
);

test(
  "the clip as a frames folder, a GIF and a WebP gives the same prompt and the same features",
  { skip: !haveGolden },
  async () => {
    const model = Emu2.open(packageDir(NAME));
    try {
      const clip = meta.video.replace(/\.gif$/, "");
      const prepared = [];
      for (const source of [`${clip}.gif`, `${clip}.webp`, clip]) {
        prepared.push(await model.prepare(promptFor(meta.prompts[1].items, source), { frames: meta.frames_requested }));
      }
      for (const p of prepared.slice(1)) {
        assert.deepEqual(p.encoded.ids, prepared[0].encoded.ids);
        assert.deepEqual(
          p.videos[0].frames.map((f) => f.index),
          prepared[0].videos[0].frames.map((f) => f.index),
        );
        assert.equal(
          maxAbsDiff(
            (p.features as { data: Float32Array }).data,
            (prepared[0].features as { data: Float32Array }).data,
          ),
          0,
        );
      }
    } finally {
      await model.release();
    }
  },
);
