import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const chat = resolve(packageDir("emu2-chat-tiny"));
const fast = ["-m", chat, "-q", "--greedy", "-n", "6"];

test("one-shot with an image prints the answer; --json for scripts", () => {
  const r = emu2(["chat", ...fast, "--image", "fixtures/images/blocks.png", "-p", "How many blocks?"]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.trim().length > 0);
  assert.equal(r.stdout.trim().split("\n").length, 1);
  const j = JSON.parse(emu2(["chat", ...fast, "-p", "Hello", "--json"]).stdout);
  assert.equal(j.model, "emu2-chat-tiny");
  assert.ok(j.tokens > 0 && j.tokens <= 6);
});

test("the same greedy question twice gives the same answer; a YAML conversation replays", () => {
  const a = emu2(["chat", ...fast, "-f", "fixtures/prompts/chat.yaml"]);
  const b = emu2(["chat", ...fast, "-f", "fixtures/prompts/chat.yaml"]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
});

test("piped stdin is read as one prompt", () => {
  const r = emu2(["chat", ...fast], { input: "What is in a picture?\n" });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.trim().length > 0);
});

test("an image that cannot be read ends in one line and exit 1", () => {
  const r = emu2(["chat", ...fast, "--image", "fixtures/prompts/chat.yaml", "-p", "What is it?"]);
  assert.equal(r.status, 1);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /chat\.yaml: /);
});

test("interactive: typed through a real terminal, with /image, /save and /exit", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-pty-"));
  const saved = join(dir, "talk.yaml");
  const steps = [
    { expect: "> " },
    { send: "/image fixtures/images/blocks.png\r" },
    { expect: "will go with your next message" },
    { send: "How many blocks are there?\r" },
    { expect: "> " },
    { send: "And the colours?\r" },
    { expect: "> " },
    { send: `/save ${saved}\r` },
    { expect: "saved 4 messages" },
    { send: "/exit\r" },
  ];
  const r = spawnSync(
    "/usr/bin/python3",
    ["test/helpers/pty_driver.py", JSON.stringify(steps), "--", process.execPath, BIN, "chat", ...fast],
    { encoding: "utf8", timeout: 120_000 },
  );
  const result = JSON.parse(r.stdout);
  assert.equal(result.missing, null, result.transcript);
  assert.equal(result.exit_code, 0, result.transcript);
  assert.ok(existsSync(saved));
  const yaml = readFileSync(saved, "utf8");
  assert.match(yaml, /- user:\n {6}- image: .*blocks\.png\n {6}- How many blocks are there\?/);
  const replay = emu2(["chat", ...fast, "-f", saved]);
  assert.equal(replay.status, 0, replay.stderr);
});

test("interactive with the package's default beam search: the answer is shown when it is ready", () => {
  const steps = [{ expect: "> " }, { send: "Hello there\r" }, { expect: "> " }, { send: "/exit\r" }];
  const r = spawnSync(
    "/usr/bin/python3",
    [
      "test/helpers/pty_driver.py",
      JSON.stringify(steps),
      "--",
      process.execPath,
      BIN,
      "chat",
      "-m",
      chat,
      "-q",
      "-n",
      "4",
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  const result = JSON.parse(r.stdout);
  assert.equal(result.missing, null, result.transcript);
  assert.equal(result.exit_code, 0, result.transcript);
  const answer = result.transcript
    .split("Hello there")[1]
    .split("> ")[0]
    .replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")
    .trim();
  assert.ok(answer.length > 0, result.transcript);
});

test("interactive: Ctrl-C at the prompt twice leaves with 130", () => {
  const steps = [{ expect: "> " }, { send: "\x03" }, { expect: "Ctrl-C again" }, { send: "\x03" }];
  const r = spawnSync(
    "/usr/bin/python3",
    ["test/helpers/pty_driver.py", JSON.stringify(steps), "--", process.execPath, BIN, "chat", ...fast],
    { encoding: "utf8", timeout: 60_000 },
  );
  const result = JSON.parse(r.stdout);
  assert.equal(result.missing, null, result.transcript);
  assert.equal(result.exit_code, 130, result.transcript);
});

const cudaInstalled = existsSync(
  "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so",
);

test(
  "--device cuda without the CUDA provider libraries: one line saying how to install them; --cpu-fallback runs on the CPU",
  { skip: cudaInstalled && "the CUDA provider libraries are installed here" },
  () => {
    const strict = emu2(["chat", ...fast, "--device", "cuda", "-p", "hi"]);
    assert.equal(strict.status, 1);
    assert.ok(oneLine(strict.stderr), strict.stderr);
    assert.match(strict.stderr, /CUDA is not available to ONNX Runtime .*npm run install-cuda/);
    const fallback = emu2([
      "chat",
      "-m",
      chat,
      "--greedy",
      "-n",
      "2",
      "--device",
      "cuda",
      "--cpu-fallback",
      "-p",
      "hi",
    ]);
    assert.equal(fallback.status, 0, fallback.stderr);
    assert.equal(fallback.stderr.match(/running on the CPU/g)?.length, 1, fallback.stderr);
    assert.ok(fallback.stdout.trim().length > 0);
  },
);
