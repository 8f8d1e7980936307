// Re-scoring saved predictions without a model (emu2 score): the official file formats of VQA, COCO captions and
// Hateful Memes, and the predictions JSONL that fewshot-eval writes (which carries its own references).
import {
  DataError,
  field,
  isId,
  isNumber,
  isObject,
  isString,
  isStringList,
  readJson,
  readRecords,
  type Located,
} from "./json-files.js";
import { ciderD } from "./metrics/cider.js";
import { accuracy, rocAuc } from "./metrics/classification.js";
import { ptbTokenizeCaption } from "./metrics/ptb-tokenizer.js";
import { scoreVqa, type VqaItem } from "./metrics/vqa.js";

export const METRICS = ["vqa", "cider", "roc-auc", "accuracy"] as const;
export type MetricName = (typeof METRICS)[number];

export interface ScoreReport {
  metric: MetricName;
  /** On the scale papers print: VQA and accuracy in percent, CIDEr x100, ROC-AUC x100. */
  score: number;
  n: number;
  breakdown: Record<string, unknown>;
}

export interface ScoreRequest {
  metric: MetricName;
  predictions: string;
  references?: string;
  questions?: string;
  /** VQA: normalize even when all answers are identical (see metrics/vqa.ts). */
  alwaysNormalize?: boolean;
}

/** Scores for the per-metric item lists (shared with fewshot-eval's results). */
export function scoreVqaItems(items: VqaItem[], alwaysNormalize = false): ScoreReport {
  const s = scoreVqa(items, { alwaysNormalize });
  return {
    metric: "vqa",
    score: s.score,
    n: s.n,
    breakdown: { per_answer_type: s.perAnswerType, per_question_type: s.perQuestionType },
  };
}

export function scoreCaptionItems(items: { prediction: string; references: readonly string[] }[]): ScoreReport {
  const result = ciderD(
    items.map((i) => ({
      hypothesis: ptbTokenizeCaption(i.prediction),
      references: i.references.map(ptbTokenizeCaption),
    })),
  );
  return { metric: "cider", score: 100 * result.score, n: items.length, breakdown: { raw_cider: result.score } };
}

export function scoreRocAucItems(items: { probability: number; positive: boolean }[]): ScoreReport {
  const labels = items.map((i) => (i.positive ? 1 : 0));
  const positives = labels.filter((l) => l === 1).length;
  if (positives === 0 || positives === items.length) {
    throw new DataError(
      `roc-auc needs both classes among the scored samples (got ${positives} positive of ${items.length})`,
    );
  }
  return {
    metric: "roc-auc",
    score:
      100 *
      rocAuc(
        items.map((i) => i.probability),
        labels,
      ),
    n: items.length,
    breakdown: { positives, negatives: items.length - positives },
  };
}

export function scoreAccuracyItems(items: { prediction: string; label: string }[]): ScoreReport {
  const perClass: Record<string, { n: number; accuracy: number }> = {};
  for (const label of [...new Set(items.map((i) => i.label))].sort()) {
    const of = items.filter((i) => i.label === label);
    perClass[label] = {
      n: of.length,
      accuracy:
        100 *
        accuracy(
          of.map((i) => i.prediction),
          of.map((i) => i.label),
        ),
    };
  }
  return {
    metric: "accuracy",
    score:
      100 *
      accuracy(
        items.map((i) => i.prediction),
        items.map((i) => i.label),
      ),
    n: items.length,
    breakdown: { per_class: perClass },
  };
}

const key = (id: string | number) => String(id);

/** Predictions keyed by id, refusing duplicates (the official tools assume one answer per question or image). */
function byId<T>(
  records: Located[],
  idField: string,
  read: (r: Located) => T,
): Map<string, { value: T; where: string }> {
  const out = new Map<string, { value: T; where: string }>();
  for (const r of records) {
    const id = key(field(r, idField, isId, "a string or number id"));
    if (out.has(id))
      throw new DataError(
        `${r.where}: ${idField} ${id} appears twice (also at ${out.get(id)!.where.split(": ").pop()})`,
      );
    out.set(id, { value: read(r), where: r.where });
  }
  return out;
}

function listOf(file: string, doc: unknown, name: string, what: string): Located[] {
  if (!isObject(doc) || !Array.isArray(doc[name]))
    throw new DataError(`${file}: expected ${what} (an object with a "${name}" list)`);
  return (doc[name] as unknown[]).map((value, i) => ({ value, where: `${file}: ${name}[${i}]` }));
}

/** Joins predictions to references; a prediction without a reference is an error, a reference without one is counted. */
function join<P, R>(
  predictions: Map<string, { value: P; where: string }>,
  references: Map<string, R>,
  referencesFile: string,
  idName: string,
) {
  const pairs: { id: string; prediction: P; reference: R }[] = [];
  for (const [id, p] of predictions) {
    const reference = references.get(id);
    if (reference === undefined) throw new DataError(`${p.where}: ${idName} ${id} is not in ${referencesFile}`);
    pairs.push({ id, prediction: p.value, reference });
  }
  return { pairs, unanswered: references.size - pairs.length };
}

/** Whether a predictions file is fewshot-eval's own JSONL (its records carry references or a label). */
function isFewshotRecords(records: Located[]): boolean {
  return (
    records.length > 0 &&
    isObject(records[0].value) &&
    ("references" in records[0].value || "label" in records[0].value) &&
    "prediction" in records[0].value &&
    "demos" in records[0].value
  );
}

