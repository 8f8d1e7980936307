// The VQA score against the official vqaEval.py: inputs in cases.json, its numbers in official.json (made by
// official_reference.py from the fetched official script).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  emu2ShortAnswer,
  normalizeVqaAnswer,
  processPunctuation,
  scoreVqa,
  vqaAccuracy,
} from "../../../src/eval/metrics/vqa.js";

const HERE = "test/eval/metrics";
interface Case {
  id: number;
  answer_type: string;
  question_type: string;
  prediction: string;
  answers: string[];
}
const cases = JSON.parse(readFileSync(`${HERE}/cases.json`, "utf8")) as { vqa: Case[]; vqa_duplicates: Case[] };
interface Official {
  overall: number;
  per_question: Record<string, number>;
  per_answer_type: Record<string, number>;
  per_question_type: Record<string, number>;
}
const official = JSON.parse(readFileSync(`${HERE}/official.json`, "utf8")) as Record<string, Official>;

// official.json is rounded to 12 decimals by the official script's own rounding (n=12).
const close = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);

const items = (list: Case[]) =>
  list.map((c) => ({
    prediction: c.prediction,
    answers: c.answers,
    answerType: c.answer_type,
    questionType: c.question_type,
  }));

test("every question scores what the official script gives (punctuation, digits, articles, contractions, quirks)", () => {
  for (const c of cases.vqa)
    close(
      100 * vqaAccuracy(c.prediction, c.answers),
      official.vqa.per_question[String(c.id)],
      `question ${c.id} (${JSON.stringify(c.prediction)})`,
    );
});

test("overall, per answer type and per question type equal the official breakdown", () => {
  const summary = scoreVqa(items(cases.vqa));
  close(summary.score, official.vqa.overall, "overall");
  assert.equal(summary.n, cases.vqa.length);
  assert.deepEqual(Object.keys(summary.perAnswerType).sort(), Object.keys(official.vqa.per_answer_type).sort());
  for (const [k, v] of Object.entries(official.vqa.per_answer_type))
    close(summary.perAnswerType[k], v, `answer type ${k}`);
  for (const [k, v] of Object.entries(official.vqa.per_question_type))
    close(summary.perQuestionType[k], v, `question type ${k}`);
});

test("duplicate answers without answer_id are left out by position: the official numbers WITH ids, not its dict-equality ones", () => {
  for (const c of cases.vqa_duplicates) {
    const ours = 100 * vqaAccuracy(c.prediction, c.answers);
    close(ours, official.vqa_duplicates_with_ids.per_question[String(c.id)], `question ${c.id}`);
    // What the official script does to files without answer_id (VizWiz): every duplicate of the left-out answer goes.
    assert.notEqual(ours, official.vqa_duplicates_without_ids.per_question[String(c.id)]);
  }
  close(100 * vqaAccuracy("blue", cases.vqa_duplicates[1].answers), 100, "7 of 10 say blue");
  assert.equal(official.vqa_duplicates_without_ids.per_question["102"], 30);
});

test("the all-identical-answers quirk: no normalization by default, always with alwaysNormalize", () => {
  const tenYes = new Array<string>(10).fill("yes");
  assert.equal(vqaAccuracy("Yes", tenYes), 0);
  assert.equal(vqaAccuracy("Yes", tenYes, { alwaysNormalize: true }), 1);
  assert.equal(vqaAccuracy(" yes\n", tenYes), 1, "whitespace is stripped either way");
});

test("normalization rules one by one", () => {
  assert.equal(normalizeVqaAnswer("Two dogs"), "2 dogs");
  assert.equal(normalizeVqaAnswer("the dog"), "dog");
  assert.equal(normalizeVqaAnswer("dont"), "don't");
  assert.equal(normalizeVqaAnswer("3.5"), "3.5");
  assert.equal(normalizeVqaAnswer("st. louis"), "st louis");
  assert.equal(processPunctuation("1,000"), "1000");
  assert.equal(processPunctuation("yes,no"), "yes no");
  assert.equal(processPunctuation("left / right"), "left  right");
  assert.equal(processPunctuation(".".repeat(40)), ".".repeat(8), "the official call removes at most 32 periods");
});

test("Emu2's short-answer clean-up of generated text", () => {
  assert.equal(emu2ShortAnswer("It is a red car. The car is parked"), "red car");
  assert.equal(emu2ShortAnswer("The Dog, running\nmore"), "dog");
  assert.equal(emu2ShortAnswer("It's blue. I think"), "blue");
  assert.equal(emu2ShortAnswer('"stop" sign'), "stop");
  assert.equal(emu2ShortAnswer("an apple"), "apple");
  assert.equal(emu2ShortAnswer("Yes"), "yes");
});
