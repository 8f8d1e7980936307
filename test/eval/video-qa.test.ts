// The video-QA task format (format: video_qa, configs/eval/video_qa.yaml): its fixture records, skipped bad records,
// few-shot prompts with videos, an mp4 item where ffmpeg is installed, and emu2 fewshot-eval end to end on the clips.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { loadSplit } from "../../src/eval/datasets.js";
import { buildPrompt } from "../../src/eval/prompts.js";
import { loadTaskConfig, validateTaskConfig } from "../../src/eval/task-config.js";
import { emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const DATA = "fixtures/datasets";
const FIXTURE_TASK = "fixtures/datasets/configs/video_qa.yaml";
const HAVE_FFMPEG = spawnSync("ffmpeg", ["-version"]).status === 0 && spawnSync("ffprobe", ["-version"]).status === 0;

test("the fixture clips load as video-QA samples: ids, videos resolved from the data dir, answers", () => {
  const { config } = loadTaskConfig(FIXTURE_TASK);
  assert.equal(config.format, "video_qa");
  assert.equal(config.video_frames, 2);
  const split = loadSplit(config, "eval", DATA);
  assert.deepEqual(split.skipped, []);
  assert.deepEqual(
    split.samples.map((s) => s.id),
    ["red-square-right", "blue-bar-up", "green-blink"],
  );
  assert.equal(split.samples[0].video, resolve("fixtures/videos/red-square-right.gif"));
  assert.equal(split.samples[1].video, resolve("fixtures/videos/blue-bar-up"));
  assert.deepEqual(split.samples[2].answers, ["green"]);
  assert.equal(split.samples[0].answer, "right");
});

test("bad video-QA records are skipped with the file, the line and why; a config needs {video} and kind vqa", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-videoqa-"));
  cpSync("fixtures/videos/green-blink", join(dir, "video-qa", "blink"), { recursive: true });
  writeFileSync(
    join(dir, "video-qa", "val.jsonl"),
    [
      '{"video": "missing.gif", "question": "q", "answers": ["a"]}',
      '{"video": "blink", "question": "q", "answers": []}',
      '{"video": "blink", "answers": ["a"]}',
      '{"video": "blink", "question": "fine", "answers": ["a"]}',
    ].join("\n"),
  );
  const { config } = loadTaskConfig("video_qa");
  const split = loadSplit(config, "eval", dir);
  assert.equal(split.samples.length, 1);
  assert.deepEqual(
    split.skipped.map((s) => s.reason.replace(dir, "DIR")),
    ["video DIR/video-qa/missing.gif: no such file", "a question without answers", "question: expected text"],
  );
  const raw = { ...config, prompt: { ...config.prompt, query: "{question} short answer:" } };
  assert.throws(
    () => validateTaskConfig(raw, "t.yaml"),
    /t\.yaml: field prompt\.query: format video_qa needs \{video\} in the query/,
  );
  assert.throws(
    () => validateTaskConfig({ ...config, kind: "captioning", metric: "cider" }, "t.yaml"),
    /field kind: format video_qa is a vqa task/,
  );
});

test("prompts: the paper's VQA form with the video in place of the image; the tiny chat package runs them (an mp4 too where ffmpeg is installed)", async () => {
  const { config } = loadTaskConfig(FIXTURE_TASK);
  const samples = loadSplit(config, "eval", DATA).samples;
  const zero = buildPrompt(config, samples[2], []);
  assert.deepEqual(zero, {
    kind: "sequence",
    parts: [
      { kind: "video", video: { path: samples[2].video } },
      {
        kind: "text",
        text: "based on the video, answer in one word or phrase. What colour is the light? short answer:",
      },
    ],
  });
  const one = buildPrompt(config, samples[2], [samples[0]]);
  assert.deepEqual(one.kind === "sequence" ? one.parts.map((p) => p.kind) : [], [
    "video",
    "text",
    "text",
    "video",
    "text",
  ]);
  assert.deepEqual(one.kind === "sequence" ? one.parts[1] : undefined, {
    kind: "text",
    text: "based on the video, Which way does the red square move? short answer: right",
  });
  const prompts = [zero, one];
  if (HAVE_FFMPEG) {
    const dir = mkdtempSync(join(tmpdir(), "emu2-videoqa-mp4-"));
    mkdirSync(join(dir, "video-qa"));
    const r = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-framerate",
      "5",
      "-i",
      resolve("fixtures/videos/blue-bar-up/frame-%02d.png"),
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      join(dir, "video-qa", "bar.mp4"),
    ]);
    assert.equal(r.status, 0, r.stderr.toString());
    writeFileSync(
      join(dir, "video-qa", "val.jsonl"),
      `${JSON.stringify({ id: 7, video: "bar.mp4", question: "What does the bar do?", answers: ["grows"] })}\n`,
    );
    const [mp4] = loadSplit(loadTaskConfig("video_qa").config, "eval", dir).samples;
    assert.equal(mp4.video, join(dir, "video-qa", "bar.mp4"));
    prompts.push(buildPrompt(config, mp4, [samples[1]]));
  }
  const model = Emu2.open(packageDir("emu2-chat-tiny"));
  try {
    for (const prompt of prompts) {
      const prepared = await model.prepare(prompt, { frames: config.video_frames });
      assert.ok(prepared.videos.every((v) => v.frames.length === 2));
      assert.equal(
        prepared.encoded.ids.filter((id) => id === model.manifest.tokenizer.special_tokens["[gIMG]"]).length,
        prepared.videos.length * 2 * 64,
      );
    }
  } finally {
    await model.release();
  }
});

test("emu2 fewshot-eval runs the video-QA task on the clips; --demos rices is refused for it in one line", () => {
  const out = mkdtempSync(join(tmpdir(), "emu2-videoqa-run-"));
  const args = ["fewshot-eval", "--tasks", FIXTURE_TASK, "--data-dir", DATA, "-m", packageDir("emu2-chat-tiny"), "-q"];
  const r = emu2([...args, "-o", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /video_qa 0-shot vqa: \d+\.\d\d \(n=3\)/);
  assert.match(r.stdout, /video_qa 2-shot vqa: \d+\.\d\d \(n=3\)/);
  const predictions = readFileSync(join(out, "predictions", "video_qa_2shot_seed0.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(predictions.length, 3);
  assert.ok(predictions.every((p) => typeof p.prediction === "string" && Array.isArray(p.references)));
  const rices = emu2([...args, "--demos", "rices", "-o", mkdtempSync(join(tmpdir(), "emu2-videoqa-rices-"))]);
  assert.equal(rices.status, 2);
  assert.ok(oneLine(rices.stderr), rices.stderr);
  assert.match(
    rices.stderr,
    /--demos rices ranks demonstrations by image features: task video_qa has videos \(use --demos random\)/,
  );
});
