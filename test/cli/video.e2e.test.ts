// Video input through the emu2 binary: prompt (timestamps, --json expansion), chat (-p, YAML, /video in a real
// terminal), caption --video, and bad input: one line on stderr, exit 1, nothing on stdout.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const chat = resolve(packageDir("emu2-chat-tiny"));
const fast = ["-m", chat, "-q", "--greedy", "-n", "6"];
const GIF = "fixtures/videos/red-square-right.gif";

test("emu2 prompt shows the sampled frames and their timestamps; --json shows the expansion", () => {
  const r = emu2(["prompt", "-m", chat, "-q", "-p", "What happened?", "--video", GIF, "--frames", "4"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\[USER\]: \[VIDEO\](\[<VID_PLH>\]){4}What happened\? \[ASSISTANT\]:/);
  assert.match(r.stdout, /tokens +\d+ \(0 images x 258, 1 video: 4 frames x 66 \+ \[VIDEO\]\)/);
  assert.match(
    r.stdout,
    /video 0 +\S+red-square-right\.gif \(GIF, 6 frames, 1\.200s\): frame 0 at 0\.150s, frame 2 at 0\.450s, frame 3 at 0\.750s, frame 5 at 1\.050s/,
  );
  const j = JSON.parse(
    emu2([
      "prompt",
      "-m",
      chat,
      "-q",
      "-p",
      "<image> then <video>",
      "--image",
      "fixtures/images/blocks.png",
      "--video",
      "fixtures/videos/blue-bar-up",
      "--frames",
      "2",
      "--json",
    ]).stdout,
  );
  assert.equal(j.videoNQuery, 64);
  assert.deepEqual(
    j.videos[0].frames.map((f: { index: number }) => f.index),
    [1, 3],
  );
  assert.deepEqual(
    j.spans.map((s: { kind: string; rows: number }) => [s.kind, s.rows]),
    [
      ["image", 256],
      ["video-frame", 64],
      ["video-frame", 64],
    ],
  );
  const ids: number[] = j.ids;
  assert.equal(ids[j.spans[1].start - 1], 32007, "[VIDEO] comes right before the first frame");
  assert.equal(ids.filter((id) => id === 32004).length, 128);
});

test("emu2 chat answers about a video; a GIF, a WebP and a frames folder of the same clip give the same answer", () => {
  const answers = [GIF, "fixtures/videos/red-square-right.webp", "fixtures/videos/red-square-right"].map((video) => {
    const r = emu2(["chat", ...fast, "-p", "What happened in the video?", "--video", video, "--frames", "4"]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  });
  assert.ok(answers[0].trim().length > 0);
  assert.equal(answers[1], answers[0]);
  assert.equal(answers[2], answers[0]);
  const yaml = emu2(["chat", ...fast, "--frames", "4", "-f", "fixtures/prompts/video.yaml"]);
  assert.equal(yaml.stdout, answers[0]);
});

test("a video with fewer frames than asked: all of them are used, and stderr says so", () => {
  const r = emu2([
    "chat",
    "-m",
    chat,
    "--greedy",
    "-n",
    "4",
    "-p",
    "What happened?",
    "--video",
    "fixtures/videos/green-blink",
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /green-blink: 3 frames, fewer than the 8 asked for: using all of them/);
  assert.ok(r.stdout.trim().length > 0);
});

test("bad video input: one line, exit 1, nothing on stdout", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-videocli-"));
  writeFileSync(join(dir, "cut.gif"), readFileSync(GIF).subarray(0, 40));
  const noVideo = join(dir, "novideo");
  cpSync(chat, noVideo, { recursive: true });
  writeFileSync(
    join(noVideo, "manifest.yaml"),
    readFileSync(join(noVideo, "manifest.yaml"), "utf8").replace(/\n  video_n_query: 64/, ""),
  );
  const cases: [string[], RegExp][] = [
    [
      ["-p", "?", "--video", "README.md"],
      /README\.md: not a video in a supported format \(expected a folder of frames, an animated GIF or WebP, or an mp4, webm or mov file\)\n/,
    ],
    [["-p", "?", "--video", join(dir, "cut.gif")], /cut\.gif: corrupt or unreadable GIF/],
    [["-p", "?", "--video", join(dir, "missing.mp4")], /missing\.mp4: no such file or folder\n/],
    [["-p", "?", "--video", GIF, "--frames", "0"], /--frames: expected a whole number > 0, got "0"/],
  ];
  for (const [args, pattern] of cases) {
    const r = emu2(["chat", ...fast, ...args]);
    assert.notEqual(r.status, 0);
    assert.ok(oneLine(r.stderr), r.stderr);
    assert.match(r.stderr, pattern);
    assert.equal(r.stdout, "");
  }
  const unsupported = emu2(["chat", "-m", noVideo, "-q", "--greedy", "-p", "?", "--video", GIF]);
  assert.equal(unsupported.status, 1);
  assert.ok(oneLine(unsupported.stderr), unsupported.stderr);
  assert.match(
    unsupported.stderr,
    /package emu2-chat-tiny has no video support \(its manifest has no vision\.video_n_query\)/,
  );
  assert.equal(unsupported.stdout, "");
  // Without ffmpeg on the PATH, a video file says how to install it (the tools are looked up on PATH only).
  writeFileSync(
    join(dir, "clip.mp4"),
    Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from("ftypmp42"), Buffer.alloc(64)]),
  );
  const noFfmpeg = emu2(["chat", ...fast, "-p", "?", "--video", join(dir, "clip.mp4")], {
    env: { PATH: mkdtempSync(join(tmpdir(), "emu2-nopath-")) },
  });
  assert.equal(noFfmpeg.status, 1);
  assert.ok(oneLine(noFfmpeg.stderr), noFfmpeg.stderr);
  assert.match(
    noFfmpeg.stderr,
    /clip\.mp4: reading \.mp4 files needs ffprobe, which is not installed: install ffmpeg to read video files \(Debian\/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg\)/,
  );
  assert.equal(noFfmpeg.stdout, "");
});

