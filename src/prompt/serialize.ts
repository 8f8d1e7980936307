// Writes prompts back in the YAML prompt format (docs/prompt-format.md), so a saved chat replays with `emu2 chat -f`.
import { dirname, relative, resolve } from "node:path";
import { stringify } from "yaml";
import { PromptError } from "../util/errors.js";
import type { Conversation, ImageSource, Part } from "./types.js";

function imagePath(source: ImageSource, baseDir: string): string {
  if (!("path" in source))
    throw new PromptError(`image ${source.label} exists only in memory and cannot be saved in a prompt file`);
  return relative(baseDir, source.path) || source.path;
}

function partToYaml(part: Part, baseDir: string): unknown {
  switch (part.kind) {
    case "text":
      return part.text;
    case "image":
      return { image: imagePath(part.image, baseDir) };
    case "video":
      return { video: relative(baseDir, part.video.path) || part.video.path };
    case "object": {
      const out: Record<string, unknown> = {};
      if (part.phrase !== undefined) out.phrase = part.phrase;
      out.box = [...part.box];
      if (part.image) out.image = imagePath(part.image, baseDir);
      return out;
    }
  }
}

/** The conversation as YAML whose image paths are relative to `yamlFile`'s folder. */
export function conversationToYaml(conversation: Conversation, yamlFile: string): string {
  const baseDir = dirname(resolve(yamlFile));
  const doc: Record<string, unknown> = {};
  if (conversation.system !== undefined) doc.system = conversation.system;
  if (conversation.grounding) doc.grounding = true;
  doc.messages = conversation.messages.map((m) => ({
    [m.role]:
      m.parts.length === 1 && m.parts[0].kind === "text" ? m.parts[0].text : m.parts.map((p) => partToYaml(p, baseDir)),
  }));
  return stringify(doc, { lineWidth: 0 });
}
