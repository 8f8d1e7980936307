// Task configs (configs/eval/*.yaml): which data, which prompts, which decoding, which clean-up, which metric.
// Validated like the package manifest: an unknown or wrong field stops the run with one line naming it, before
// any model work. A config may `extends:` another (by name or path) and override some of its fields.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { UsageError } from "../util/errors.js";
import { describeSchemaError, describeValue } from "../util/schema.js";
import { readYamlDocument } from "../util/yaml.js";

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CONFIG_DIR = join(PROJECT_ROOT, "configs", "eval");

/** Where a split's data is, relative to the data dir; which fields a format needs is checked below. */
const splitSchema = z.strictObject({
  /** The data file (JSON or JSONL, per format). */
  file: z.string().min(1).optional(),
  /** VQA format: the questions and the annotations files. */
  questions: z.string().min(1).optional(),
  annotations: z.string().min(1).optional(),
  /** class_folder: the folder with one folder per class. */
  dir: z.string().min(1).optional(),
  /** karpathy: which split(s) of the file. */
  split: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** Image path pattern relative to the data dir: {field} or {field:012d} take a record's fields. */
  images: z.string().min(1).optional(),
  /** video_qa: the video path pattern, as images. */
  videos: z.string().min(1).optional(),
});

const FORMAT_FIELDS = {
  vqa: ["questions", "annotations", "images"],
  vizwiz: ["file", "images"],
  textvqa: ["file", "images"],
  karpathy: ["file", "split", "images"],
  hateful_memes: ["file", "images"],
  class_folder: ["dir"],
  jsonl: ["file", "images"],
  /** {id?, video, question, answers} records; a video is a frames folder, a GIF/WebP or an mp4/webm/mov file. */
  video_qa: ["file", "videos"],
} as const;
export type DatasetFormat = keyof typeof FORMAT_FIELDS;

export const TEMPLATE_FIELDS = ["image", "video", "question", "answer", "caption", "text", "class"] as const;

const templateString = z
  .string()
  .min(1)
  .refine((t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => (TEMPLATE_FIELDS as readonly string[]).includes(m[1])), {
    message: `placeholders must be among ${TEMPLATE_FIELDS.map((f) => `{${f}}`).join(", ")}`,
  });

const taskSchema = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().optional(),
    kind: z.enum(["vqa", "captioning", "classification"]),
    format: z.enum(Object.keys(FORMAT_FIELDS) as [DatasetFormat, ...DatasetFormat[]]),
    metric: z.enum(["vqa", "cider", "roc-auc", "accuracy"]),
    eval: splitSchema,
    train: splitSchema,
    shots: z.array(z.number().int().nonnegative()).min(1).default([0, 4, 8, 16]),
    prompt: z.strictObject({
      /** One demonstration, with its answer/caption/class. */
      demo: templateString,
      /** The query after k >= 1 demonstrations. */
      query: templateString,
      /** The query with no demonstrations (default: `query`). */
      zero_shot: templateString.optional(),
      /** Between demonstrations, and between the last one and the query. */
      separator: z.string().default(""),
    }),
    decoding: z
      .strictObject({
        max_new_tokens: z.number().int().positive().optional(),
        min_new_tokens: z.number().int().nonnegative().optional(),
        num_beams: z.number().int().positive().optional(),
        length_penalty: z.number().optional(),
      })
      .default({}),
    /** Clean-up of generated text before scoring. */
    postprocess: z.enum(["emu2_short_answer", "first_line", "none"]).default("none"),
    /** VQA: normalize even when all answers are identical (the official script does not). */
    vqa_always_normalize: z.boolean().default(false),
    /** Classification: the class names, scored as continuations (class_folder: default the folder names). */
    classes: z.array(z.string().min(1)).min(2).optional(),
    /** Binary classification: the class whose probability ROC-AUC ranks. */
    positive_class: z.string().min(1).optional(),
    /** video_qa: frames sampled uniformly from each video (default 8, as --frames). */
    video_frames: z.number().int().positive().optional(),
  })
  .superRefine((t, ctx) => {
    for (const split of ["eval", "train"] as const) {
      for (const need of FORMAT_FIELDS[t.format]) {
        if (t[split][need] === undefined)
          ctx.addIssue({ code: "custom", path: [split, need], message: `required by format ${t.format}` });
      }
    }
    if (t.format === "video_qa" && t.kind !== "vqa")
      ctx.addIssue({ code: "custom", path: ["kind"], message: "format video_qa is a vqa task" });
    if (t.format === "video_qa" && !t.prompt.query.includes("{video}"))
      ctx.addIssue({
        code: "custom",
        path: ["prompt", "query"],
        message: "format video_qa needs {video} in the query",
      });
    const metricKinds = {
      vqa: ["vqa"],
      cider: ["captioning"],
      "roc-auc": ["classification"],
      accuracy: ["classification"],
    } as const;
    if (!(metricKinds[t.metric] as readonly string[]).includes(t.kind)) {
      ctx.addIssue({ code: "custom", path: ["metric"], message: `${t.metric} does not score a ${t.kind} task` });
    }
    if (t.kind === "classification") {
      if (t.classes === undefined && t.format !== "class_folder")
        ctx.addIssue({ code: "custom", path: ["classes"], message: "required by a classification task" });
      if (t.metric === "roc-auc" && t.positive_class === undefined)
        ctx.addIssue({ code: "custom", path: ["positive_class"], message: "required by roc-auc" });
      if (t.positive_class !== undefined && t.classes !== undefined && !t.classes.includes(t.positive_class)) {
        ctx.addIssue({
          code: "custom",
          path: ["positive_class"],
          message: `must be one of classes (${t.classes.join(", ")})`,
        });
      }
      if (t.prompt.query.includes("{class}"))
        ctx.addIssue({
          code: "custom",
          path: ["prompt", "query"],
          message: "the class is scored after the query: it cannot contain {class}",
        });
    }
  });

