// The supported dataset formats -> one list of samples per split (the official VQA, COCO Karpathy and Hateful Memes files; README "Few-shot evaluation").
// A record that cannot be used (malformed, no answers, image missing) is skipped with the file and line or item
// that holds it; the run goes on and results.json counts it.
import { existsSync, readdirSync, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { DataError, isObject, readJson, readJsonLines, readRecords, type Located } from "./json-files.js";
import type { SplitSpec, TaskConfig } from "./task-config.js";

export interface Sample {
  /** Unique within its split; demonstrations and shards depend on it, never on the order of the file. */
  id: string;
  /** Absolute image path (video_qa: the video's path, so ids, demonstrations and checks work alike). */
  image: string;
  /** video_qa: absolute path of the video. */
  video?: string;
  question?: string;
  /** Text that goes with the image (Hateful Memes' caption text). */
  text?: string;
  /** VQA: the ground-truth answers (usually 10). */
  answers?: string[];
  /** VQA: the answer a demonstration shows (multiple_choice_answer, else the most common answer). */
  answer?: string;
  answerType?: string;
  questionType?: string;
  /** Captioning: the reference captions. */
  captions?: string[];
  /** Classification: the class name. */
  label?: string;
  /** Where the record is ("file: line 3"), for messages. */
  where: string;
}

export interface Skipped {
  where: string;
  reason: string;
}

export interface LoadedSplit {
  samples: Sample[];
  skipped: Skipped[];
}

const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]);

/** Fills {field} and {field:012d} from a record. */
export function fillPattern(pattern: string, record: Record<string, unknown>, where: string): string {
  return pattern.replace(/\{(\w+)(?::0(\d+)d)?\}/g, (_, name: string, width?: string) => {
    const v = record[name];
    if (typeof v !== "string" && typeof v !== "number")
      throw new DataError(`${where}: ${name}: needed by the image pattern ${pattern}, missing`);
    return width ? String(v).padStart(Number(width), "0") : String(v);
  });
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0];
  for (const v of values) if ((counts.get(v) ?? 0) > (counts.get(best) ?? 0)) best = v;
  return best;
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const idOf = (v: unknown): string | undefined =>
  typeof v === "string" || (typeof v === "number" && Number.isFinite(v)) ? String(v) : undefined;

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new DataError(what);
  return value;
}

function answerTexts(list: unknown, where: string): string[] {
  if (!Array.isArray(list) || list.length === 0) throw new DataError(`${where}: a question without answers`);
  return list.map((a, i) => {
    const text = typeof a === "string" ? a : isObject(a) ? str(a.answer) : undefined;
    return need(text, `${where}: answers[${i}]: expected a string or {answer: text}`);
  });
}

function listField(file: string, doc: unknown, name: string): Located[] {
  if (Array.isArray(doc) && name === "") return doc.map((value, i) => ({ value, where: `${file}: item ${i + 1}` }));
  if (!isObject(doc) || !Array.isArray(doc[name]))
    throw new DataError(`${file}: expected an object with a "${name}" list`);
  return (doc[name] as unknown[]).map((value, i) => ({ value, where: `${file}: ${name}[${i}]` }));
}

type Reader = (
  spec: SplitSpec,
  dataDir: string,
  config: TaskConfig,
) => { records: (Located | { error: string })[]; toSample: (r: Located) => Omit<Sample, "where"> };

const image = (spec: SplitSpec, dataDir: string, record: Record<string, unknown>, where: string) =>
  resolve(dataDir, fillPattern(spec.images!, record, where));

/** video_qa: {id?, video, question, answers}; the video path pattern (spec.videos) takes the record's fields. */
const videoQa: Reader = (spec, dataDir) => {
  const file = resolve(dataDir, spec.file!);
  return {
    records: readRecords(file),
    toSample: (r) => {
      if (!isObject(r.value)) throw new DataError(`${r.where}: expected an object`);
      const x = r.value;
      const video = resolve(dataDir, fillPattern(spec.videos!, x, r.where));
      const answers = answerTexts(x.answers, r.where);
      return {
        id: idOf(x.id) ?? r.where.replace(/^.*: (line|item) /, ""),
        image: video,
        video,
        question: need(str(x.question), `${r.where}: question: expected text`),
        answers,
        answer: str(x.answer) ?? mostCommon(answers),
      };
    },
  };
};