function fromFewshotRecords(metric: MetricName, records: Located[], alwaysNormalize: boolean): ScoreReport {
  const scored = records.filter((r) => !(isObject(r.value) && isString(r.value.skipped)));
  switch (metric) {
    case "vqa":
      return scoreVqaItems(
        scored.map((r) => ({
          prediction: field(r, "prediction", isString, "a string"),
          answers: field(r, "references", isStringList, "a list of answers"),
          answerType: isObject(r.value) && isString(r.value.answer_type) ? r.value.answer_type : undefined,
          questionType: isObject(r.value) && isString(r.value.question_type) ? r.value.question_type : undefined,
        })),
        alwaysNormalize,
      );
    case "cider":
      return scoreCaptionItems(
        scored.map((r) => ({
          prediction: field(r, "prediction", isString, "a string"),
          references: field(r, "references", isStringList, "a list of captions"),
        })),
      );
    case "roc-auc":
      return scoreRocAucItems(
        scored.map((r) => ({
          probability: field(r, "probability", isNumber, "a number (this task has no positive class)"),
          positive: field(r, "positive", (v): v is boolean => typeof v === "boolean", "true or false"),
        })),
      );
    case "accuracy":
      return scoreAccuracyItems(
        scored.map((r) => ({
          prediction: field(r, "prediction", isString, "a string"),
          label: field(r, "label", isString, "a string"),
        })),
      );
  }
}

export function scoreFiles(request: ScoreRequest): ScoreReport {
  const predictions = readRecords(request.predictions);
  if (isFewshotRecords(predictions))
    return fromFewshotRecords(request.metric, predictions, request.alwaysNormalize ?? false);
  const references = request.references;
  if (references === undefined)
    throw new DataError(`${request.predictions}: not fewshot-eval predictions, so --references is needed`);
  switch (request.metric) {
    case "vqa": {
      const answers = byId(
        listOf(references, readJson(references), "annotations", "VQA annotations"),
        "question_id",
        (r) => ({
          answers: field(
            r,
            "answers",
            (v): v is unknown[] => Array.isArray(v) && v.length > 0,
            "a list of answers",
          ).map((a, i) => {
            if (!isObject(a) || !isString(a.answer))
              throw new DataError(`${r.where}: answers[${i}]: expected {answer: text}`);
            return a.answer;
          }),
          answerType: isObject(r.value) && isString(r.value.answer_type) ? r.value.answer_type : undefined,
          questionType: isObject(r.value) && isString(r.value.question_type) ? r.value.question_type : undefined,
        }),
      );
      if (request.questions !== undefined) {
        const questions = byId(
          listOf(request.questions, readJson(request.questions), "questions", "VQA questions"),
          "question_id",
          () => null,
        );
        for (const [id, a] of answers)
          if (!questions.has(id)) throw new DataError(`${a.where}: question_id ${id} is not in ${request.questions}`);
      }
      const preds = byId(predictions, "question_id", (r) => field(r, "answer", isString, "a string"));
      const { pairs, unanswered } = join(
        preds,
        new Map([...answers].map(([id, a]) => [id, a.value])),
        references,
        "question_id",
      );
      const report = scoreVqaItems(
        pairs.map((p) => ({ prediction: p.prediction, ...p.reference })),
        request.alwaysNormalize ?? false,
      );
      return { ...report, breakdown: { ...report.breakdown, unanswered } };
    }
    case "cider": {
      const refs = new Map<string, string[]>();
      for (const r of listOf(references, readJson(references), "annotations", "COCO caption annotations")) {
        const id = key(field(r, "image_id", isId, "an image id"));
        refs.set(id, [...(refs.get(id) ?? []), field(r, "caption", isString, "a caption")]);
      }
      const preds = byId(predictions, "image_id", (r) => field(r, "caption", isString, "a caption"));
      const { pairs, unanswered } = join(preds, refs, references, "image_id");
      const report = scoreCaptionItems(pairs.map((p) => ({ prediction: p.prediction, references: p.reference })));
      return { ...report, breakdown: { ...report.breakdown, unanswered } };
    }
    case "roc-auc":
    case "accuracy": {
      const labels = byId(readRecords(references), "id", (r) => {
        const label = field(r, "label", (v): v is number => v === 0 || v === 1, "0 or 1");
        return label;
      });
      const isPrediction =
        request.metric === "roc-auc"
          ? isNumber
          : (v: unknown): v is number => v === 0 || v === 1 || v === "0" || v === "1";
      const preds = byId(predictions, "id", (r) =>
        field(r, "prediction", isPrediction, request.metric === "roc-auc" ? "a probability" : "a label, 0 or 1"),
      );
      const { pairs, unanswered } = join(preds, new Map([...labels].map(([id, l]) => [id, l.value])), references, "id");
      const report =
        request.metric === "roc-auc"
          ? scoreRocAucItems(pairs.map((p) => ({ probability: Number(p.prediction), positive: p.reference === 1 })))
          : scoreAccuracyItems(pairs.map((p) => ({ prediction: String(p.prediction), label: String(p.reference) })));
      return { ...report, breakdown: { ...report.breakdown, unanswered } };
    }
  }
}