export type TaskConfig = z.infer<typeof taskSchema>;
export type SplitSpec = z.infer<typeof splitSchema>;

export function validateTaskConfig(raw: unknown, file: string): TaskConfig {
  const result = taskSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new UsageError(`${file}: ${describeSchemaError(result.error, raw)}`);
}

/** A task name (configs/eval/<name>.yaml) or a path to a YAML file. */
export function configPath(nameOrPath: string, relativeTo?: string): string {
  if (/[/\\]|\.ya?ml$/.test(nameOrPath))
    return isAbsolute(nameOrPath) || relativeTo === undefined ? resolve(nameOrPath) : resolve(relativeTo, nameOrPath);
  return join(CONFIG_DIR, `${nameOrPath}.yaml`);
}

function readYaml(file: string): Record<string, unknown> {
  if (!existsSync(file))
    throw new UsageError(
      `${file}: no such task config${file.startsWith(CONFIG_DIR) ? ` (known tasks: ${knownTasks().join(", ")})` : ""}`,
    );
  const { doc } = readYamlDocument(readFileSync(file, "utf8"), file, (message) => new UsageError(message));
  const value = doc.toJS() as unknown;
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new UsageError(`${file}: expected a mapping of task fields`);
  return value as Record<string, unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `override` on top of `base`: mappings merge key by key, anything else replaces. */
function overlay(base: Record<string, unknown>, override: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(override))
    out[k] = isPlainObject(v) && isPlainObject(base[k]) ? overlay(base[k], v) : v;
  return out;
}

function readRaw(file: string, seen: string[]): Record<string, unknown> {
  if (seen.includes(file)) throw new UsageError(`${file}: extends itself (${[...seen, file].join(" -> ")})`);
  const raw = readYaml(file);
  const { extends: parent, ...own } = raw;
  if (parent === undefined) return own;
  if (typeof parent !== "string")
    throw new UsageError(`${file}: field extends: expected a task name or path (found ${describeValue(parent)})`);
  const base = readRaw(configPath(parent, dirname(file)), [...seen, file]);
  // The name of a derived task is its own unless it says otherwise.
  return overlay({ ...base, name: undefined }, own);
}

export function loadTaskConfig(nameOrPath: string): { config: TaskConfig; file: string } {
  const file = configPath(nameOrPath);
  const raw = readRaw(file, []);
  if (raw.name === undefined) raw.name = basename(file).replace(/\.ya?ml$/, "");
  return { config: validateTaskConfig(raw, file), file };
}

export function knownTasks(): string[] {
  if (!existsSync(CONFIG_DIR)) return [];
  return readdirSync(CONFIG_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.replace(/\.yaml$/, ""))
    .sort();
}

/** The data files a task reads, resolved against the data dir; the first missing one stops the run. */
export function checkDataFiles(config: TaskConfig, file: string, dataDir: string): void {
  for (const split of ["eval", "train"] as const) {
    for (const key of ["file", "questions", "annotations", "dir"] as const) {
      const rel = config[split][key];
      if (rel === undefined) continue;
      const path = resolve(dataDir, rel);
      if (!existsSync(path))
        throw new UsageError(
          `${file}: ${split}.${key}: ${path} does not exist (data dir ${dataDir}: --data-dir or $EMU2_DATA)`,
        );
    }
  }
}
