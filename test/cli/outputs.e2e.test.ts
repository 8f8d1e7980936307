// Output paths are checked before any model work, images are not replaced by accident, stdout carries exactly one
// thing, and a closed stdout ends every command quietly.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const tiny = resolve(packageDir("emu2-tiny"));
const chat = resolve(packageDir("emu2-chat-tiny"));
// A package that does not exist: a run that got as far as opening it would fail on it instead of on the output.
const noPackage = ["-m", "/nonexistent/emu2-package", "-q"];
const scratch = () => mkdtempSync(join(tmpdir(), "emu2-outputs-"));

test("bad output paths stop generate and caption with one line naming the path, before the package is even opened", () => {
  const dir = scratch();
  writeFileSync(join(dir, "a-file"), "");
  mkdirSync(join(dir, "a-folder"));
  const cases: [string, RegExp][] = [
    [join(dir, "missing", "x.png"), /missing\/x\.png: the folder .*missing does not exist/],
    [join(dir, "a-file", "x.png"), /a-file\/x\.png: .*a-file is a file, not a folder/],
    [join(dir, "a-folder"), /expected a \.png file name/],
  ];
  for (const [path, message] of cases) {
    const r = emu2(["generate", "a red car", ...noPackage, "-o", path]);
    assert.notEqual(r.status, 0);
    assert.ok(oneLine(r.stderr), r.stderr);
    assert.match(r.stderr, message);
  }
  const folderPng = join(dir, "folder.png");
  mkdirSync(folderPng);
  const r = emu2(["generate", "a red car", ...noPackage, "-o", folderPng]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /folder\.png: is a folder; give a file name/);
  for (const [path, message] of [
    [join(dir, "missing", "c.jsonl"), /does not exist/],
    [join(dir, "a-folder"), /is a folder/],
    [join(dir, "a-file", "c.tsv"), /is a file, not a folder/],
  ] as const) {
    const c = emu2(["caption", "fixtures/images", ...noPackage, "-o", path]);
    assert.equal(c.status, 1);
    assert.ok(oneLine(c.stderr), c.stderr);
    assert.match(c.stderr, message);
  }
  assert.equal(existsSync(join(dir, "missing")), false);
});

test(
  "no write permission is reported before any work",
  { skip: process.getuid?.() === 0 ? "root may write anywhere" : false },
  () => {
    const dir = scratch();
    chmodSync(dir, 0o555);
    const r = emu2(["generate", "a red car", ...noPackage, "-o", join(dir, "x.png")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /x\.png: no permission to write/);
  },
);

test("an existing image is replaced only with --overwrite; without -o the first free emu2-N.png is used", () => {
  const dir = scratch();
  const target = join(dir, "car.png");
  writeFileSync(target, "precious");
  const refused = emu2(["generate", "a red car", ...noPackage, "-o", target]);
  assert.equal(refused.status, 1);
  assert.ok(oneLine(refused.stderr), refused.stderr);
  assert.match(refused.stderr, /car\.png: the file exists; pass --overwrite/);
  assert.equal(readFileSync(target, "utf8"), "precious");
  const replaced = emu2(["generate", "a red car", "-m", tiny, "-q", "--steps", "2", "-o", target, "--overwrite"]);
  assert.equal(replaced.status, 0, replaced.stderr);
  assert.equal(readFileSync(target).subarray(1, 4).toString(), "PNG");
  writeFileSync(join(dir, "emu2-0.png"), "precious");
  const numbered = emu2(["generate", "a red car", "-m", tiny, "-q", "--steps", "2", "--num-images", "2"], { cwd: dir });
  assert.equal(numbered.status, 0, numbered.stderr);
  assert.deepEqual(numbered.stdout.trim().split("\n"), ["emu2-1.png", "emu2-2.png"]);
  assert.equal(readFileSync(join(dir, "emu2-0.png"), "utf8"), "precious");
  const help = emu2(["generate", "--help"]);
  assert.match(help.stdout, /--overwrite/);
  assert.match(
    help.stdout.replace(/\s+/g, " "),
    /Default: emu2-N\.png with the first free numbers N, never replacing a file/,
  );
});

test("-o - carries exactly one thing: with --json it is refused; to a terminal it is refused", () => {
  const json = emu2(["generate", "a red car", ...noPackage, "-o", "-", "--json"]);
  assert.equal(json.status, 2);
  assert.ok(oneLine(json.stderr), json.stderr);
  assert.match(json.stderr, /--json .* -o -/);
  assert.equal(json.stdout, "");
  const steps = [{ expect: "emu2" }];
  const r = spawnSync(
    "/usr/bin/python3",
    [
      "test/helpers/pty_driver.py",
      JSON.stringify(steps),
      "--",
      process.execPath,
      BIN,
      "generate",
      "a red car",
      ...noPackage,
      "-o",
      "-",
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  const result = JSON.parse(r.stdout);
  assert.equal(result.exit_code, 2, result.transcript);
  assert.match(result.transcript, /-o -: standard output is a terminal/);
});

/** Runs emu2 with its stdout read end closed at once: every write to stdout meets a closed pipe. */
function withClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("close", (code) => done({ code, stderr }));
  });
}

test("a closed stdout (| head -n 1) ends every command quietly with 141", async () => {
  const commands = [
    ["caption", "fixtures/images", "-m", tiny, "-q", "--greedy", "-n", "2"],
    ["chat", "-m", chat, "-q", "--greedy", "-n", "2", "-p", "hi"],
    ["generate", "a red car", "-m", tiny, "-q", "--steps", "1", "-o", "-"],
    ["info", tiny],
    ["prompt", "-m", tiny, "-q", "-p", "hi"],
    ["--help"],
  ];
  for (const args of commands) {
    const r = await withClosedStdout(args);
    assert.equal(r.stderr, "", `${args[0]}: ${r.stderr}`);
    assert.equal(r.code, 141, args[0]);
  }
  // The same as a user meets it, through a shell pipeline.
  const shell = spawnSync(
    "bash",
    [
      "-c",
      `ls fixtures/images/*.png | ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} caption - -m ${tiny} -q --greedy -n 2 | head -c 0; echo "status \${PIPESTATUS[1]}"`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(shell.stderr, "");
  assert.match(shell.stdout, /^status (0|141)\n$/);
});
