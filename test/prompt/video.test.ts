// Video parts of prompts: -p text with --video, the YAML video: part, rendering ([VIDEO] + one placeholder per
// sampled frame, no end token), saving, and encoding (each frame [IMG] + video_n_query x [gIMG] + [/IMG]).
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { ModelPackage } from "../../src/model/package.js";
import { encodePrompt } from "../../src/prompt/encode.js";
import { parsePromptYaml, promptFromFile, sequenceFromText } from "../../src/prompt/parse.js";
import { renderPrompt, templateTokens, VIDEO_PLACEHOLDER } from "../../src/prompt/render.js";
import { conversationToYaml } from "../../src/prompt/serialize.js";
import type { PromptInput } from "../../src/prompt/types.js";
import { Emu2Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { PackageError, PromptError } from "../../src/util/errors.js";
import { packageDir } from "../helpers/fixtures.js";

const PLH = "[<IMG_PLH>]";
const VID = VIDEO_PLACEHOLDER;
const chat = ModelPackage.open(packageDir("emu2-chat-tiny"));
const tokenizer = Emu2Tokenizer.fromFile(chat.path("tokenizer.json"), chat.manifest.tokenizer);
const threeFrames = () => 3;

test("-p with --video: videos fill <video> markers, or come first (after images) without one", () => {
  assert.deepEqual(sequenceFromText("What happened?", [], "/x", ["clip.gif"]), [
    { kind: "video", video: { path: "/x/clip.gif" } },
    { kind: "text", text: "What happened?" },
  ]);
  assert.deepEqual(sequenceFromText("Compare <video> with <image>.", ["a.png"], "/x", ["clip.gif"]), [
    { kind: "text", text: "Compare " },
    { kind: "video", video: { path: "/x/clip.gif" } },
    { kind: "text", text: " with " },
    { kind: "image", image: { path: "/x/a.png" } },
    { kind: "text", text: "." },
  ]);
  assert.deepEqual(
    sequenceFromText("See <image>", ["a.png"], "/x", ["v"]).map((p) => p.kind),
    ["video", "text", "image"],
  );
  assert.throws(
    () => sequenceFromText("<video> and <video>", [], "/x", ["v"]),
    /the prompt has 2 video placeholders but 1 video was given with --video/,
  );
});

test("YAML video: parts resolve relative to the file and are saved back the same way", () => {
  const input = promptFromFile("fixtures/prompts/video.yaml");
  assert.equal(input.kind, "conversation");
  const parts = input.kind === "conversation" ? input.conversation.messages[0].parts : [];
  assert.deepEqual(parts[0], { kind: "video", video: { path: resolve("fixtures/videos/red-square-right.gif") } });
  const yaml = conversationToYaml(
    input.kind === "conversation" ? input.conversation : { messages: [] },
    "fixtures/prompts/saved.yaml",
  );
  assert.match(yaml, /- video: \.\.\/videos\/red-square-right\.gif/);
  assert.deepEqual(parsePromptYaml(yaml, "saved.yaml", resolve("fixtures/prompts")), input);
  assert.throws(
    () => parsePromptYaml("prompt:\n  - video: ''\n", "p.yaml", "/x"),
    /p\.yaml: line 2, column 12: prompt\[0\]\.video: expected a video path/,
  );
  assert.throws(
    () => promptFromFile("fixtures/prompts/video.yaml", [], ["x.gif"]),
    /--video cannot be combined with a YAML prompt/,
  );
});

test("rendering: [VIDEO], then one placeholder per sampled frame; nothing marks the end (as the official code)", () => {
  const input: PromptInput = {
    kind: "sequence",
    parts: sequenceFromText("<video>What happened?<image>", ["a.png"], "/x", ["v.gif"]),
  };
  const r = renderPrompt(input, "chat", { placeholder: PLH, systemMessage: "S", videoFrames: threeFrames });
  assert.equal(r.text, `S [USER]: [VIDEO]${VID}${VID}${VID}What happened?${PLH} [ASSISTANT]:`);
  assert.deepEqual(r.videos, [{ video: { path: "/x/v.gif" }, frames: 3 }]);
  assert.equal(r.images.length, 1);
  assert.throws(
    () => renderPrompt(input, "chat", { placeholder: PLH, systemMessage: "S" }),
    /must be sampled before the prompt is rendered/,
  );
});

test("encoding: each frame is [IMG] + video_n_query x [gIMG] + [/IMG] after [VIDEO]; images keep n_query <image>", () => {
  const t = chat.manifest.tokenizer.special_tokens;
  const input: PromptInput = {
    kind: "sequence",
    parts: sequenceFromText("<video>then<image>", ["a.png"], "/x", ["v.gif"]),
  };
  const e = encodePrompt(
    renderPrompt(input, "chat", templateTokens(chat.manifest, { videoFrames: threeFrames })),
    tokenizer,
    chat.manifest,
  );
  assert.equal(e.videoNQuery, 64);
  const at = e.ids.indexOf(t["[VIDEO]"]);
  for (let f = 0; f < 3; f++) {
    const start = at + 1 + f * 66;
    assert.equal(e.ids[start], t["[IMG]"]);
    assert.deepEqual(e.ids.slice(start + 1, start + 65), Array(64).fill(t["[gIMG]"]));
    assert.equal(e.ids[start + 65], t["[/IMG]"]);
  }
  assert.equal(e.ids.filter((id) => id === t["<image>"]).length, 256);
  assert.equal(e.ids.filter((id) => id === t["[gIMG]"]).length, 3 * 64);
  assert.ok(!e.ids.includes(t["[/gIMG]"]));
  // [gIMG] typed by hand would be spliced with features that do not exist.
  const typed = renderPrompt(
    { kind: "sequence", parts: [{ kind: "text", text: "look [gIMG] here" }] },
    "chat",
    templateTokens(chat.manifest),
  );
  assert.throws(
    () => encodePrompt(typed, tokenizer, chat.manifest),
    (e: unknown) => e instanceof PromptError && /contains 1 stray \[gIMG\] token/.test(e.message),
  );
});

test("a package without video support says so in one line", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-novideo-"));
  cpSync(packageDir("emu2-chat-tiny"), dir, { recursive: true });
  writeFileSync(
    join(dir, "manifest.yaml"),
    readFileSync(join(dir, "manifest.yaml"), "utf8").replace(/\n  video_n_query: 64/, ""),
  );
  const pkg = ModelPackage.open(dir);
  assert.equal(pkg.manifest.vision.video_n_query, undefined);
  const input: PromptInput = { kind: "sequence", parts: sequenceFromText("What happened?", [], "/x", ["v.gif"]) };
  const rendered = renderPrompt(input, "chat", templateTokens(pkg.manifest, { videoFrames: threeFrames }));
  assert.throws(
    () => encodePrompt(rendered, tokenizer, pkg.manifest),
    (e: unknown) =>
      e instanceof PackageError &&
      e.message ===
        "package emu2-chat-tiny has no video support (its manifest has no vision.video_n_query): use an Emu2 or Emu2-Chat package",
  );
  // Images still work on it.
  encodePrompt(
    renderPrompt(
      { kind: "sequence", parts: sequenceFromText("x", ["a.png"], "/x") },
      "chat",
      templateTokens(pkg.manifest),
    ),
    tokenizer,
    pkg.manifest,
  );
});