const READERS: Record<TaskConfig["format"], Reader> = {
  vqa: (spec, dataDir) => {
    const questionsFile = resolve(dataDir, spec.questions!);
    const annotationsFile = resolve(dataDir, spec.annotations!);
    const annotations = new Map<string, Located>();
    for (const a of listField(annotationsFile, readJson(annotationsFile), "annotations")) {
      const id = isObject(a.value) ? idOf(a.value.question_id) : undefined;
      if (id !== undefined) annotations.set(id, a);
    }
    return {
      records: listField(questionsFile, readJson(questionsFile), "questions"),
      toSample: (r) => {
        const q = r.value as Record<string, unknown>;
        const id = need(idOf(q.question_id), `${r.where}: question_id: expected an id`);
        const a = annotations.get(id);
        if (!a || !isObject(a.value))
          throw new DataError(
            `${r.where}: question ${id} has no annotation in ${annotationsFile} (a question without answers)`,
          );
        const answers = answerTexts(a.value.answers, a.where);
        return {
          id,
          image: image(spec, dataDir, q, r.where),
          question: need(str(q.question), `${r.where}: question: expected text`),
          answers,
          answer: str(a.value.multiple_choice_answer) ?? mostCommon(answers),
          answerType: str(a.value.answer_type),
          questionType: str(a.value.question_type),
        };
      },
    };
  },
  vizwiz: (spec, dataDir) => {
    const file = resolve(dataDir, spec.file!);
    return {
      records: listField(file, readJson(file), ""),
      toSample: (r) => {
        const q = r.value as Record<string, unknown>;
        const answers = answerTexts(q.answers, r.where);
        return {
          id: need(str(q.image), `${r.where}: image: expected a file name`),
          image: image(spec, dataDir, q, r.where),
          question: need(str(q.question), `${r.where}: question: expected text`),
          answers,
          answer: mostCommon(answers),
          answerType: str(q.answer_type),
        };
      },
    };
  },
  textvqa: (spec, dataDir) => {
    const file = resolve(dataDir, spec.file!);
    return {
      records: listField(file, readJson(file), "data"),
      toSample: (r) => {
        const q = r.value as Record<string, unknown>;
        const answers = answerTexts(q.answers, r.where);
        return {
          id: need(idOf(q.question_id), `${r.where}: question_id: expected an id`),
          image: image(spec, dataDir, q, r.where),
          question: need(str(q.question), `${r.where}: question: expected text`),
          answers,
          answer: mostCommon(answers),
        };
      },
    };
  },
  karpathy: (spec, dataDir) => {
    const file = resolve(dataDir, spec.file!);
    const splits = new Set(Array.isArray(spec.split) ? spec.split : [spec.split!]);
    const records = listField(file, readJson(file), "images").filter(
      (r) => !isObject(r.value) || splits.has(str(r.value.split) ?? ""),
    );
    return {
      records,
      toSample: (r) => {
        const im = r.value as Record<string, unknown>;
        const sentences = im.sentences;
        if (!Array.isArray(sentences) || sentences.length === 0)
          throw new DataError(`${r.where}: an image without captions (sentences)`);
        const captions = sentences.map((s, i) =>
          need(isObject(s) ? str(s.raw) : undefined, `${r.where}: sentences[${i}].raw: expected text`),
        );
        return {
          id: need(idOf(im.cocoid) ?? idOf(im.imgid) ?? str(im.filename), `${r.where}: no cocoid, imgid or filename`),
          image: image(spec, dataDir, { filepath: "", ...im }, r.where),
          captions,
        };
      },
    };
  },
  hateful_memes: (spec, dataDir, config) => {
    const file = resolve(dataDir, spec.file!);
    return {
      records: readJsonLines(file),
      toSample: (r) => {
        const m = r.value as Record<string, unknown>;
        if (m.label !== 0 && m.label !== 1)
          throw new DataError(`${r.where}: label: expected 0 or 1${m.label === undefined ? " (missing)" : ""}`);
        return {
          id: need(idOf(m.id), `${r.where}: id: expected an id`),
          image: image(spec, dataDir, m, r.where),
          text: need(str(m.text), `${r.where}: text: expected text`),
          label: config.classes![m.label],
        };
      },
    };
  },
  class_folder: (spec, dataDir) => {
    const dir = resolve(dataDir, spec.dir!);
    const records: Located[] = [];
    for (const cls of readdirSync(dir).sort()) {
      if (!statSync(join(dir, cls)).isDirectory()) continue;
      for (const f of readdirSync(join(dir, cls)).sort()) {
        if (IMAGE_EXTENSIONS.has(extname(f).toLowerCase()))
          records.push({ value: { cls, f }, where: join(dir, cls, f) });
      }
    }
    return {
      records,
      toSample: (r) => {
        const { cls, f } = r.value as { cls: string; f: string };
        return { id: `${cls}/${f}`, image: join(dir, cls, f), label: cls };
      },
    };
  },
  jsonl: (spec, dataDir, config) => {
    const file = resolve(dataDir, spec.file!);
    return {
      records: readRecords(file),
      toSample: (r) => {
        if (!isObject(r.value)) throw new DataError(`${r.where}: expected an object`);
        const x = r.value;
        const lineId = r.where.replace(/^.*: (line|item) /, "");
        const sample: Omit<Sample, "where"> = {
          id: idOf(x.id) ?? lineId,
          image: image(spec, dataDir, x, r.where),
          question: str(x.question),
          text: str(x.text),
        };
        if (config.kind === "vqa") {
          sample.answers = answerTexts(x.answers, r.where);
          sample.answer = str(x.answer) ?? mostCommon(sample.answers);
          sample.answerType = str(x.answer_type);
        } else if (config.kind === "captioning") {
          if (!Array.isArray(x.captions) || x.captions.length === 0 || !x.captions.every((c) => typeof c === "string"))
            throw new DataError(`${r.where}: captions: expected a list of captions`);
          sample.captions = x.captions as string[];
        } else {
          const label = idOf(x.label);
          if (label === undefined) throw new DataError(`${r.where}: label: expected a class name`);
          sample.label = label;
        }
        return sample;
      },
    };
  },
  video_qa: videoQa,
};

