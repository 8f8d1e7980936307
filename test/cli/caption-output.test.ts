import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CaptionSink, formatFromPath, readDone } from "../../src/cli/caption-output.js";
import { expandImageInputs } from "../../src/cli/image-inputs.js";

const dir = () => mkdtempSync(join(tmpdir(), "emu2-caption-"));

test("resume: JSONL and TSV are keyed by image, a half-written last line is dropped", () => {
  const d = dir();
  const jsonl = join(d, "out.jsonl");
  writeFileSync(jsonl, '{"image":"a.png","caption":"x"}\n{"image":"b.png","caption":"y"}\n{"image":"c.p');
  const done = readDone(jsonl, "jsonl");
  assert.deepEqual([...done.images], ["a.png", "b.png"]);
  assert.equal(readFileSync(jsonl, "utf8"), '{"image":"a.png","caption":"x"}\n{"image":"b.png","caption":"y"}\n');
  const tsv = join(d, "out.tsv");
  writeFileSync(tsv, "a.png\tx\nb.png\ty\n");
  assert.deepEqual([...readDone(tsv, "tsv").images], ["a.png", "b.png"]);
  writeFileSync(tsv, "not a tsv line\n");
  assert.throws(() => readDone(tsv, "tsv"), /out\.tsv: line 1 has no tab: cannot resume/);
  assert.equal(readDone(join(d, "missing.jsonl"), "jsonl").images.size, 0);
});

test("text outputs keep line i = image i, failures included", () => {
  const d = dir();
  const file = join(d, "out.txt");
  const sink = new CaptionSink(file, "text");
  sink.write({ image: "a.png", caption: "two\nlines" });
  sink.writeFailure();
  sink.write({ image: "c.png", caption: "z" });
  sink.close();
  assert.equal(readFileSync(file, "utf8"), "two lines\n\nz\n");
  assert.equal(readDone(file, "text").lines, 3);
});

test("the output format follows the file extension", () => {
  assert.equal(formatFromPath("x.jsonl"), "jsonl");
  assert.equal(formatFromPath("x.TSV"), "tsv");
  assert.equal(formatFromPath("x.txt"), undefined);
  assert.equal(formatFromPath("-"), undefined);
});

test("inputs: files, folders (sorted, images only), globs; empty folders and missing files are named", async () => {
  const d = dir();
  for (const name of ["b.png", "a.jpg", "notes.txt"]) writeFileSync(join(d, name), "");
  assert.deepEqual(await expandImageInputs([d]), [join(d, "a.jpg"), join(d, "b.png")]);
  assert.deepEqual(await expandImageInputs([`${d}/*.png`, join(d, "b.png")]), [join(d, "b.png")]);
  assert.deepEqual(await expandImageInputs(["-"], () => "x.png\n\ny.png\n"), ["x.png", "y.png"]);
  const empty = dir();
  await assert.rejects(expandImageInputs([empty]), new RegExp(`${empty}: the folder has no images`));
  await assert.rejects(expandImageInputs([join(d, "nope.png")]), /nope\.png: no such file or folder/);
  await assert.rejects(expandImageInputs([`${d}/*.webp`]), /the pattern matches no image files/);
});
