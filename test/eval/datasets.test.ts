import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { loadSplit, taskClasses } from "../../src/eval/datasets.js";
import { loadTaskConfig } from "../../src/eval/task-config.js";

const DATA = "fixtures/datasets";

test("every format loads its fixture: ids, images, answers, captions, labels", () => {
  const expected: Record<string, [number, number]> = {
    vqav2: [18, 24],
    okvqa: [18, 24],
    vizwiz: [4, 8],
    textvqa: [4, 8],
    hateful_memes: [6, 8],
    coco: [4, 8],
    flickr30k: [4, 8],
    imagenet: [6, 6],
    jsonl: [4, 8],
  };
  for (const [name, [nEval, nTrain]] of Object.entries(expected)) {
    const { config } = loadTaskConfig(name);
    const ev = loadSplit(config, "eval", DATA);
    const tr = loadSplit(config, "train", DATA);
    assert.deepEqual(
      [ev.samples.length, tr.samples.length, ev.skipped.length, tr.skipped.length],
      [nEval, nTrain, 0, 0],
      name,
    );
    for (const s of [...ev.samples, ...tr.samples]) {
      if (config.kind === "vqa")
        assert.ok(s.answers!.length > 0 && s.answer !== undefined && s.question, `${name} ${s.id}`);
      if (config.kind === "captioning") assert.ok(s.captions!.length === 3, `${name} ${s.id}`);
      if (config.kind === "classification") assert.ok(s.label !== undefined, `${name} ${s.id}`);
    }
  }
  const { config } = loadTaskConfig("vqav2");
  const first = loadSplit(config, "eval", DATA).samples[0];
  assert.equal(first.id, "1010");
  assert.match(first.image, /coco\/val2014\/COCO_val2014_000000000101\.jpg$/);
  assert.equal(first.answerType, "other");
  const hm = loadTaskConfig("hateful_memes").config;
  assert.deepEqual([...new Set(loadSplit(hm, "eval", DATA).samples.map((s) => s.label))].sort(), ["no", "yes"]);
  const inet = loadTaskConfig("imagenet").config;
  assert.deepEqual(taskClasses(inet, loadSplit(inet, "eval", DATA), loadSplit(inet, "train", DATA)), [
    "blue",
    "green",
    "red",
  ]);
});

test("bad records are skipped with the file and line, the rest load", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-baddata-"));
  cpSync(join(DATA, "hateful_memes"), join(dir, "hateful_memes"), { recursive: true });
  const file = join(dir, "hateful_memes", "dev_seen.jsonl");
  const lines = readFileSync(file, "utf8").trimEnd().split("\n");
  lines[1] = lines[1].slice(0, 20); // malformed JSON
  lines[2] = lines[2].replace(/"label":\d/, '"label":7'); // bad label
  rmSync(join(dir, "hateful_memes", JSON.parse(lines[3]).img)); // missing image
  writeFileSync(file, `${lines.join("\n")}\n`);
  const { config } = loadTaskConfig("hateful_memes");
  const split = loadSplit(config, "eval", dir);
  assert.equal(split.samples.length, 3);
  assert.deepEqual(
    split.skipped.map((s) => s.where),
    [`${file}: line 2`, `${file}: line 3`, `${file}: line 4`],
  );
  assert.match(split.skipped[0].reason, /not valid JSON/);
  assert.match(split.skipped[1].reason, /label: expected 0 or 1/);
  assert.match(split.skipped[2].reason, /image .*\.png: no such file/);

  cpSync(join(DATA, "vqav2"), join(dir, "vqav2"), { recursive: true });
  cpSync(join(DATA, "coco"), join(dir, "coco"), { recursive: true });
  const annotations = join(dir, "vqav2", "v2_mscoco_val2014_annotations.json");
  const doc = JSON.parse(readFileSync(annotations, "utf8"));
  doc.annotations[0].answers = [];
  doc.annotations.splice(1, 1);
  writeFileSync(annotations, JSON.stringify(doc));
  const vqa = loadTaskConfig("vqav2").config;
  const v = loadSplit(vqa, "eval", dir);
  assert.equal(v.skipped.length, 2);
  assert.match(v.skipped[0].reason, /a question without answers/);
  assert.match(v.skipped[1].reason, /question 1011 has no annotation/);
});

test("the generic JSONL task reads classification labels and captions too (pointed at other data by extends)", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-jsonl-"));
  cpSync(join(DATA, "custom", "images"), join(dir, "images"), { recursive: true });
  const lines = (field: string, values: unknown[]) =>
    values.map((v, i) => JSON.stringify({ id: `s${i}`, image: `images/val_${i % 4}.png`, [field]: v })).join("\n");
  writeFileSync(join(dir, "labels.jsonl"), `${lines("label", ["cat", "dog", "bird", "cat"])}\n`);
  writeFileSync(join(dir, "captions.jsonl"), `${lines("captions", [["a"], ["b", "c"], [], ["d"]])}\n`);
  const config = (name: string, file: string, extra: string) => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(
      path,
      `extends: ${resolve("configs/eval/jsonl.yaml")}\neval: {file: ${file}, images: "{image}"}\ntrain: {file: ${file}, images: "{image}"}\n${extra}`,
    );
    return loadTaskConfig(path).config;
  };
  const cls = config(
    "cls",
    "labels.jsonl",
    "kind: classification\nmetric: accuracy\nclasses: [cat, dog]\nprompt: {demo: '{image}a {class}', query: '{image}a'}\n",
  );
  const labels = loadSplit(cls, "eval", dir);
  assert.deepEqual(
    labels.samples.map((s) => s.label),
    ["cat", "dog", "cat"],
  );
  assert.match(labels.skipped[0].reason, /label "bird" is not one of the classes \(cat, dog\)/);
  const cap = config(
    "cap",
    "captions.jsonl",
    "kind: captioning\nmetric: cider\nprompt: {demo: '{image}{caption}', query: '{image}'}\n",
  );
  const captions = loadSplit(cap, "eval", dir);
  assert.deepEqual(
    captions.samples.map((s) => s.captions),
    [["a"], ["b", "c"], ["d"]],
  );
  assert.deepEqual(
    captions.skipped.map((s) => s.where),
    [`${join(dir, "captions.jsonl")}: line 3`],
  );
});
