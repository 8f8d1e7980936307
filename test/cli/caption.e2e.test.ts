import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const tiny = resolve(packageDir("emu2-tiny"));
const fast = ["-m", tiny, "-q", "--greedy", "-n", "4"];

function workdir(): string {
  const dir = mkdtempSync(join(tmpdir(), "emu2-caption-e2e-"));
  for (const name of ["landscape.png", "night.jpg", "blocks.png"])
    copyFileSync(join("fixtures/images", name), join(dir, name));
  return dir;
}

test("caption a folder: one line per image, in order, nothing else on stdout", () => {
  const dir = workdir();
  const r = emu2(["caption", dir, ...fast, "--format", "tsv"]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  assert.deepEqual(
    lines.map((l) => l.split("\t")[0]),
    ["blocks.png", "landscape.png", "night.jpg"].map((n) => join(dir, n)),
  );
  assert.ok(lines.every((l) => l.split("\t")[1].length > 0));
  assert.equal(r.stderr, "");
});

test("in a pipeline: paths on stdin, JSONL out, read by the next command", () => {
  const dir = workdir();
  const script = `ls ${dir}/*.png | ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} caption - ${fast.join(" ")} --format jsonl | ${JSON.stringify(process.execPath)} -e "let n=0;require('readline').createInterface({input:process.stdin}).on('line',l=>{JSON.parse(l).caption;n++}).on('close',()=>console.log(n))"`;
  const r = spawnSync("bash", ["-c", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "2");
});

test("-o resumes: finished images are skipped and the file keeps what it had", () => {
  const dir = workdir();
  const out = join(dir, "captions.jsonl");
  const first = emu2(["caption", join(dir, "landscape.png"), ...fast, "-o", out]);
  assert.equal(first.status, 0, first.stderr);
  const before = readFileSync(out, "utf8");
  const second = emu2(["caption", dir, "-m", tiny, "--greedy", "-n", "4", "-o", out]);
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stderr, /resuming .*captions\.jsonl: 1 of 3 images already done/);
  const after = readFileSync(out, "utf8");
  assert.ok(after.startsWith(before));
  const images = after
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l).image);
  assert.deepEqual(images.sort(), ["blocks.png", "landscape.png", "night.jpg"].map((n) => join(dir, n)).sort());
});

test("an unreadable image is reported, skipped, and the exit code says so; the others are captioned", () => {
  const dir = workdir();
  writeFileSync(join(dir, "broken.png"), "this is not a png");
  const r = emu2(["caption", dir, ...fast, "--format", "jsonl"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /broken\.png: /);
  assert.match(r.stderr, /1 of 4 images could not be captioned/);
  assert.equal(r.stdout.trimEnd().split("\n").length, 3);
});

test("bad inputs: missing file, empty folder, bad format flag", () => {
  const missing = emu2(["caption", "nope.png", ...fast]);
  assert.equal(missing.status, 1);
  assert.ok(oneLine(missing.stderr));
  assert.match(missing.stderr, /nope\.png: no such file or folder/);
  const empty = mkdtempSync(join(tmpdir(), "emu2-empty-"));
  mkdirSync(join(empty, "sub"));
  const none = emu2(["caption", empty, ...fast]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /the folder has no images/);
  const format = emu2(["caption", "fixtures/images", ...fast, "--format", "xml"]);
  assert.equal(format.status, 2);
  assert.match(format.stderr, /--format: expected text, tsv or jsonl/);
});

test("few-shot captioning with --demos", () => {
  const dir = workdir();
  writeFileSync(
    join(dir, "demos.yaml"),
    "- image: landscape.png\n  caption: a sunny hill\n- image: night.jpg\n  caption: a red peak at night\n",
  );
  const r = emu2([
    "caption",
    join(dir, "blocks.png"),
    ...fast,
    "--demos",
    join(dir, "demos.yaml"),
    "--format",
    "jsonl",
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).image, join(dir, "blocks.png"));
});