test("emu2 caption --video captions videos beside images; a bad one is reported and the rest are written", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-videocap-"));
  const out = join(dir, "captions.jsonl");
  const r = emu2(["caption", ...fast, "fixtures/images/blocks.png", "--video", GIF, "--video", "README.md", "-o", out]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /README\.md: not a video in a supported format/);
  const lines = readFileSync(out, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => l.image),
    [resolve("fixtures/images/blocks.png"), resolve(GIF)],
  );
  // Run again: both are done (resumed by identity), nothing is captioned twice.
  const again = emu2(["caption", ...fast, "fixtures/images/blocks.png", "--video", GIF, "-o", out]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readFileSync(out, "utf8").trim().split("\n").length, 2);
  assert.ok(lines.every((l) => typeof l.caption === "string" && l.caption.length > 0));
});

test("interactive: /video attaches a video to the next message", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-pty-video-"));
  const saved = join(dir, "talk.yaml");
  const steps = [
    { expect: "> " },
    { send: "/video fixtures/videos/nothing-here\r" },
    { expect: "no such file or folder" },
    { send: `/video ${GIF}\r` },
    { expect: "will go with your next message" },
    { send: "What happened?\r" },
    { expect: "> " },
    { send: `/save ${saved}\r` },
    { expect: "saved 2 messages" },
    { send: "/exit\r" },
  ];
  const r = spawnSync(
    "/usr/bin/python3",
    [
      "test/helpers/pty_driver.py",
      JSON.stringify(steps),
      "--",
      process.execPath,
      BIN,
      "chat",
      ...fast,
      "--frames",
      "4",
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  const result = JSON.parse(r.stdout);
  assert.equal(result.missing, null, result.transcript);
  assert.equal(result.exit_code, 0, result.transcript);
  assert.ok(existsSync(saved));
  assert.match(readFileSync(saved, "utf8"), /- user:\n {6}- video: .*red-square-right\.gif\n {6}- What happened\?/);
  // The answer in the terminal is the one-shot answer to the same question.
  const once = emu2(["chat", ...fast, "--frames", "4", "-f", saved]);
  assert.equal(once.status, 0, once.stderr);
  assert.ok(result.transcript.includes(once.stdout.trim()), result.transcript);
});