/** The samples of one split: data file order, ids unique, every image present. */
export function loadSplit(config: TaskConfig, split: "eval" | "train", dataDir: string): LoadedSplit {
  const { records, toSample } = READERS[config.format](config[split], dataDir, config);
  const samples: Sample[] = [];
  const skipped: Skipped[] = [];
  const seen = new Map<string, string>();
  const classes = config.classes;
  for (const record of records) {
    if ("error" in record) {
      skipped.push({
        where: record.error.replace(/: not valid JSON.*$/, ""),
        reason: record.error.slice(record.error.indexOf("not valid JSON")),
      });
      continue;
    }
    try {
      const sample = { ...toSample(record), where: record.where };
      if (seen.has(sample.id))
        throw new DataError(`${record.where}: id ${sample.id} appears twice (also at ${seen.get(sample.id)})`);
      if (!existsSync(sample.image))
        throw new DataError(
          `${record.where}: ${sample.video !== undefined ? "video" : "image"} ${sample.image}: no such file`,
        );
      if (sample.label !== undefined && classes !== undefined && !classes.includes(sample.label)) {
        throw new DataError(
          `${record.where}: label ${JSON.stringify(sample.label)} is not one of the classes (${classes.join(", ")})`,
        );
      }
      seen.set(sample.id, record.where);
      samples.push(sample);
    } catch (err) {
      if (!(err instanceof DataError)) throw err;
      const message = err.message;
      const cut = message.startsWith(record.where) ? record.where.length + 2 : 0;
      skipped.push({ where: record.where, reason: message.slice(cut) });
    }
  }
  return { samples, skipped };
}

/** The classes of a classification task: the config's, else (class_folder) the folder names of both splits. */
export function taskClasses(config: TaskConfig, evalSplit: LoadedSplit, trainSplit: LoadedSplit): string[] {
  if (config.classes) return config.classes;
  return [...new Set([...evalSplit.samples, ...trainSplit.samples].map((s) => s.label!))].sort();
}
