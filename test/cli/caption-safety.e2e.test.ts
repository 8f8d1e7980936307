// Nothing lost: resume by identity, failures never recorded as done, one writer per output, a broken package stops
// the run before it touches the output, and an interrupted run says exactly what it wrote.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  constants,
  copyFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const tiny = resolve(packageDir("emu2-tiny"));
const fast = ["-q", "--greedy", "-n", "4"];

function workdir(names = ["landscape.png", "night.jpg", "blocks.png"]): string {
  const dir = mkdtempSync(join(tmpdir(), "emu2-caption-safety-"));
  for (const name of names) copyFileSync(join("fixtures/images", name), join(dir, name));
  return dir;
}

/** Waits until `ready()` holds; fails after a minute instead of hanging the suite. */
async function waitFor(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const linesIn = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").length - 1 : 0);

const imagesIn = (file: string) =>
  readFileSync(file, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l).image as string);

test("resume matches images by real path: a rerun from inside the folder, or through a symlink, redoes nothing", () => {
  const dir = workdir();
  const out = join(dir, "captions.jsonl");
  const first = emu2(["caption", dir, "-m", tiny, ...fast, "-o", out]);
  assert.equal(first.status, 0, first.stderr);
  const before = readFileSync(out, "utf8");
  const inside = emu2(["caption", ".", "-m", tiny, "--greedy", "-n", "4", "-o", "captions.jsonl"], { cwd: dir });
  assert.equal(inside.status, 0, inside.stderr);
  assert.match(inside.stderr, /resuming captions\.jsonl: 3 of 3 images already done/);
  const link = join(mkdtempSync(join(tmpdir(), "emu2-link-")), "imgs");
  symlinkSync(dir, link);
  const linked = emu2(["caption", link, "-m", tiny, ...fast, "-o", join(link, "captions.jsonl")]);
  assert.equal(linked.status, 0, linked.stderr);
  assert.equal(readFileSync(out, "utf8"), before);
});

test("TSV: a failed image is not recorded; a rerun after the folder changed, named from inside it, does the new and the failed images only", () => {
  const dir = workdir(["landscape.png", "night.jpg"]);
  writeFileSync(join(dir, "broken.png"), "not a png");
  const out = join(dir, "captions.tsv");
  const first = emu2(["caption", dir, "-m", tiny, ...fast, "-o", out]);
  assert.equal(first.status, 1);
  assert.match(first.stderr, /broken\.png: /);
  assert.deepEqual(
    readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => l.split("\t")[0]),
    [join(dir, "landscape.png"), join(dir, "night.jpg")],
  );
  // The broken image is repaired and an image that sorts first is added.
  copyFileSync("fixtures/images/blocks.png", join(dir, "broken.png"));
  copyFileSync("fixtures/images/blocks.png", join(dir, "a-first.png"));
  // ...and the rerun names the folder differently (from inside it).
  const second = emu2(["caption", ".", "-m", tiny, "--greedy", "-n", "4", "-o", "captions.tsv"], { cwd: dir });
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stderr, /2 of 4 images already done/);
  const rows = readFileSync(out, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => l.split("\t")[0]);
  assert.deepEqual(
    rows,
    ["landscape.png", "night.jpg", "a-first.png", "broken.png"].map((n) => join(dir, n)),
  );
});

test("text: an existing output is not resumed by position; the run stops before any model work and points to JSONL/TSV", () => {
  const dir = workdir();
  writeFileSync(join(dir, "broken.png"), "not a png");
  const out = join(dir, "captions.txt");
  const first = emu2(["caption", dir, "-m", tiny, ...fast, "-o", out]);
  assert.equal(first.status, 1);
  const written = readFileSync(out, "utf8");
  assert.equal(written.split("\n").length - 1, 4);
  copyFileSync("fixtures/images/blocks.png", join(dir, "broken.png"));
  const again = emu2(["caption", dir, "-m", tiny, ...fast, "-o", out]);
  assert.equal(again.status, 1);
  assert.ok(oneLine(again.stderr), again.stderr);
  assert.match(again.stderr, /captions\.txt: a text output cannot be resumed .*--format jsonl or tsv/);
  assert.equal(readFileSync(out, "utf8"), written);
});

