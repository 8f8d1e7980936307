// The prompt options of chat, generate and prompt, declared once: where the prompt comes from (-p or an argument,
// -f, --image) and, for the chat template, --system, --short and --grounding.
import type { Command } from "commander";
import { promptFromFile, sequenceFromText } from "../prompt/parse.js";
import type { PromptInput } from "../prompt/types.js";
import { UsageError } from "../util/errors.js";
import { collect } from "./io.js";

export interface PromptSourceFlags {
  prompt?: string;
  file?: string;
  image?: string[];
  /** chat, prompt (video-options.ts): videos; <video> in the text places them. */
  video?: string[];
}

export interface ChatTemplateFlags {
  system?: string;
  short?: boolean;
  grounding?: boolean;
}

/** -p (unless the command takes the text as an argument, as generate does), -f and --image. */
export function addPromptSourceOptions(command: Command, options: { textOption?: boolean } = {}): Command {
  if (options.textOption ?? true)
    command.option("-p, --prompt <text>", "prompt text; <image> or [<IMG_PLH>] marks where each --image goes");
  return command
    .option("-f, --file <file>", "prompt or conversation file: YAML (docs/prompt-format.md) or text; - for stdin")
    .option("--image <path>", "image (repeatable); <image> in the text places it", collect);
}

export function addChatTemplateOptions(command: Command): Command {
  return command
    .option("--system <text>", "chat: the system message (default: the package's)")
    .option("--short", "chat: the short-answer system message")
    .option("--grounding", "chat: ask for boxes (<grounding>)");
}

/** The prompt the flags name; `text` says how the user gives the text (-p, or an argument). */
export function readPromptInput(flags: PromptSourceFlags, text = "-p <text>"): PromptInput {
  if (flags.prompt !== undefined && flags.file !== undefined)
    throw new UsageError(`give ${text} or -f <file>, not both`);
  if (flags.file !== undefined) return promptFromFile(flags.file, flags.image ?? [], flags.video ?? []);
  if (flags.prompt === undefined && (flags.image ?? []).length === 0 && (flags.video ?? []).length === 0) {
    throw new UsageError(
      `no prompt: give ${text}, --image <file>${flags.video !== undefined ? ", --video <path>" : ""} or -f <file>`,
    );
  }
  return {
    kind: "sequence",
    parts: sequenceFromText(flags.prompt ?? "", flags.image ?? [], process.cwd(), flags.video ?? []),
  };
}
