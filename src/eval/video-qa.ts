// A generic video question-answering task (MSVD-QA / MSRVTT-QA style) for few-shot evaluation: a JSON list or JSONL
// file of {id?, video, question, answers}, video paths relative to the file (a folder of frames, a GIF, a WebP or an
// mp4/webm/mov file, as --video takes them). Scored with the VQA score (metrics/vqa.ts) after Emu2's short-answer
// clean-up. Example: fixtures/datasets/video-qa/clips.jsonl.
import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Part, PromptInput } from "../prompt/types.js";
import { DataError, field, isId, isObject, isString, isStringList, readRecords } from "./json-files.js";

export interface VideoQaItem {
  /** The record's id, or its line/item number when it has none. */
  id: string | number;
  /** Absolute path of the video. */
  video: string;
  question: string;
  answers: string[];
}

/** Reads a video-QA file; a bad record or a missing video stops with one line naming the file, line and field. */
export function readVideoQa(file: string): VideoQaItem[] {
  const base = dirname(resolve(file));
  return readRecords(file).map((record, i) => {
    const video = resolve(base, field(record, "video", isString, "a video path (relative to the file)"));
    try {
      statSync(video);
    } catch {
      throw new DataError(`${record.where}: video: ${video}: no such file or folder`);
    }
    const hasId = isObject(record.value) && record.value.id !== undefined;
    return {
      id: hasId ? field(record, "id", isId, "a string or a number") : i + 1,
      video,
      question: field(record, "question", isString, "text"),
      answers: field(record, "answers", isStringList, "a non-empty list of answers (text)"),
    };
  });
}

/**
 * The paper's k-shot VQA prompt with the image replaced by the video (emu2-facts.md, Prompts):
 * `[video] based on the video, [question] short answer: [answer]. ` per demonstration, then the query without
 * its answer; with no demonstrations, `[video] based on the video, answer in one word or phrase. [question] short
 * answer:`. The first answer of a demonstration is the one shown.
 */
export function videoQaPrompt(query: VideoQaItem, demos: readonly VideoQaItem[] = []): PromptInput {
  const parts: Part[] = [];
  for (const demo of demos) {
    parts.push({ kind: "video", video: { path: demo.video } }, { kind: "text", text: ` based on the video, ${demo.question} short answer: ${demo.answers[0]}. ` });
  }
  const instruction = demos.length === 0 ? " based on the video, answer in one word or phrase. " : " based on the video, ";
  parts.push({ kind: "video", video: { path: query.video } }, { kind: "text", text: `${instruction}${query.question} short answer:` });
  return { kind: "sequence", parts };
}
