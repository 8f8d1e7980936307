import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

test("emu2 info validates the embedded packages (text and --json)", () => {
  const toy = emu2(["info", packageDir("emu2-toy")]);
  assert.equal(toy.status, 0, toy.stderr);
  assert.match(toy.stdout, /^emu2-toy \(emu2-chat, float16\)/);
  assert.match(toy.stdout, /valid +yes/);
  assert.match(toy.stdout, /generation +greedy, max 16 new tokens/);
  assert.match(toy.stdout, /decoder +64x64 images, Euler 25 steps, guidance 3/);
  const r = emu2(["info", packageDir("emu2-tiny")]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^emu2-tiny \(emu2-gen, float32\)/);
  assert.match(r.stdout, /valid +yes/);
  assert.match(r.stdout, /decoder +128x128 images, Euler 50 steps/);
  const j = JSON.parse(emu2(["info", packageDir("emu2-chat-tiny"), "--json"]).stdout);
  assert.equal(j.valid, true);
  assert.equal(j.manifest.vision.n_query, 256);
  assert.equal(j.manifest.visual_decoder, undefined);
});

test("emu2 info shows which graphs of a quantized package are MatMulNBits, and their bytes", () => {
  const r = emu2(["info", "fixtures/models/emu2-chat-tiny-int4"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\n {4}decoder +decoder\.onnx +[\d.]+ KB +int4\/16 asym searched, v_proj down_proj int8\n/);
  assert.match(r.stdout, /\n {4}lm_head +lm_head\.onnx +[\d.]+ MB +int8\/16 asym searched\n/);
  assert.match(r.stdout, /\n {4}visual_encoder +visual_encoder\.onnx +[\d.]+ KB +int8\/16 asym searched\n/);
  assert.match(r.stdout, /\n {4}embed_tokens +embed_tokens\.onnx +[\d.]+ MB\n/);
  // Its int8 layers (v_proj, down_proj, the heads) are at accuracy level 0: the CPU's slow path is named.
  assert.match(r.stdout, /\n {2}note +int8 weights at MatMulNBits accuracy level 0 .* --accuracy-level 4\n/);
  assert.doesNotMatch(emu2(["info", packageDir("emu2-chat-tiny")]).stdout, /accuracy level/);
  const j = JSON.parse(emu2(["info", "fixtures/models/emu2-chat-tiny-int8", "--json"]).stdout);
  assert.deepEqual(j.manifest.quantization.decoder, {
    method: "matmul_nbits",
    bits: 8,
    block_size: 32,
    symmetric: false,
    accuracy_level: 0,
    scale_search: false,
    int8_layers: [],
  });
  assert.ok(j.files.find((f: { role: string; bytes: number }) => f.role === "lm_head").bytes < 1.3e6);
});

test("--device-map places the parts of a split decoder; a part or graph that does not exist is one line", () => {
  const args = ["chat", "-q", "--greedy", "-n", "4", "-p", "What is it?", "--image", "fixtures/images/blocks.png"];
  const whole = emu2([...args, "-m", "fixtures/models/emu2-chat-tiny"]);
  const split = emu2([...args, "-m", "fixtures/models/emu2-chat-tiny-split", "--device-map", "part0=cpu,part1=cpu"]);
  assert.equal(split.status, 0, split.stderr);
  assert.equal(split.stdout, whole.stdout);
  const cases: [string, string, RegExp][] = [
    [
      "emu2-chat-tiny-split",
      "part0=cpu,part2=cpu",
      /^emu2: --device-map part2: the package has 2 decoder parts \(part0, part1\) \(see emu2 chat --help\)$/,
    ],
    ["emu2-chat-tiny", "part0=cpu", /^emu2: --device-map part0: this package's decoder is not split/],
    ["emu2-chat-tiny-split", "part0=gpu", /^emu2: --device-map: expected graph=device entries/],
    [
      "emu2-chat-tiny-split",
      "part0=cpu,lm_heads=cpu",
      /^emu2: --device-map lm_heads: no such graph \(expected part0, part1, \.\.\. or one of visual_encoder, embed_tokens, project_up, lm_head, project_down\)/,
    ],
  ];
  for (const [pkg, map, pattern] of cases) {
    const r = emu2([...args, "-m", `fixtures/models/${pkg}`, "--device-map", map]);
    assert.equal(r.status, 2, map);
    assert.ok(oneLine(r.stderr), r.stderr);
    assert.match(r.stderr.trim(), pattern);
  }
});

test("emu2 info on a package with a bad field exits 1 with one line naming file and field", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-badpkg-"));
  cpSync(packageDir("emu2-chat-tiny"), dir, { recursive: true });
  const manifest = join(dir, "manifest.yaml");
  writeFileSync(manifest, readFileSync(manifest, "utf8").replace("hidden_size: 32", "hidden_size: -32"));
  const r = emu2(["info", dir]);
  assert.equal(r.status, 1);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /manifest\.yaml: field llm\.hidden_size: /);
  assert.equal(r.stdout, "");
});

