// The output directory of a run: results.json (rewritten atomically as the run goes) and one predictions JSONL per
// task, shot count and seed (appended one record at a time). A run killed at any point, SIGKILL included, leaves at
// most a torn last line, which resuming cuts off; everything before it is kept.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { UsageError } from "../util/errors.js";
import { DataError, isObject } from "./json-files.js";

export interface PredictionRecord {
  id: string;
  /** Position of the sample in the task's evaluation list (after --limit): the order of the final files. */
  index: number;
  demos: string[];
  raw?: string;
  prediction?: string;
  references?: string[];
  answer_type?: string;
  question_type?: string;
  label?: string;
  class_scores?: Record<string, number>;
  probability?: number;
  positive?: boolean;
  /** Per sample: the VQA accuracy in [0,1], or 1/0 for a right/wrong class (CIDEr has none: it is corpus-level). */
  score?: number;
  /** Why the sample could not be run (then no prediction). */
  skipped?: string;
}

export const RESULTS_FILE = "results.json";

export function predictionsFile(dir: string, task: string, shots: number, seed: number): string {
  return join(dir, "predictions", `${task}_${shots}shot_seed${seed}.jsonl`);
}

/** Writes JSON to a temporary file and renames it over the target (never a half-written results.json). */
export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

export function readResults(dir: string): Record<string, unknown> | null {
  const file = join(dir, RESULTS_FILE);
  if (!existsSync(file)) return null;
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as unknown;
    if (!isObject(value)) throw new Error("not an object");
    return value;
  } catch (err) {
    throw new UsageError(`${file}: not a results file of emu2 fewshot-eval (${(err as Error).message})`);
  }
}

/** The records of a predictions file; a torn last line (a killed write) is cut off the file. */
export function readPredictions(file: string): PredictionRecord[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  if (end < text.length) truncateSync(file, Buffer.byteLength(text.slice(0, end)));
  const out: PredictionRecord[] = [];
  text
    .slice(0, end)
    .split("\n")
    .forEach((line, i) => {
      if (line === "") return;
      try {
        out.push(JSON.parse(line) as PredictionRecord);
      } catch {
        throw new DataError(`${file}: line ${i + 1}: not valid JSON: the predictions file is damaged`);
      }
    });
  return out;
}

export class PredictionWriter {
  private readonly fd: number;
  constructor(file: string) {
    mkdirSync(join(file, ".."), { recursive: true });
    this.fd = openSync(file, "a");
  }
  write(record: PredictionRecord): void {
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Stable JSON (sorted keys) for comparing run identities. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    isObject(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, v[k]]),
        )
      : v,
  );
}

/** The first top-level key under which two identities differ, for the refusal message. */
export function firstDifference(a: Record<string, unknown>, b: Record<string, unknown>): string | null {
  for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (canonical(a[key]) !== canonical(b[key])) {
      if (isObject(a[key]) && isObject(b[key])) {
        const inner = firstDifference(a[key], b[key]);
        return inner ? `${key}.${inner}` : key;
      }
      return key;
    }
  }
  return null;
}
