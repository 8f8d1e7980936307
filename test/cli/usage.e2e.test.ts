// What a user meets when a flag, a variable or a REPL command is wrong: one line that says where to look.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const tiny = resolve(packageDir("emu2-tiny"));
const chat = resolve(packageDir("emu2-chat-tiny"));

test("usage errors point to the subcommand's help, from commander and from emu2's own checks", () => {
  const unknown = emu2(["caption", "fixtures/images", "--bogus"]);
  assert.equal(unknown.status, 2);
  assert.ok(oneLine(unknown.stderr), unknown.stderr);
  assert.match(unknown.stderr, /unknown option '--bogus' \(see emu2 caption --help\)\n$/);
  const own = emu2(["generate", "a car", "-m", tiny, "--num-images", "0"]);
  assert.equal(own.status, 2);
  assert.match(own.stderr, /^emu2: --num-images: expected a whole number > 0, got "0" \(see emu2 generate --help\)\n$/);
  const greedy = emu2(["chat", "-m", chat, "-p", "hi", "--greedy", "--beams", "4"]);
  assert.equal(greedy.status, 2);
  assert.match(greedy.stderr, /--greedy means one beam.*\(see emu2 chat --help\)/);
});

test("a wrong $EMU2_MODEL is named as such", () => {
  const r = emu2(["prompt", "-p", "hi"], { env: { EMU2_MODEL: "/nonexistent/package" } });
  assert.equal(r.status, 1);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(
    r.stderr,
    /^emu2: \$EMU2_MODEL: \/nonexistent\/package: no such model package folder \(fix or unset EMU2_MODEL, or pass -m\)\n$/,
  );
});

test("generate --seed: the largest seed works, one past the limit is refused naming it", () => {
  const ok = emu2(["generate", "a car", "-m", tiny, "-q", "--steps", "1", "--seed", "9007199254740991", "-o", "-"]);
  assert.equal(ok.status, 0, ok.stderr);
  const over = emu2([
    "generate",
    "a car",
    "-m",
    tiny,
    "-q",
    "--num-images",
    "2",
    "--seed",
    "9007199254740991",
    "-o",
    "/tmp/x-{i}.png",
  ]);
  assert.equal(over.status, 2);
  assert.match(
    over.stderr,
    /--seed: expected a whole number from 0 to 9007199254740990 \(2\^53-1 less the 1 extra images\)/,
  );
});

function pty(steps: object[], args: string[]): { transcript: string; exit_code: number; missing: string | null } {
  const r = spawnSync(
    "/usr/bin/python3",
    ["test/helpers/pty_driver.py", JSON.stringify(steps), "--", process.execPath, BIN, ...args],
    { encoding: "utf8", timeout: 120_000 },
  );
  return JSON.parse(r.stdout);
}

test("REPL: /image checks the file at once; /help lists the command table; chat -f conv.yaml -i says what it loaded", () => {
  const bad = pty(
    [
      { expect: "> " },
      { send: "/image fixtures/prompts/chat.yaml\r" },
      { expect: "> " },
      { send: "/help\r" },
      { expect: "/exit" },
      { send: "/bogus\r" },
      { expect: "unknown command" },
      { send: "/quit\r" },
    ],
    ["chat", "-m", chat, "-q", "--greedy", "-n", "2"],
  );
  assert.equal(bad.missing, null, bad.transcript);
  assert.match(bad.transcript, /\/image: fixtures\/prompts\/chat\.yaml: not an image/);
  assert.doesNotMatch(bad.transcript, /will go with your next message/);
  // /help is written from the command table: every command with its usage.
  for (const usage of ["/image <path>", "/reset", "/save <file>", "/help", "/exit"])
    assert.ok(bad.transcript.includes(usage), usage);
  assert.match(bad.transcript, /unknown command \/bogus; \/help lists them/);
  assert.equal(bad.exit_code, 0, bad.transcript);
  const loaded = pty(
    [{ expect: "> " }, { send: "/exit\r" }],
    ["chat", "-m", chat, "-q", "--greedy", "-n", "2", "-f", "fixtures/prompts/chat.yaml", "-i"],
  );
  assert.equal(loaded.missing, null, loaded.transcript);
  assert.equal(loaded.exit_code, 0, loaded.transcript);
  assert.match(loaded.transcript, /loaded \d+ messages \(\d+ turns?\) from fixtures\/prompts\/chat\.yaml/);
});
