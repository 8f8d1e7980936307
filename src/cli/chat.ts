// emu2 chat: Emu2-Chat conversations. One-shot with -p/--image or -f, piped stdin as one prompt, or an interactive
// session when stdin is a terminal and no prompt is given.
import type { Command } from "commander";
import { Emu2 } from "../emu2.js";
import { promptFromFile } from "../prompt/parse.js";
import type { Conversation, PromptInput } from "../prompt/types.js";
import { UsageError } from "../util/errors.js";
import { runChatRepl } from "./chat-repl.js";
import { addGenerationOptions, resolveGenerationSettings, type GenerationFlags } from "./generation-options.js";
import { EXIT_OK } from "./exit-codes.js";
import { interruptible, Interrupted } from "./interrupt.js";
import { makeReporter, writeJson } from "./io.js";
import {
  addChatTemplateOptions,
  addPromptSourceOptions,
  readPromptInput,
  type ChatTemplateFlags,
  type PromptSourceFlags,
} from "./prompt-options.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";
import { spinner } from "./progress.js";
import { addVideoOptions, parseFrames, type VideoFlags } from "./video-options.js";

interface ChatFlags extends ModelOptions, GenerationFlags, PromptSourceFlags, ChatTemplateFlags, VideoFlags {
  interactive?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

function asConversation(input: PromptInput, flags: ChatFlags): Conversation {
  const conversation: Conversation =
    input.kind === "conversation" ? { ...input.conversation } : { messages: [{ role: "user", parts: input.parts }] };
  if (flags.system !== undefined) conversation.system = flags.system;
  if (flags.grounding) conversation.grounding = true;
  return conversation;
}

export function registerChat(program: Command): void {
  const command = program
    .command("chat")
    .description("chat with Emu2-Chat: one question (-p, -f, piped stdin) or an interactive session")
    .option("-i, --interactive", "continue the conversation of -f interactively")
    .option("--json", "print the answer as JSON")
    .option("-q, --quiet", "no notices or progress on stderr")
    .option("-v, --verbose", "details on stderr");
  addGenerationOptions(
    addModelOptions(addChatTemplateOptions(addVideoOptions(addPromptSourceOptions(command)))),
  ).action(async (flags: ChatFlags) => {
    const reporter = makeReporter(flags);
    const frames = parseFrames(flags);
    if (flags.interactive && process.stdin.isTTY !== true)
      throw new UsageError("--interactive needs a terminal on standard input");
    const interactive =
      flags.interactive === true ||
      (flags.prompt === undefined && flags.file === undefined && process.stdin.isTTY === true);
    // Without -p or -f: the terminal session, or else the prompt piped on standard input.
    let input: PromptInput | undefined;
    if (flags.prompt !== undefined || flags.file !== undefined) input = readPromptInput(flags);
    else if (!interactive) input = promptFromFile("-", flags.image ?? [], flags.video ?? []);
    if (interactive && input && input.kind === "sequence")
      throw new UsageError("--interactive continues a conversation file (messages:), not a single prompt");
    if (input && input.kind === "sequence" && input.parts.length === 0) throw new UsageError("the prompt is empty");

    const pkg = openModel(flags, reporter);
    const settings = resolveGenerationSettings(flags, pkg.manifest.generation);
    if (pkg.manifest.prompt.template !== "chat") {
      reporter.notice(
        `emu2: ${pkg.name} is not a chat model (template ${pkg.manifest.prompt.template}); answering with its own template`,
      );
    }
    const model = new Emu2(pkg);
    const textOptions = {
      system: flags.system,
      shortAnswers: flags.short,
      frames,
      onNotice: (message: string) => reporter.notice(message),
    };

    try {
      if (interactive) {
        const start: Conversation = input ? asConversation(input, flags) : { messages: [] };
        if (flags.file !== undefined) {
          const turns = start.messages.filter((m) => m.role === "user").length;
          process.stderr.write(
            `emu2 chat: loaded ${start.messages.length} message${start.messages.length === 1 ? "" : "s"} (${turns} turn${turns === 1 ? "" : "s"}) from ${flags.file}\n`,
          );
        }
        if (flags.system !== undefined) start.system = flags.system;
        if (flags.grounding) start.grounding = true;
        const code = await runChatRepl(
          {
            reply: async (conversation, onText, signal) => {
              const [result] = await model.generateText([{ kind: "conversation", conversation }], settings, {
                ...textOptions,
                signal,
                onText: (_, delta) => onText(delta),
              });
              return result.text;
            },
          },
          { input: process.stdin, output: process.stdout, messages: process.stderr },
          start,
        );
        if (code !== EXIT_OK) throw new Interrupted();
        return;
      }
      if (!input) throw new UsageError("no prompt: give -p, -f, or pipe one on standard input");
      const conversation = asConversation(input, flags);
      // A saved conversation ends with the assistant's answer: replaying it answers the last user message again.
      while (
        conversation.messages.length > 0 &&
        conversation.messages[conversation.messages.length - 1].role === "assistant"
      ) {
        conversation.messages = conversation.messages.slice(0, -1);
      }
      const stream = !flags.json && process.stdout.isTTY === true;
      const wait = stream ? undefined : spinner(reporter, `${model.pkg.name}: thinking`);
      let result;
      try {
        [result] = await interruptible((signal) =>
          model.generateText([{ kind: "conversation", conversation }], settings, {
            ...textOptions,
            signal,
            onText: stream ? (_, delta) => process.stdout.write(delta) : undefined,
          }),
        );
      } finally {
        wait?.stop();
      }
      if (flags.json)
        writeJson({
          model: model.pkg.name,
          text: result.text.trim(),
          tokens: result.ids.length,
          stopReason: result.stopReason,
        });
      else process.stdout.write(stream ? "\n" : `${result.text.trim()}\n`);
      if (result.stopReason === "aborted") throw new Interrupted();
    } finally {
      await model.release();
    }
  });
}
