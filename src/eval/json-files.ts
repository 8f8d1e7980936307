// Reading the JSON and JSONL files of datasets and predictions, with errors that name the file and the line or item.
import { readFileSync } from "node:fs";
import { Emu2Error, errorMessage } from "../util/errors.js";

/** A file that cannot be read or parsed: one line naming it (exit code 1). */
export class DataError extends Emu2Error {
  constructor(message: string) {
    super(message, 1);
    this.name = "DataError";
  }
}

export function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataError(
      `${file}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a folder, expected a file" : errorMessage(err)}`,
    );
  }
}

export function readJson(file: string): unknown {
  const text = readText(file);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DataError(`${file}: not valid JSON (${errorMessage(err)})`);
  }
}

/** One record of a JSONL file or of a JSON list: the value and where it is, for messages ("line 3", "item 3"). */
export interface Located<T = unknown> {
  value: T;
  where: string;
}

/** Each non-empty line of a JSONL file; a line that does not parse becomes an error entry, the rest still come. */
export function readJsonLines(file: string, text = readText(file)): (Located | { error: string })[] {
  const out: (Located | { error: string })[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      out.push({ value: JSON.parse(line), where: `${file}: line ${i + 1}` });
    } catch (err) {
      out.push({ error: `${file}: line ${i + 1}: not valid JSON (${errorMessage(err).split("\n")[0]})` });
    }
  });
  return out;
}

/** A JSON list or a JSONL file (told apart by whether the whole text parses as one JSON list); bad lines throw. */
export function readRecords(file: string): Located[] {
  const text = readText(file);
  const trimmed = text.trimStart();
  if (trimmed.startsWith("[")) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new DataError(`${file}: not valid JSON (${errorMessage(err)})`);
    }
    return (doc as unknown[]).map((value, i) => ({ value, where: `${file}: item ${i + 1}` }));
  }
  return readJsonLines(file, text).map((r) => {
    if ("error" in r) throw new DataError(r.error);
    return r;
  });
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A field of a record, checked: `expected` names the type in the message. */
export function field<T>(record: Located, name: string, check: (v: unknown) => v is T, expected: string): T {
  const v = isObject(record.value) ? record.value[name] : undefined;
  if (!isObject(record.value)) throw new DataError(`${record.where}: expected an object`);
  if (!check(v))
    throw new DataError(
      `${record.where}: ${name}: expected ${expected}${v === undefined ? " (missing)" : `, got ${JSON.stringify(v)}`}`,
    );
  return v;
}

export const isString = (v: unknown): v is string => typeof v === "string";
export const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
export const isId = (v: unknown): v is string | number =>
  typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
export const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every(isString);
