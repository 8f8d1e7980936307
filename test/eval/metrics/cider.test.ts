// CIDEr-D and the PTB-style tokenizer against pycocoevalcap's cider_scorer.py: inputs in cases.json (raw captions
// and the tokens the Stanford PTBTokenizer gives them), numbers in official.json (official_reference.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ciderD } from "../../../src/eval/metrics/cider.js";
import { ptbTokenizeCaption } from "../../../src/eval/metrics/ptb-tokenizer.js";

const HERE = "test/eval/metrics";
interface Caption {
  raw: string;
  tokens: string;
}
interface Image {
  id: number;
  hypothesis: Caption;
  references: Caption[];
}
const cases = JSON.parse(readFileSync(`${HERE}/cases.json`, "utf8")) as {
  cider: { images: Image[] };
  cider_single: { hypothesis: string; references: string[] };
};
const official = JSON.parse(readFileSync(`${HERE}/official.json`, "utf8")) as Record<
  string,
  { score: number; per_image: number[] }
>;

const close = (actual: number, expected: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );

test("the PTB-style tokenizer gives the PTB tokens of every caption (punctuation dropped as pycocoevalcap does)", () => {
  for (const image of cases.cider.images) {
    for (const caption of [image.hypothesis, ...image.references])
      assert.equal(ptbTokenizeCaption(caption.raw), caption.tokens, caption.raw);
  }
});

test("CIDEr-D per image and mean equal the official scorer", () => {
  const items = cases.cider.images.map((i) => ({
    hypothesis: ptbTokenizeCaption(i.hypothesis.raw),
    references: i.references.map((r) => ptbTokenizeCaption(r.raw)),
  }));
  const result = ciderD(items);
  close(result.score, official.cider.score, "mean");
  result.perImage.forEach((s, i) => close(s, official.cider.per_image[i], `image ${i + 1}`));
});

test("idf comes from the reference sets of the images scored: a subset scores differently, one image alone scores 0", () => {
  const items = cases.cider.images
    .slice(0, 3)
    .map((i) => ({ hypothesis: i.hypothesis.tokens, references: i.references.map((r) => r.tokens) }));
  const result = ciderD(items);
  close(result.score, official.cider_first_three.score, "first three");
  result.perImage.forEach((s, i) => close(s, official.cider_first_three.per_image[i], `image ${i + 1} of three`));
  assert.equal(
    ciderD([{ hypothesis: cases.cider_single.hypothesis, references: cases.cider_single.references }]).score,
    0,
  );
});

test("the length penalty: a long caption with every n-gram of a reference scores far below the reference itself", () => {
  // Image 6 of cases.json is such a caption; the official per-image value (0.0037) shows the Gaussian penalty.
  assert.ok(official.cider.per_image[5] < 0.01);
  const long = cases.cider.images[5];
  const items = cases.cider.images.map((i) => ({
    hypothesis: i.hypothesis.tokens,
    references: i.references.map((r) => r.tokens),
  }));
  const asReference = ciderD(items.map((it, i) => (i === 5 ? { ...it, hypothesis: long.references[0].tokens } : it)));
  assert.ok(asReference.perImage[5] > 100 * official.cider.per_image[5]);
});
