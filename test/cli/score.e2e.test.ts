// emu2 score on the official file formats, built from the metric test cases so the expected numbers are the
// official tools' own (test/eval/metrics/official.json).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { emu2, oneLine } from "../helpers/cli.js";

const cases = JSON.parse(readFileSync("test/eval/metrics/cases.json", "utf8"));
const official = JSON.parse(readFileSync("test/eval/metrics/official.json", "utf8"));
const dir = mkdtempSync(join(tmpdir(), "emu2-score-"));
const write = (name: string, value: unknown) => {
  const file = join(dir, name);
  writeFileSync(file, typeof value === "string" ? value : JSON.stringify(value));
  return file;
};

interface VqaCase {
  id: number;
  answer_type: string;
  question_type: string;
  prediction: string;
  answers: string[];
}
const vqaCases = cases.vqa as VqaCase[];
const annotations = write("annotations.json", {
  annotations: vqaCases.map((c) => ({
    question_id: c.id,
    image_id: c.id,
    question_type: c.question_type,
    answer_type: c.answer_type,
    multiple_choice_answer: c.answers[0],
    answers: c.answers.map((answer, i) => ({ answer, answer_confidence: "yes", answer_id: i + 1 })),
  })),
});
const questions = write("questions.json", {
  questions: vqaCases.map((c) => ({ question_id: c.id, image_id: c.id, question: "?" })),
});

test("vqa: official annotations and results give the official overall and per answer type", () => {
  const results = write(
    "vqa-results.json",
    vqaCases.map((c) => ({ question_id: c.id, answer: c.prediction })),
  );
  const r = emu2([
    "score",
    "--metric",
    "vqa",
    "--predictions",
    results,
    "--references",
    annotations,
    "--questions",
    questions,
    "--json",
  ]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.metric, "vqa");
  assert.equal(report.n, vqaCases.length);
  assert.ok(Math.abs(report.score - official.vqa.overall) < 1e-9);
  for (const [k, v] of Object.entries(official.vqa.per_answer_type))
    assert.ok(Math.abs(report.breakdown.per_answer_type[k] - (v as number)) < 1e-9, k);
  assert.equal(report.breakdown.unanswered, 0);
  const text = emu2(["score", "--metric", "vqa", "--predictions", results, "--references", annotations]);
  assert.match(text.stdout, new RegExp(`^vqa: ${official.vqa.overall.toFixed(2)} \\(n=${vqaCases.length}\\)\\n`));
});

test("cider: COCO caption annotations and results give 100 x the official CIDEr-D", () => {
  const images = cases.cider.images as { id: number; hypothesis: { raw: string }; references: { raw: string }[] }[];
  const refs = write("captions.json", {
    annotations: images.flatMap((im) =>
      im.references.map((ref, k) => ({ image_id: im.id, id: im.id * 10 + k, caption: ref.raw })),
    ),
  });
  const results = write(
    "caption-results.json",
    images.map((im) => ({ image_id: im.id, caption: im.hypothesis.raw })),
  );
  const r = emu2(["score", "--metric", "cider", "--predictions", results, "--references", refs, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Math.abs(JSON.parse(r.stdout).score - 100 * official.cider.score) < 1e-9);
});

test("roc-auc and accuracy: Hateful Memes JSONL references with JSON and JSONL predictions", () => {
  const c = cases.roc_auc[3] as { scores: number[]; labels: number[] };
  const refs = write(
    "dev.jsonl",
    c.labels
      .map((label, i) => JSON.stringify({ id: 100 + i, img: `img/${100 + i}.png`, label, text: "meme" }))
      .join("\n") + "\n",
  );
  const jsonl = write("probs.jsonl", c.scores.map((p, i) => JSON.stringify({ id: 100 + i, prediction: p })).join("\n"));
  const r = emu2(["score", "--metric", "roc-auc", "--predictions", jsonl, "--references", refs, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Math.abs(JSON.parse(r.stdout).score - 100 * official.roc_auc.probabilities) < 1e-9);
  const labels = write(
    "labels.json",
    c.scores.map((p, i) => ({ id: 100 + i, prediction: p >= 0.5 ? 1 : 0 })),
  );
  const acc = JSON.parse(
    emu2(["score", "--metric", "accuracy", "--predictions", labels, "--references", refs, "--json"]).stdout,
  );
  const expected = c.scores.filter((p, i) => (p >= 0.5 ? 1 : 0) === c.labels[i]).length / c.scores.length;
  assert.equal(acc.score, 100 * expected);
});

test("bad input: one line naming the file and item, exit 1, nothing on stdout", () => {
  const unknown = write("unknown.json", [{ question_id: 999, answer: "x" }]);
  let r = emu2(["score", "--metric", "vqa", "--predictions", unknown, "--references", annotations]);
  assert.equal(r.status, 1);
  assert.ok(oneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /unknown\.json: item 1: question_id 999 is not in .*annotations\.json/);
  assert.equal(r.stdout, "");
  const badLine = write("bad.jsonl", '{"id": 1, "prediction": 0.5}\n{"id": 2, "prediction": \n');
  r = emu2(["score", "--metric", "roc-auc", "--predictions", badLine, "--references", annotations]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.jsonl: line 2: not valid JSON/);
  r = emu2(["score", "--metric", "bleu", "--predictions", unknown]);
  assert.equal(r.status, 2);
  r = emu2(["score", "--metric", "vqa", "--predictions", unknown]);
  assert.match(r.stderr, /--references is needed/);
  const dup = write("dup.json", [
    { question_id: 1, answer: "x" },
    { question_id: 1, answer: "y" },
  ]);
  r = emu2(["score", "--metric", "vqa", "--predictions", dup, "--references", annotations]);
  assert.match(r.stderr, /dup\.json: item 2: question_id 1 appears twice \(also at item 1\)/);
});
