// Caption results as text, TSV or JSONL, on stdout or in a file that a later run resumes: each finished image is
// written as one whole line as soon as it is done, so an interrupted run keeps everything it finished.
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeSync } from "node:fs";
import { extname } from "node:path";
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

const oneLine = (text: string) => text.replace(/[\r\n\t]+/g, " ").trim();

export function formatRecord(record: CaptionRecord, format: CaptionFormat): string {
  switch (format) {
    case "jsonl": return `${JSON.stringify(record)}\n`;
    case "tsv": return `${oneLine(record.image)}\t${oneLine(record.caption)}\n`;
    case "text": return `${oneLine(record.caption)}\n`;
  }
}

/**
 * What an existing output already holds. JSONL and TSV are keyed by image path, so images that failed before are
 * tried again. Text has no key: line i belongs to image i (a failed image leaves an empty line), so the first
 * `lines` images are done.
 */
export function readDone(path: string, format: CaptionFormat): { images: Set<string>; lines: number } {
  const images = new Set<string>();
  if (!existsSync(path)) return { images, lines: 0 };
  let text = readFileSync(path, "utf8");
  // A line cut short by a kill has no newline: drop it so it is redone rather than kept half-written.
  const end = text.lastIndexOf("\n") + 1;
  if (end < text.length) {
    truncateSync(path, Buffer.byteLength(text.slice(0, end)));
    text = text.slice(0, end);
  }
  const lines = text.split("\n").slice(0, -1);
  lines.forEach((line, i) => {
    if (format === "jsonl") {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new Emu2Error(`${path}: line ${i + 1} is not JSON: cannot resume (is it a ${format} file?)`);
      }
      const image = (record as { image?: unknown }).image;
      if (typeof image !== "string") throw new Emu2Error(`${path}: line ${i + 1} has no "image" field: cannot resume`);
      images.add(image);
    } else if (format === "tsv") {
      const tab = line.indexOf("\t");
      if (tab < 0) throw new Emu2Error(`${path}: line ${i + 1} has no tab: cannot resume a TSV output from it`);
      images.add(line.slice(0, tab));
    }
  });
  return { images, lines: lines.length };
}

export class CaptionSink {
  private readonly fd: number;
  private readonly ownsFd: boolean;

  constructor(readonly path: string | undefined, readonly format: CaptionFormat) {
    if (path && path !== "-") {
      this.fd = openSync(path, "a");
      this.ownsFd = true;
    } else {
      this.fd = 1;
      this.ownsFd = false;
    }
  }

  write(record: CaptionRecord): void {
    writeSync(this.fd, formatRecord(record, this.format));
  }

  /** Keeps line i = image i in text files: a failed image gets an empty line. */
  writeFailure(): void {
    if (this.format === "text" && this.ownsFd) writeSync(this.fd, "\n");
  }

  close(): void {
    if (this.ownsFd) closeSync(this.fd);
  }
}