test("emu2 prompt shows text, ids and images; --json for scripts; stdin YAML", () => {
  const r = emu2([
    "prompt",
    "-m",
    packageDir("emu2-tiny"),
    "-p",
    "Describe <image> please",
    "--image",
    "fixtures/images/blocks.png",
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.text, "Describe [<IMG_PLH>] please");
  assert.equal(j.ids[0], 1);
  assert.equal(j.ids.filter((id: number) => id === 32003).length, 64);
  assert.equal(j.images.length, 1);
  const chat = emu2(["prompt", "-m", resolve(packageDir("emu2-chat-tiny")), "-f", "-"], {
    input: readFileSync("fixtures/prompts/chat.yaml", "utf8"),
    cwd: "fixtures/prompts",
  });
  assert.equal(chat.status, 0, chat.stderr);
  assert.match(chat.stdout, /template  chat \(emu2-chat-tiny\)/);
  assert.match(
    chat.stdout,
    /\[ASSISTANT\]: There are four blocks\.<\/s>\[USER\]: Which one is the highest\? \[ASSISTANT\]:/,
  );
});

test("the embedded package is announced on stderr, never on stdout", () => {
  const r = emu2(["prompt", "-p", "hi", "--json"], { env: { EMU2_MODEL: "" } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /using the embedded package emu2-toy/);
  JSON.parse(r.stdout);
});

test("usage errors exit 2 with one line; other errors exit 1", () => {
  const unknown = emu2(["info", "--bogus"]);
  assert.equal(unknown.status, 2);
  assert.ok(oneLine(unknown.stderr), unknown.stderr);
  assert.match(unknown.stderr, /unknown option '--bogus'/);
  const mismatch = emu2([
    "prompt",
    "-m",
    packageDir("emu2-tiny"),
    "-p",
    "<image> and <image>",
    "--image",
    "fixtures/images/blocks.png",
  ]);
  assert.equal(mismatch.status, 1);
  assert.match(mismatch.stderr, /the prompt has 2 image placeholders but 1 image was given with --image/);
  const malformed = emu2(["prompt", "-m", packageDir("emu2-tiny"), "-f", "-"], { input: "prompt:\n  - image: [x\n" });
  assert.equal(malformed.status, 1);
  assert.ok(oneLine(malformed.stderr), malformed.stderr);
  assert.match(malformed.stderr, /<stdin>: YAML error at line \d+, column \d+/);
  const missing = emu2(["prompt", "-m", packageDir("emu2-tiny"), "-f", "nope.yaml"]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^emu2: nope\.yaml: no such file\n$/);
});

test("emu2 info checks each graph without loading it: a truncated graph is reported by file, valid no, exit 1", () => {
  const dir = join(mkdtempSync(join(tmpdir(), "emu2-badgraph-")), "pkg");
  cpSync("fixtures/models/emu2-chat-tiny", dir, { recursive: true });
  truncateSync(join(dir, "visual_encoder.onnx"), 4096);
  symlinkSync("tokenizer.json", join(dir, "lm_head-link.onnx"));
  const manifest = join(dir, "manifest.yaml");
  writeFileSync(
    manifest,
    readFileSync(manifest, "utf8").replace("lm_head_file: lm_head.onnx", "lm_head_file: lm_head-link.onnx"),
  );
  const r = emu2(["info", dir]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /valid +no: 2 problems/);
  assert.deepEqual(
    r.stderr
      .trimEnd()
      .split("\n")
      .map((l) => l.replace(/:.*/, "")),
    [`emu2`, `emu2`],
  );
  assert.match(
    r.stderr,
    /visual_encoder\.onnx: not a readable ONNX model: the file ends in the middle of a field \(truncated\?\)\n/,
  );
  assert.match(r.stderr, /lm_head-link\.onnx: not a readable ONNX model/);
  const j = JSON.parse(emu2(["info", dir, "--json"]).stdout);
  assert.equal(j.valid, false);
  assert.deepEqual(
    j.problems.map((p: { file: string }) => p.file),
    ["visual_encoder.onnx", "lm_head-link.onnx"],
  );
});
