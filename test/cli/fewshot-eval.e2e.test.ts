// emu2 fewshot-eval end to end on the tiny package and the fixture datasets: the acceptance of issue 10.
// Killed-then-resumed, sharded-then-merged and batch size 4 all equal one uninterrupted run, byte for byte.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { BIN, emu2, oneLine } from "../helpers/cli.js";
import { packageDir } from "../helpers/fixtures.js";

const TMP = mkdtempSync(join(tmpdir(), "emu2-fewshot-"));
const PKG = packageDir("emu2-tiny");
const TASKS = "fixtures/datasets/configs/vqav2.yaml,fixtures/datasets/configs/hateful_memes.yaml";
const BASE = [
  "fewshot-eval",
  "--tasks",
  TASKS,
  "--data-dir",
  "fixtures/datasets",
  "--limit",
  "6",
  "--demos",
  "rices",
  "-m",
  PKG,
];
const out = (name: string) => join(TMP, name);

/** results.json and every predictions file of an output dir (the feature cache is not part of the results). */
function snapshot(dir: string): Record<string, string> {
  const files: Record<string, string> = { "results.json": readFileSync(join(dir, "results.json"), "utf8") };
  for (const f of readdirSync(join(dir, "predictions")).sort())
    files[f] = readFileSync(join(dir, "predictions", f), "utf8");
  return files;
}

let reference: Record<string, string>;

