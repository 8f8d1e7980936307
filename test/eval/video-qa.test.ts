// The video-QA task format (src/eval/video-qa.ts): the fixture's records, one-line errors, prompts that the tiny
// chat package runs (GIF, WebP, frames folder, and an mp4 made here where ffmpeg is installed), and scoring.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { emu2ShortAnswer, scoreVqa } from "../../src/eval/metrics/vqa.js";
import { readVideoQa, videoQaPrompt } from "../../src/eval/video-qa.js";
import { packageDir } from "../helpers/fixtures.js";

const FIXTURE = "fixtures/datasets/video-qa/clips.jsonl";
const HAVE_FFMPEG = spawnSync("ffmpeg", ["-version"]).status === 0 && spawnSync("ffprobe", ["-version"]).status === 0;

test("the fixture's records: ids, videos resolved from the file's folder, questions and answers", () => {
  const items = readVideoQa(FIXTURE);
  assert.deepEqual(items.map((i) => i.id), ["red-square-right", "blue-bar-up", "green-blink"]);
  assert.equal(items[0].video, resolve("fixtures/videos/red-square-right.gif"));
  assert.equal(items[1].video, resolve("fixtures/videos/blue-bar-up"));
  assert.deepEqual(items[2].answers, ["green"]);
});

test("bad records stop with one line naming the file, the line and the field", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-videoqa-"));
  const cases: [string, RegExp][] = [
    ['{"video": "x.gif", "question": "q", "answers": ["a"]}', /bad\.jsonl: line 1: video: .*x\.gif: no such file or folder$/],
    [`{"video": "${resolve("fixtures/videos/green-blink")}", "question": "q", "answers": []}`, /bad\.jsonl: line 1: answers: expected a non-empty list of answers \(text\), got \[\]$/],
    [`{"video": "${resolve("fixtures/videos/green-blink")}", "answers": ["a"]}`, /bad\.jsonl: line 1: question: expected text \(missing\)$/],
    ['\n{"video": 3', /bad\.jsonl: line 2: not valid JSON/],
  ];
  for (const [text, pattern] of cases) {
    writeFileSync(join(dir, "bad.jsonl"), text);
    assert.throws(() => readVideoQa(join(dir, "bad.jsonl")), (e: unknown) => e instanceof Error && !e.message.includes("\n") && pattern.test(e.message), text);
  }
});

test("prompts: 0-shot and k-shot in the paper's VQA form with the video in place of the image", () => {
  const [a, b, c] = readVideoQa(FIXTURE);
  const zero = videoQaPrompt(c);
  assert.deepEqual(zero, { kind: "sequence", parts: [
    { kind: "video", video: { path: c.video } },
    { kind: "text", text: " based on the video, answer in one word or phrase. What colour is the light? short answer:" },
  ] });
  const two = videoQaPrompt(c, [a, b]);
  assert.equal(two.kind === "sequence" ? two.parts.length : 0, 6);
  assert.deepEqual(two.kind === "sequence" ? two.parts[1] : undefined, { kind: "text", text: " based on the video, Which way does the red square move? short answer: right. " });
});

test("the tiny chat package answers every item (one an mp4 where ffmpeg is installed) and the answers are scored", async () => {
  const items = readVideoQa(FIXTURE);
  if (HAVE_FFMPEG) {
    const dir = mkdtempSync(join(tmpdir(), "emu2-videoqa-mp4-"));
    const mp4 = join(dir, "clip.mp4");
    const r = spawnSync("ffmpeg", ["-v", "error", "-y", "-framerate", "5", "-i", resolve("fixtures/videos/blue-bar-up/frame-%02d.png"), "-c:v", "libx264", "-pix_fmt", "yuv420p", mp4]);
    assert.equal(r.status, 0, r.stderr.toString());
    writeFileSync(join(dir, "mp4.jsonl"), `${JSON.stringify({ id: 7, video: "clip.mp4", question: "What does the bar do?", answers: ["grows"] })}\n`);
    items.push(...readVideoQa(join(dir, "mp4.jsonl")));
  }
  const model = Emu2.open(packageDir("emu2-chat-tiny"));
  try {
    const prompts = items.map((item, i) => videoQaPrompt(item, i > 0 ? [items[0]] : []));
    const prepared = await model.prepare(prompts[items.length - 1], { frames: 2 });
    assert.equal(prepared.videos.length, 2);
    assert.deepEqual(prepared.videos.map((v) => v.frames.length), [2, 2]);
    const results = await model.generateText(prompts, { maxNewTokens: 5, minNewTokens: 1, numBeams: 1, lengthPenalty: 1, repetitionPenalty: 1, doSample: false, temperature: 1, topK: 0, topP: 1, seed: 0, stop: [] }, { frames: 2 });
    assert.equal(results.length, items.length);
    const summary = scoreVqa(results.map((r, i) => ({ prediction: emu2ShortAnswer(r.text), answers: items[i].answers })));
    assert.equal(summary.n, items.length);
    // "It grows. Then" is cleaned to "grows", which matches one of the three answers: leave-one-out gives 0, 1/3, 1/3.
    assert.ok(Math.abs(scoreVqa([{ prediction: emu2ShortAnswer("It grows. Then"), answers: items[1].answers }]).score - 200 / 9) < 1e-9);
  } finally {
    await model.release();
  }
});
