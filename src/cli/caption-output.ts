// Caption results as text, TSV or JSONL, on stdout or in a file that a later run resumes: each finished image is
// written as one whole line as soon as it is done, so an interrupted run keeps everything it finished.
//
// Resuming is by identity: a JSONL or TSV file written with -o names each image by its resolved real path, so a rerun
// from another folder, through a symlink or with the folder typed differently skips exactly the images that are in
// the file. An image that moved (or was renamed) since is a new image to it and is captioned again; its old line
// stays. Plain text names no image, so an existing text output is never resumed (use JSONL or TSV for that).
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  realpathSync,
  statSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { dirname, extname, isAbsolute, resolve } from "node:path";
import { Emu2Error } from "../util/errors.js";

export type CaptionFormat = "text" | "tsv" | "jsonl";

export interface CaptionRecord {
  image: string;
  caption: string;
}

export function formatFromPath(path: string | undefined): CaptionFormat | undefined {
  if (!path || path === "-") return undefined;
  const ext = extname(path).toLowerCase();
  return ext === ".jsonl" || ext === ".ndjson" ? "jsonl" : ext === ".tsv" ? "tsv" : undefined;
}

/** An image's identity: its resolved real path (symlinks and `.`/`..` resolved), or its absolute path if it is gone. */
export function imageKey(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

const oneLine = (text: string) => text.replace(/[\r\n\t]+/g, " ").trim();

export function formatRecord(record: CaptionRecord, format: CaptionFormat): string {
  switch (format) {
    case "jsonl":
      return `${JSON.stringify(record)}\n`;
    case "tsv":
      return `${oneLine(record.image)}\t${oneLine(record.caption)}\n`;
    case "text":
      return `${oneLine(record.caption)}\n`;
  }
}

/**
 * The images an existing JSONL or TSV output already holds, by identity (imageKey). Relative paths in the file are
 * read relative to the file's folder. Only successful captions are ever written, so every image found is done. A
 * last line cut short by a kill is not counted (the writer drops it before appending).
 */
export function readDone(path: string, format: CaptionFormat): Set<string> {
  const images = new Set<string>();
  if (!existsSync(path)) return images;
  const text = readFileSync(path, "utf8");
  if (format === "text") {
    if (text.length === 0) return images;
    throw new Emu2Error(
      `${path}: a text output cannot be resumed (its lines do not say which image they belong to): remove it, or write --format jsonl or tsv, which resume`,
    );
  }
  const lines = text
    .slice(0, text.lastIndexOf("\n") + 1)
    .split("\n")
    .slice(0, -1);
  const base = dirname(path);
  lines.forEach((line, i) => {
    let image: unknown;
    if (format === "jsonl") {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new Emu2Error(`${path}: line ${i + 1} is not JSON: cannot resume (is it a ${format} file?)`);
      }
      image = (record as { image?: unknown }).image;
      if (typeof image !== "string") throw new Emu2Error(`${path}: line ${i + 1} has no "image" field: cannot resume`);
    } else {
      const tab = line.indexOf("\t");
      if (tab < 0) throw new Emu2Error(`${path}: line ${i + 1} has no tab: cannot resume a TSV output from it`);
      image = line.slice(0, tab);
    }
    const recorded = image as string;
    images.add(imageKey(isAbsolute(recorded) ? recorded : resolve(base, recorded)));
  });
  return images;
}

/** Opens an output for appending, first dropping a last line that a killed run left without its newline. */
function openForAppend(path: string): number {
  if (existsSync(path) && statSync(path).size > 0) {
    const bytes = readFileSync(path);
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end < bytes.length) truncateSync(path, end);
  }
  return openSync(path, "a");
}

/**
 * Where captions go. A file is opened on the first caption, so a run that stops before any (a broken package, an
 * interruption) leaves the output exactly as it was. In a file the image is recorded by identity (imageKey); on
 * stdout it is shown as given.
 */
export class CaptionSink {
  private fd: number | undefined;
  /** Captions written by this run. */
  written = 0;

  constructor(
    readonly path: string | undefined,
    readonly format: CaptionFormat,
  ) {}

  private get toFile(): boolean {
    return this.path !== undefined && this.path !== "-";
  }

  write(record: CaptionRecord): void {
    if (this.toFile) {
      this.fd ??= openForAppend(this.path as string);
      writeSync(this.fd, formatRecord({ image: imageKey(record.image), caption: record.caption }, this.format));
    } else {
      process.stdout.write(formatRecord(record, this.format));
    }
    this.written++;
  }

  /** A text file keeps line i = image i of its run: a failed image gets an empty line (text files are never resumed). */
  writeFailure(): void {
    if (this.format !== "text" || !this.toFile) return;
    this.fd ??= openForAppend(this.path as string);
    writeSync(this.fd, "\n");
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
