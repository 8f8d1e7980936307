// Templates: an interleaved prompt -> text in which every image is the package's placeholder, plus the list of
// images in the order their placeholders appear. The formats follow the official code: plain concatenation for
// Emu2 and Emu2-Gen (emu/emu.py, the generation pipeline), the demo's ConvMeta.format_chat for Emu2-Chat.
import type { Manifest } from "../model/manifest.js";
import { PromptError } from "../util/errors.js";
import {
  ASSISTANT,
  EOS_TOKEN,
  GROUNDING,
  OBJECT_END,
  OBJECT_START,
  PHRASE_END,
  PHRASE_START,
  USER,
  VIDEO_TOKEN,
} from "./tokens.js";
import type { Box, Conversation, ImageSource, Part, PromptInput, VideoSource } from "./types.js";

export type TemplateName = Manifest["prompt"]["template"];

/** An image the encoder must see: a user's image, or a box mask drawn for grounded generation. */
export type ImageSlot = { kind: "image"; image: ImageSource } | { kind: "box-mask"; box: Box };

/** A video of the prompt and how many of its frames were sampled (one video placeholder each). */
export interface VideoSlot {
  video: VideoSource;
  frames: number;
}

export interface RenderedPrompt {
  template: TemplateName;
  /** The prompt text with one placeholder per image and per video frame (bos is added by the tokenizer, not here). */
  text: string;
  images: ImageSlot[];
  videos: VideoSlot[];
}

export interface TemplateTokens {
  placeholder: string;
  systemMessage?: string;
  /** How many frames each video contributes (sampled before rendering); required when the prompt has videos. */
  videoFrames?: (video: VideoSource) => number;
}

/**
 * Emu2's video markup (docs/prompt-format.md, "Video"): `[VIDEO]` is written, then one placeholder per frame, which
 * becomes `[IMG]` + video_n_query x `[gIMG]` + `[/IMG]`; the end of a video leaves no token in the text.
 */
export const VIDEO_PLACEHOLDER = "[<VID_PLH>]";

interface Slots {
  images: ImageSlot[];
  videos: VideoSlot[];
}

function renderParts(parts: Part[], tokens: TemplateTokens, slots: Slots, template: TemplateName): string {
  const placeholder = tokens.placeholder;
  const images = slots.images;
  let text = "";
  for (const part of parts) {
    if (part.kind === "text") {
      text += part.text;
    } else if (part.kind === "image") {
      text += placeholder;
      images.push({ kind: "image", image: part.image });
    } else if (part.kind === "video") {
      if (!tokens.videoFrames)
        throw new PromptError(`${part.video.path}: the video's frames must be sampled before the prompt is rendered`);
      const frames = tokens.videoFrames(part.video);
      text += VIDEO_TOKEN + VIDEO_PLACEHOLDER.repeat(frames);
      slots.videos.push({ video: part.video, frames });
    } else {
      if (template !== "gen") {
        throw new PromptError(
          `grounded objects (phrase + box) are a generation prompt feature; the ${template} template cannot use them`,
        );
      }
      if (part.phrase !== undefined) text += PHRASE_START + part.phrase + PHRASE_END;
      text += OBJECT_START + placeholder + OBJECT_END;
      images.push({ kind: "box-mask", box: part.box });
      if (part.image) {
        text += placeholder;
        images.push({ kind: "image", image: part.image });
      }
    }
  }
  return text;
}

function renderChat(conversation: Conversation, tokens: TemplateTokens, slots: Slots): string {
  if (conversation.messages.length === 0) throw new PromptError("the conversation has no messages");
  if (conversation.messages[0].role !== "user") throw new PromptError("a conversation must start with a user message");
  const last = conversation.messages[conversation.messages.length - 1];
  if (last.role !== "user") throw new PromptError("the last message must be the user's: the assistant answers it");
  let text = conversation.system ?? tokens.systemMessage ?? "";
  let previous: Conversation["messages"][number]["role"] | undefined;
  for (const message of conversation.messages) {
    if (message.role !== previous) {
      if (previous === undefined) text += ` ${USER}: `;
      else if (previous === "assistant") text += `${EOS_TOKEN}${USER}: `;
      else text += ` ${ASSISTANT}: `;
      previous = message.role;
    }
    text += renderParts(message.parts, tokens, slots, "chat");
  }
  text += ` ${ASSISTANT}:`;
  if (conversation.grounding) text += GROUNDING;
  return text;
}

export function renderPrompt(input: PromptInput, template: TemplateName, tokens: TemplateTokens): RenderedPrompt {
  const slots: Slots = { images: [], videos: [] };
  if (template === "chat") {
    const conversation: Conversation =
      input.kind === "conversation" ? input.conversation : { messages: [{ role: "user", parts: input.parts }] };
    return { template, text: renderChat(conversation, tokens, slots), ...slots };
  }
  if (input.kind === "conversation") {
    const { messages } = input.conversation;
    if (messages.length !== 1 || messages[0].role !== "user") {
      throw new PromptError(
        `the ${template} template takes one interleaved prompt, not a conversation; use a chat package`,
      );
    }
    input = { kind: "sequence", parts: messages[0].parts };
  }
  let text = renderParts(input.parts, tokens, slots, template);
  if (template === "gen" && input.parts.some((p) => p.kind === "object")) text = GROUNDING + text;
  return { template, text, ...slots };
}

export function templateTokens(
  manifest: Manifest,
  options: { shortAnswers?: boolean; system?: string; videoFrames?: (video: VideoSource) => number } = {},
): TemplateTokens {
  const system =
    options.system ??
    (options.shortAnswers ? manifest.prompt.short_system_message : undefined) ??
    manifest.prompt.system_message;
  return { placeholder: manifest.prompt.image_placeholder, systemMessage: system, videoFrames: options.videoFrames };
}

/** The video parts of a prompt, in order (conversations: every message). */
export function videoParts(input: PromptInput): VideoSource[] {
  const parts = input.kind === "sequence" ? input.parts : input.conversation.messages.flatMap((m) => m.parts);
  return parts.flatMap((p) => (p.kind === "video" ? [p.video] : []));
}
