import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CaptionSink, formatFromPath, imageKey, readDone } from "../../src/cli/caption-output.js";
import { expandImageInputs } from "../../src/cli/image-inputs.js";
import { readDemos } from "../../src/cli/caption.js";

const dir = () => mkdtempSync(join(tmpdir(), "emu2-caption-"));

test("resume: JSONL and TSV are keyed by the image's real path; a half-written last line is not counted", () => {
  const d = dir();
  for (const name of ["a.png", "b.png"]) writeFileSync(join(d, name), "");
  const jsonl = join(d, "out.jsonl");
  // Relative paths in a file are read from the file's folder; a cut-off line is ignored.
  writeFileSync(jsonl, `{"image":"a.png","caption":"x"}\n{"image":"${join(d, "b.png")}","caption":"y"}\n{"image":"c.p`);
  assert.deepEqual(
    [...readDone(jsonl, "jsonl")],
    [join(d, "a.png"), join(d, "b.png")].map((p) => realpathSync(p)),
  );
  const tsv = join(d, "out.tsv");
  writeFileSync(tsv, `${join(d, "a.png")}\tx\n`);
  assert.deepEqual([...readDone(tsv, "tsv")], [realpathSync(join(d, "a.png"))]);
  // The same image through a symlinked folder is the same image.
  const link = join(dir(), "link");
  symlinkSync(d, link);
  assert.ok(readDone(tsv, "tsv").has(imageKey(join(link, "a.png"))));
  writeFileSync(tsv, "not a tsv line\n");
  assert.throws(() => readDone(tsv, "tsv"), /out\.tsv: line 1 has no tab: cannot resume/);
  assert.equal(readDone(join(d, "missing.jsonl"), "jsonl").size, 0);
});

test("an existing text output is never resumed (its lines name no image); an empty one is", () => {
  const d = dir();
  const file = join(d, "out.txt");
  writeFileSync(file, "a caption\n\n");
  assert.throws(() => readDone(file, "text"), /out\.txt: a text output cannot be resumed .* --format jsonl or tsv/);
  writeFileSync(file, "");
  assert.equal(readDone(file, "text").size, 0);
});

test("the sink opens its file on the first caption, drops a cut-off last line, and records images by real path", () => {
  const d = dir();
  writeFileSync(join(d, "a.png"), "");
  const file = join(d, "out.jsonl");
  const untouched = new CaptionSink(file, "jsonl");
  untouched.close();
  assert.equal(existsSync(file), false);
  writeFileSync(file, '{"image":"/x.png","caption":"x"}\n{"image":"/y.p');
  const sink = new CaptionSink(file, "jsonl");
  sink.write({ image: join(d, ".", "a.png"), caption: "two\nlines" });
  sink.close();
  assert.equal(
    readFileSync(file, "utf8"),
    `{"image":"/x.png","caption":"x"}\n${JSON.stringify({ image: realpathSync(join(d, "a.png")), caption: "two\nlines" })}\n`,
  );
  assert.equal(sink.written, 1);
});

test("text files keep line i = image i of their run, failures included", () => {
  const d = dir();
  const file = join(d, "out.txt");
  const sink = new CaptionSink(file, "text");
  sink.write({ image: "a.png", caption: "two\nlines" });
  sink.writeFailure();
  sink.write({ image: "c.png", caption: "z" });
  sink.close();
  assert.equal(readFileSync(file, "utf8"), "two lines\n\nz\n");
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

test("folders: their own images only, unless recursive; the message says how to read subfolders", async () => {
  const d = dir();
  mkdirSync(join(d, "sub", "deeper"), { recursive: true });
  mkdirSync(join(d, "nest", "inner"), { recursive: true });
  for (const name of ["b.png", "sub/a.png", "sub/deeper/c.jpg", "nest/inner/x.png"]) writeFileSync(join(d, name), "");
  assert.deepEqual(await expandImageInputs([d]), [join(d, "b.png")]);
  assert.deepEqual(await expandImageInputs([d], undefined, { recursive: true }), [
    join(d, "b.png"),
    join(d, "nest/inner/x.png"),
    join(d, "sub/a.png"),
    join(d, "sub/deeper/c.jpg"),
  ]);
  await assert.rejects(expandImageInputs([join(d, "nest")]), /the folder has no images .*; -r reads subfolders too/);
});

test("the --demos fixture is a valid demonstrations file", () => {
  const demos = readDemos("fixtures/prompts/demos.yaml");
  assert.equal(demos.length, 2);
  assert.ok(demos.every((d) => existsSync(d.image) && d.caption.length > 0));
});
