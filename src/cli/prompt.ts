// emu2 prompt: shows what a prompt becomes for a package - the text with placeholders, the token ids, the images.
import { isAbsolute, relative } from "node:path";
import type { Command } from "commander";
import { encodePrompt } from "../prompt/encode.js";
import { renderPrompt, templateTokens, type ImageSlot, type TemplateName } from "../prompt/render.js";
import { describeSource } from "../prompt/types.js";
import { Emu2Tokenizer } from "../tokenizer/tokenizer.js";
import { UsageError } from "../util/errors.js";
import { makeReporter, writeJson } from "./io.js";
import { addChatTemplateOptions, addPromptSourceOptions, readPromptInput, type ChatTemplateFlags, type PromptSourceFlags } from "./prompt-options.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";

interface PromptFlags extends ModelOptions, PromptSourceFlags, ChatTemplateFlags {
  template?: TemplateName;
  json?: boolean;
  quiet?: boolean;
}

/** A path under the current folder is shown relative to it, as the user would type it. */
function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : path;
}

export function describeSlot(slot: ImageSlot): string {
  if (slot.kind === "box-mask") return `box mask [${slot.box.join(", ")}]`;
  return "path" in slot.image ? shownPath(slot.image.path) : describeSource(slot.image);
}

export function registerPrompt(program: Command): void {
  const command = program
    .command("prompt")
    .description("show what a prompt becomes: text with placeholders, token ids and image slots")
    .option("--template <name>", "base, chat or gen (default: the package's)")
    .option("--json", "print JSON")
    .option("-q, --quiet", "no notices on stderr");
  addModelOptions(addChatTemplateOptions(addPromptSourceOptions(command))).action((flags: PromptFlags) => {
    const reporter = makeReporter(flags);
    const pkg = openModel(flags, reporter, flags.template === "chat" ? "chat" : "default");
    const template = flags.template ?? pkg.manifest.prompt.template;
    if (!["base", "chat", "gen"].includes(template)) throw new UsageError(`--template: expected base, chat or gen, got ${JSON.stringify(template)}`);
    let input = readPromptInput(flags);
    if (flags.grounding) {
      input = input.kind === "conversation"
        ? { kind: "conversation", conversation: { ...input.conversation, grounding: true } }
        : { kind: "conversation", conversation: { grounding: true, messages: [{ role: "user", parts: input.parts }] } };
    }
    const rendered = renderPrompt(input, template, templateTokens(pkg.manifest, { system: flags.system, shortAnswers: flags.short }));
    const tokenizer = Emu2Tokenizer.fromFile(pkg.path(pkg.manifest.tokenizer.file), pkg.manifest.tokenizer);
    const encoded = encodePrompt(rendered, tokenizer, pkg.manifest);
    const images = encoded.images.map((slot, index) => ({ index, kind: slot.kind, source: describeSlot(slot) }));
    if (flags.json) {
      writeJson({ model: pkg.name, template, text: encoded.text, ids: encoded.ids, tokens: encoded.ids.length, nQuery: encoded.nQuery, images });
      return;
    }
    const lines = [
      `template  ${template} (${pkg.name})`,
      `text      ${JSON.stringify(encoded.text)}`,
      `tokens    ${encoded.ids.length} (${images.length} image${images.length === 1 ? "" : "s"} x ${encoded.nQuery + 2})`,
      `ids       ${encoded.ids.join(" ")}`,
      ...images.map((img) => `image ${img.index}   ${img.source}`),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  });
}
