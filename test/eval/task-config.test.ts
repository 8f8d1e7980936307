import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { checkDataFiles, knownTasks, loadTaskConfig } from "../../src/eval/task-config.js";

const dir = mkdtempSync(join(tmpdir(), "emu2-taskcfg-"));
const write = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

test("every shipped task config is valid and its fixture override finds its data", () => {
  assert.deepEqual(knownTasks(), [
    "coco",
    "flickr30k",
    "hateful_memes",
    "imagenet",
    "jsonl",
    "okvqa",
    "textvqa",
    "toy-caption",
    "toy-nonsense-color",
    "toy-nonsense-shape",
    "toy-vqa",
    "video_qa",
    "vizwiz",
    "vqav2",
  ]);
  for (const name of knownTasks()) {
    const { config } = loadTaskConfig(name);
    assert.equal(config.name, name);
    const fixture = loadTaskConfig(`fixtures/datasets/configs/${name}.yaml`);
    assert.equal(fixture.config.name, name);
    assert.deepEqual(fixture.config.shots, [0, 2]);
    assert.deepEqual(fixture.config.prompt, config.prompt, "extends keeps the parent's prompt");
    checkDataFiles(fixture.config, fixture.file, "fixtures/datasets");
  }
});

test("extends overrides field by field: decoding merges, shots replace", () => {
  const { config } = loadTaskConfig("fixtures/datasets/configs/vqav2.yaml");
  assert.deepEqual(config.decoding, { max_new_tokens: 3, min_new_tokens: 1, num_beams: 2, length_penalty: -1 });
  assert.equal(config.postprocess, "emu2_short_answer");
});

test("an unknown field, a wrong value or a missing requirement: one line naming the file and field", () => {
  assert.throws(
    () => loadTaskConfig(write("a.yaml", "extends: vqav2\nbeams: 3\n")),
    /a\.yaml: field \(top level\): unknown field beams/,
  );
  assert.throws(
    () => loadTaskConfig(write("b.yaml", "extends: vqav2\ndecoding:\n  num_beams: 0\n")),
    /b\.yaml: field decoding\.num_beams: .*found 0/,
  );
  assert.throws(
    () => loadTaskConfig(write("c.yaml", "extends: hateful_memes\npositive_class: maybe\n")),
    /c\.yaml: field positive_class: must be one of classes \(no, yes\)/,
  );
  assert.throws(
    () => loadTaskConfig(write("d.yaml", "extends: vqav2\nmetric: cider\n")),
    /d\.yaml: field metric: cider does not score a vqa task/,
  );
  assert.throws(
    () => loadTaskConfig(write("e.yaml", "extends: vqav2\nprompt:\n  query: '{image}{questoin}'\n")),
    /e\.yaml: field prompt\.query: placeholders must be among/,
  );
  assert.throws(
    () => loadTaskConfig(write("f.yaml", "extends: vqav2\nformat: vizwiz\n")),
    /f\.yaml: field eval\.file: required by format vizwiz/,
  );
  assert.throws(() => loadTaskConfig("no_such_task"), /no_such_task\.yaml: no such task config \(known tasks: coco, /);
  assert.throws(() => loadTaskConfig(write("g.yaml", "extends: g.yaml\n")), /extends itself/);
});

test("a missing data file is named with the data dir", () => {
  const { config, file } = loadTaskConfig("vqav2");
  assert.throws(
    () => checkDataFiles(config, file, dir),
    new RegExp(
      `vqav2\\.yaml: eval\\.questions: .*v2_OpenEnded_mscoco_val2014_questions\\.json does not exist \\(data dir ${dir}`,
    ),
  );
});