test("two runs on the same output: the second is refused with one line, the first writes every image once", async () => {
  const dir = workdir();
  for (let i = 0; i < 12; i++)
    copyFileSync("fixtures/images/blocks.png", join(dir, `copy-${String(i).padStart(2, "0")}.png`));
  // One image is a named pipe: the first run captions the images before it, then waits there (still holding the
  // output) until the test writes the image's bytes, however fast the machine captions.
  const pipe = join(dir, "copy-05.png");
  rmSync(pipe);
  assert.equal(spawnSync("mkfifo", [pipe]).status, 0, "mkfifo");
  const out = join(dir, "captions.jsonl");
  // Named one by one: a folder lists regular files only.
  const images = readdirSync(dir)
    .sort()
    .map((n) => join(dir, n));
  const first = spawn(process.execPath, [BIN, "caption", ...images, "-m", tiny, ...fast, "-b", "1", "-o", out], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let firstErr = "";
  first.stderr.on("data", (chunk) => (firstErr += chunk));
  const exited = new Promise<number | null>((done) => first.on("exit", (code) => done(code)));
  try {
    await waitFor("the first caption", () => linesIn(out) >= 1);
    const second = emu2(["caption", dir, "-m", tiny, ...fast, "-o", out]);
    assert.equal(second.status, 1, second.stderr);
    assert.ok(oneLine(second.stderr), second.stderr);
    assert.match(second.stderr, new RegExp(`captions\\.jsonl is being written by another run \\(pid ${first.pid}\\)`));
  } catch (err) {
    // The first run would wait on the pipe forever.
    first.kill();
    throw err;
  }
  writeFileSync(pipe, readFileSync("fixtures/images/blocks.png"));
  assert.equal(await exited, 0, firstErr);
  const written = imagesIn(out);
  assert.equal(written.length, 15);
  assert.deepEqual([...written].sort(), images);
  assert.equal(existsSync(`${out}.lock`), false);
});

test("a package-level error stops at once: one line, exit 1, the output as it was", () => {
  const dir = workdir();
  const out = join(dir, "captions.jsonl");
  writeFileSync(out, '{"image":"/elsewhere/old.png","caption":"kept"}\n');
  const broken = join(mkdtempSync(join(tmpdir(), "emu2-brokenpkg-")), "pkg");
  cpSync(tiny, broken, { recursive: true });
  truncateSync(join(broken, "visual_encoder.onnx"), 1000);
  const graph = emu2(["caption", dir, "-m", broken, ...fast, "-o", out]);
  assert.equal(graph.status, 1);
  assert.ok(oneLine(graph.stderr), graph.stderr);
  assert.match(graph.stderr, /visual_encoder\.onnx: ONNX Runtime cannot load this graph/);
  assert.equal(readFileSync(out, "utf8"), '{"image":"/elsewhere/old.png","caption":"kept"}\n');
  cpSync(tiny, broken, { recursive: true });
  writeFileSync(join(broken, "tokenizer.json"), "{ not json");
  const tokenizer = emu2(["caption", dir, "-m", broken, ...fast, "-o", join(dir, "new.jsonl")]);
  assert.equal(tokenizer.status, 1);
  assert.ok(oneLine(tokenizer.stderr), tokenizer.stderr);
  assert.match(tokenizer.stderr, /tokenizer\.json: not a readable tokenizer\.json/);
  assert.equal(existsSync(join(dir, "new.jsonl")), false);
});

/**
 * 40 copies of one image, the 11th a named pipe, named one by one (a folder lists regular files only): a run over
 * them captions ten, then waits on the pipe, so a Ctrl-C sent meanwhile lands mid-run however fast the machine is.
 */
function fortyWithPipe(): { dir: string; images: string[]; pipe: string } {
  const dir = workdir([]);
  for (let i = 0; i < 40; i++)
    copyFileSync("fixtures/images/blocks.png", join(dir, `copy-${String(i).padStart(2, "0")}.png`));
  const pipe = join(dir, "copy-10.png");
  rmSync(pipe);
  assert.equal(spawnSync("mkfifo", [pipe]).status, 0, "mkfifo");
  const images = readdirSync(dir)
    .sort()
    .map((n) => join(dir, n));
  return { dir, images, pipe };
}

/**
 * Writes an image into `pipe` if a run is reading it (it then finishes that read and stops), without waiting for a
 * reader: a run interrupted before it reached the pipe never opens it.
 */
function feedPipe(pipe: string): void {
  let fd: number;
  try {
    fd = openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENXIO") return;
    throw err;
  }
  try {
    writeSync(fd, readFileSync("fixtures/images/blocks.png"));
  } finally {
    closeSync(fd);
  }
}

test("Ctrl-C: the message says how many captions were written, and the file holds exactly those", async () => {
  const { dir, images, pipe } = fortyWithPipe();
  const out = join(dir, "captions.jsonl");
  const run = spawn(process.execPath, [BIN, "caption", ...images, "-m", tiny, ...fast, "-b", "1", "-o", out], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  run.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((done) => run.on("exit", (code) => done(code)));
  await waitFor("two captions", () => linesIn(out) >= 2);
  run.kill("SIGINT");
  feedPipe(pipe);
  assert.equal(await exited, 130, stderr);
  const written = imagesIn(out).length;
  assert.ok(written < 40);
  rmSync(pipe);
  copyFileSync("fixtures/images/blocks.png", pipe);
  assert.match(
    stderr,
    new RegExp(
      `^emu2: interrupted: ${written} of 40 captions written to .*captions\\.jsonl \\(run again to resume\\)\\n$`,
    ),
  );
  const resumed = emu2(["caption", dir, "-m", tiny, "--greedy", "-n", "4", "-o", out]);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming .*: ${written} of 40 images already done`));
  assert.equal(new Set(imagesIn(out)).size, 40);
});

test("Ctrl-C on a terminal: the progress bar's last count, the message and the file agree", () => {
  const { dir, images, pipe } = fortyWithPipe();
  const out = join(dir, "captions.jsonl");
  const steps = [
    // The bar shows ten done once the run waits on the pipe (the 11th image).
    { expect: "10/40" },
    { send: "\x03" },
    { fill: pipe, with: "fixtures/images/blocks.png" },
    { expect: "interrupted" },
  ];
  const r = spawnSync(
    "/usr/bin/python3",
    [
      "test/helpers/pty_driver.py",
      JSON.stringify(steps),
      "--",
      process.execPath,
      BIN,
      "caption",
      ...images,
      "-m",
      tiny,
      "--greedy",
      "-n",
      "4",
      "-b",
      "1",
      "-o",
      out,
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  const result = JSON.parse(r.stdout) as { transcript: string; exit_code: number; missing: string | null };
  assert.equal(result.missing, null, result.transcript);
  assert.equal(result.exit_code, 130, result.transcript);
  const written = imagesIn(out).length;
  const counts = [...result.transcript.matchAll(/captioning \[[^\]]*\] (\d+)\/40/g)].map((m) => Number(m[1]));
  assert.equal(counts[counts.length - 1], written, result.transcript);
  assert.match(result.transcript, new RegExp(`interrupted: ${written} of 40 captions written`));
});
