// The one YAML reader of manifests, prompt files and --demos files: a syntax error or a misplaced value is reported
// as one line naming the file, the line and the column.
import { LineCounter, parseDocument, type Document } from "yaml";

export interface YamlDocument {
  doc: Document.Parsed;
  /** "line L, column C" of a node of this document, or "" if it has no position. */
  where(node: unknown): string;
}

export function readYamlDocument(text: string, file: string, makeError: (message: string) => Error): YamlDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const where = e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "unknown position";
    throw makeError(
      `${file}: YAML error at ${where}: ${e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}`,
    );
  }
  return {
    doc,
    where(node) {
      const range = (node as { range?: [number, number, number] } | null)?.range;
      if (!range) return "";
      const { line, col } = lines.linePos(range[0]);
      return `line ${line}, column ${col}`;
    },
  };
}
