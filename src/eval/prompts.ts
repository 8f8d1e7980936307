// Few-shot prompts from a task's templates: demonstrations (each with its answer, caption or class) joined by the
// separator, then the query. Templates are plain text with {image} (or {video}) where the record's image (video)
// goes and {question}, {text}, {answer}, {caption}, {class} filled from the record (configs/eval/*.yaml).
import type { Part, PromptInput } from "../prompt/types.js";
import type { Sample } from "./datasets.js";
import { DataError } from "./json-files.js";
import { emu2ShortAnswer } from "./metrics/vqa.js";
import type { TaskConfig } from "./task-config.js";

function fill(template: string, sample: Sample, values: Record<string, string | undefined>): Part[] {
  const parts: Part[] = [];
  const pieces = template.split(/(\{image\}|\{video\})/);
  pieces.forEach((piece, i) => {
    if (i % 2 === 1) {
      if (piece === "{image}") parts.push({ kind: "image", image: { path: sample.image } });
      else if (sample.video !== undefined) parts.push({ kind: "video", video: { path: sample.video } });
      else throw new DataError(`${sample.where}: the prompt template needs {video}, which this record does not have`);
      return;
    }
    const text = piece.replace(/\{(\w+)\}/g, (_, name: string) => {
      const v = values[name];
      if (v === undefined)
        throw new DataError(`${sample.where}: the prompt template needs {${name}}, which this record does not have`);
      return v;
    });
    if (text.length > 0) parts.push({ kind: "text", text });
  });
  return parts;
}

function recordValues(sample: Sample): Record<string, string | undefined> {
  return {
    question: sample.question,
    text: sample.text,
    answer: sample.answer,
    caption: sample.captions?.[0],
    class: sample.label,
  };
}

/** The prompt for a query after its demonstrations (none: the zero-shot template). */
export function buildPrompt(config: TaskConfig, query: Sample, demos: readonly Sample[]): PromptInput {
  const parts: Part[] = [];
  for (const demo of demos) {
    parts.push(...fill(config.prompt.demo, demo, recordValues(demo)));
    if (config.prompt.separator) parts.push({ kind: "text", text: config.prompt.separator });
  }
  const template = demos.length === 0 ? (config.prompt.zero_shot ?? config.prompt.query) : config.prompt.query;
  parts.push(
    ...fill(template, query, { ...recordValues(query), answer: undefined, caption: undefined, class: undefined }),
  );
  return { kind: "sequence", parts };
}

/** The answer that is scored, from the generated text. */
export function cleanPrediction(config: TaskConfig, raw: string): string {
  switch (config.postprocess) {
    case "emu2_short_answer":
      return emu2ShortAnswer(raw);
    case "first_line":
      return raw.split("\n")[0].trim();
    case "none":
      return raw.trim();
  }
}