test("an uninterrupted run: summary lines and table on stdout, results.json and predictions on disk", () => {
  const r = emu2([...BASE, "-o", out("a")]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(lines[0], /^hateful_memes 0-shot roc-auc: \d+\.\d\d \(n=6\)$|^vqav2 0-shot vqa: \d+\.\d\d \(n=6\)$/);
  assert.ok(r.stdout.includes("vqav2 2-shot vqa: "), r.stdout);
  assert.match(
    r.stdout,
    /\ntask +metric +0-shot +2-shot\nvqav2 +vqa +\d+\.\d\d +\d+\.\d\d\nhateful_memes +roc-auc +\d+\.\d\d +\d+\.\d\d\n$/,
  );
  assert.doesNotMatch(r.stderr, /ETA|\[/, "no progress bars when stderr is not a terminal");
  reference = snapshot(out("a"));
  assert.deepEqual(Object.keys(reference), [
    "results.json",
    "hateful_memes_0shot_seed0.jsonl",
    "hateful_memes_2shot_seed0.jsonl",
    "vqav2_0shot_seed0.jsonl",
    "vqav2_2shot_seed0.jsonl",
  ]);
  const results = JSON.parse(reference["results.json"]);
  assert.equal(results.complete, true);
  assert.equal(results.package.name, "emu2-tiny");
  assert.match(results.package.manifest_sha256, /^[0-9a-f]{64}$/);
  assert.equal(results.run.demos, "rices");
  assert.equal(results.configs.vqav2.decoding.num_beams, 2);
  assert.equal(results.results.vqav2["2"].trials[0].n, 6);
  const vqa = reference["vqav2_2shot_seed0.jsonl"]
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(vqa.length, 6);
  assert.deepEqual(Object.keys(vqa[0]), [
    "id",
    "index",
    "demos",
    "raw",
    "prediction",
    "references",
    "answer_type",
    "question_type",
    "score",
  ]);
  assert.equal(vqa[0].demos.length, 2);
  const hm = JSON.parse(reference["hateful_memes_2shot_seed0.jsonl"].split("\n")[0]);
  assert.deepEqual(Object.keys(hm.class_scores), ["no", "yes"]);
  assert.ok(hm.probability > 0 && hm.probability < 1);
  // The saved predictions re-score to the same number without a model.
  const rescored = JSON.parse(
    emu2([
      "score",
      "--metric",
      "vqa",
      "--predictions",
      join(out("a"), "predictions", "vqav2_2shot_seed0.jsonl"),
      "--json",
    ]).stdout,
  );
  assert.equal(rescored.score, results.results.vqav2["2"].mean);
});

test("batch size 4 gives the same predictions and results as batch size 1", () => {
  const r = emu2([...BASE, "-o", out("b"), "--batch-size", "4"]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(snapshot(out("b")), reference);
});

test("killed with SIGKILL mid-run, then --resume: the same results as the uninterrupted run", async () => {
  const dir = out("c");
  const child = spawn(process.execPath, [BIN, ...BASE, "-o", dir], { stdio: "ignore" });
  const lines = () => {
    const p = join(dir, "predictions");
    if (!existsSync(p)) return 0;
    return readdirSync(p).reduce((n, f) => n + readFileSync(join(p, f), "utf8").split("\n").length - 1, 0);
  };
  const exit = new Promise<NodeJS.Signals | null>((done) => child.on("exit", (_, signal) => done(signal)));
  while (lines() < 8 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
  child.kill("SIGKILL");
  assert.equal(await exit, "SIGKILL", "the run was killed before it finished");
  assert.equal(JSON.parse(readFileSync(join(dir, "results.json"), "utf8")).complete, false);
  const again = emu2([...BASE, "-o", dir]);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /results\.json exists: pass --resume to continue that run/);
  const r = emu2([...BASE, "-o", dir, "--resume"]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(snapshot(dir), reference);
});

test("3 shards merged equal the unsharded run; mismatched shards are refused", () => {
  for (let i = 0; i < 3; i++) {
    const r = emu2([...BASE, "-o", out(`shard${i}`), "--shard", `${i}/3`, "--batch-size", "2"]);
    assert.equal(r.status, 0, r.stderr);
  }
  const m = emu2(["fewshot-eval", "merge", out("shard0"), out("shard1"), out("shard2"), "-o", out("merged")]);
  assert.equal(m.status, 0, m.stderr);
  assert.deepEqual(snapshot(out("merged")), reference);

  let r = emu2(["fewshot-eval", "merge", out("shard0"), out("shard1"), "-o", out("merged2")]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /shard 2\/3 missing/);
  const other = emu2([...BASE, "--seed", "5", "-o", out("other2"), "--shard", "2/3"]);
  assert.equal(other.status, 0, other.stderr);
  r = emu2(["fewshot-eval", "merge", out("shard0"), out("shard1"), out("other2"), "-o", out("merged3")]);
  assert.equal(r.status, 2);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /are shards of different runs \(run\.\w+ differs\)/);
});

test("--resume refuses a directory made by another config or package", () => {
  let r = emu2([...BASE, "-o", out("a"), "--resume", "--limit", "5"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--resume: .*results\.json was made by a different run \(run\.limit differs\)/);
  r = emu2([...BASE, "-o", out("a"), "--resume", "-m", packageDir("emu2-chat-tiny")]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /\(package\.manifest_sha256 differs\)|\(package\.name differs\)/);
});

test("trials report each value, the mean and the std; --json prints the results object only", () => {
  const r = emu2([
    "fewshot-eval",
    "--tasks",
    "fixtures/datasets/configs/hateful_memes.yaml",
    "--data-dir",
    "fixtures/datasets",
    "--shots",
    "2",
    "--trials",
    "3",
    "--seed",
    "7",
    "-m",
    PKG,
    "-o",
    out("trials"),
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout);
  const shot = results.results.hateful_memes["2"];
  assert.deepEqual(
    shot.trials.map((t: { seed: number }) => t.seed),
    [7, 8, 9],
  );
  const scores = shot.trials.map((t: { score: number }) => t.score) as number[];
  const mean = scores.reduce((s, v) => s + v, 0) / 3;
  assert.ok(Math.abs(shot.mean - mean) < 1e-12);
  assert.ok(Math.abs(shot.std - Math.sqrt(scores.reduce((s, v) => s + (v - mean) ** 2, 0) / 3)) < 1e-12);
  assert.equal(readdirSync(join(out("trials"), "predictions")).length, 3);
});

test("config errors stop before any model work; bad records are skipped, counted, and the run goes on", () => {
  const bad = join(TMP, "bad.yaml");
  writeFileSync(bad, "extends: vqav2\nbeams: 2\n");
  let r = emu2([
    "fewshot-eval",
    "--tasks",
    bad,
    "--data-dir",
    "fixtures/datasets",
    "-m",
    join(TMP, "no-such-package"),
    "-o",
    out("never"),
  ]);
  assert.equal(r.status, 2);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /bad\.yaml: field \(top level\): unknown field beams/);
  assert.equal(existsSync(out("never")), false);
  r = emu2([
    "fewshot-eval",
    "--tasks",
    "vqav2",
    "--data-dir",
    TMP,
    "-m",
    join(TMP, "no-such-package"),
    "-o",
    out("never"),
  ]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /vqav2\.yaml: eval\.questions: .* does not exist/);

  const data = join(TMP, "data");
  cpSync("fixtures/datasets/hateful_memes", join(data, "hateful_memes"), { recursive: true });
  const file = join(data, "hateful_memes", "dev_seen.jsonl");
  const lines = readFileSync(file, "utf8").split("\n");
  lines[2] = "{not json";
  writeFileSync(file, lines.join("\n"));
  writeFileSync(join(data, "hateful_memes", JSON.parse(lines[4]).img), "not a png");
  r = emu2([
    "fewshot-eval",
    "--tasks",
    "fixtures/datasets/configs/hateful_memes.yaml",
    "--data-dir",
    data,
    "--shots",
    "0",
    "-m",
    PKG,
    "-o",
    out("skips"),
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`skipped ${file.replace(/[.]/g, "\\.")}: line 3: not valid JSON`));
  assert.match(r.stdout, /hateful_memes 0-shot roc-auc: \d+\.\d\d \(n=4, skipped 1\)/);
  const results = JSON.parse(readFileSync(join(out("skips"), "results.json"), "utf8"));
  assert.equal(results.data_skipped.hateful_memes.eval, 1);
  assert.equal(results.results.hateful_memes["0"].trials[0].skipped, 1);
  const skippedRecord = readFileSync(join(out("skips"), "predictions", "hateful_memes_0shot_seed0.jsonl"), "utf8")
    .split("\n")
    .map((l) => (l ? JSON.parse(l) : null))
    .find((x) => x?.skipped);
  assert.match(skippedRecord.skipped, /\.png: /);
});

test("every task config runs end to end on the fixture data (both tiny packages)", () => {
  // RICES ranks images: the video task runs with random demonstrations in test/eval/video-qa.test.ts.
  const all = readdirSync("fixtures/datasets/configs")
    .filter((f) => f !== "video_qa.yaml")
    .sort()
    .map((f) => join("fixtures/datasets/configs", f))
    .join(",");
  const r = emu2([
    "fewshot-eval",
    "--tasks",
    all,
    "--data-dir",
    "fixtures/datasets",
    "--limit",
    "2",
    "--demos",
    "rices",
    "-m",
    PKG,
    "-o",
    out("all"),
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(results.results), [
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
    "vizwiz",
    "vqav2",
  ]);
  for (const [task, byShot] of Object.entries(
    results.results as Record<string, Record<string, { trials: { n: number; skipped: number }[] }>>,
  )) {
    assert.deepEqual(Object.keys(byShot), ["0", "2"], task);
    for (const shot of Object.values(byShot))
      assert.deepEqual([shot.trials[0].n, shot.trials[0].skipped], [2, 0], task);
  }
  const chat = emu2([
    "fewshot-eval",
    "--tasks",
    "fixtures/datasets/configs/vqav2.yaml",
    "--data-dir",
    "fixtures/datasets",
    "--limit",
    "2",
    "-m",
    packageDir("emu2-chat-tiny"),
    "-o",
    out("chat"),
    "--json",
  ]);
  assert.equal(chat.status, 0, chat.stderr);
  assert.equal(JSON.parse(chat.stdout).results.vqav2["2"].trials[0].n, 2);
});

test("on a terminal: a progress bar with ETA per task, shot count and seed", () => {
  const args = [
    "fewshot-eval",
    "--tasks",
    "fixtures/datasets/configs/hateful_memes.yaml",
    "--data-dir",
    "fixtures/datasets",
    "--limit",
    "4",
    "-m",
    PKG,
    "-o",
    out("tty"),
  ];
  const steps = [
    { expect: "hateful_memes 0-shot seed 0 [" },
    { expect: "hateful_memes 2-shot seed 0 [" },
    { expect: "ETA" },
    { expect: "2-shot" },
  ];
  const r = spawnSync(
    "/usr/bin/python3",
    ["test/helpers/pty_driver.py", JSON.stringify(steps), "--", process.execPath, BIN, ...args],
    { encoding: "utf8", timeout: 120_000 },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const { transcript, exit_code } = JSON.parse(r.stdout);
  assert.equal(exit_code, 0, transcript);
  assert.match(transcript, /hateful_memes 2-shot seed 0 \[[^\]]*\] 4\/4/);
});

test("--demos balanced shows every class of a classification task; a task without classes is refused in one line", () => {
  const dir = out("balanced");
  const r = emu2([
    "fewshot-eval",
    "--tasks",
    "toy-nonsense-color",
    "--data-dir",
    "fixtures",
    "--shots",
    "4",
    "--limit",
    "3",
    "--demos",
    "balanced",
    "-o",
    dir,
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const labels = new Map(
    readFileSync("fixtures/toy-eval/nonsense-color-train.jsonl", "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { id: string; label: string })
      .map((s) => [s.id, s.label]),
  );
  const predictions = readdirSync(join(dir, "predictions"));
  assert.equal(predictions.length, 1);
  const records = readFileSync(join(dir, "predictions", predictions[0]), "utf8")
    .trim()
    .split("\n");
  assert.equal(records.length, 3);
  for (const line of records) {
    const demos = (JSON.parse(line) as { demos: string[] }).demos;
    assert.deepEqual(new Set(demos.map((id) => labels.get(id))), new Set(["toma", "fep", "kiki", "vork"]), line);
  }
  const vqa = emu2(["fewshot-eval", "--tasks", "toy-vqa", "--data-dir", "fixtures", "--demos", "balanced"]);
  assert.equal(vqa.status, 2);
  assert.ok(oneLine(vqa.stderr), vqa.stderr);
  assert.match(vqa.stderr, /--demos balanced draws demonstrations per class: task toy-vqa is a vqa task/);
});
