// The interleaved prompt: what a user says to Emu2, before any template or tokenizer touches it.

/** Where an image comes from: a file (resolved to an absolute path) or bytes already in memory. */
export type ImageSource = { path: string } | { bytes: Buffer; label: string };

/** Where a video comes from: a folder of frames, an animated GIF or WebP, or a video file (absolute path). */
export interface VideoSource {
  path: string;
}

/** A box in the pixel space of the 448x448 mask canvas: [left, top, right, bottom] (Emu2's grounded generation). */
export type Box = [number, number, number, number];

export type Part =
  | { kind: "text"; text: string }
  | { kind: "image"; image: ImageSource }
  /** A video: `[VIDEO]`, then its sampled frames, each an image slot of video_n_query `[gIMG]` tokens. */
  | { kind: "video"; video: VideoSource }
  /** Grounded generation: an optional phrase, a box drawn as a mask image, and an optional subject image. */
  | { kind: "object"; phrase?: string; box: Box; image?: ImageSource };

export type Role = "user" | "assistant";

export interface Message {
  role: Role;
  parts: Part[];
}

/** A chat: the system message (undefined = the package's default) and the messages so far. */
export interface Conversation {
  system?: string;
  /** Ask Emu2-Chat for boxes: `<grounding>` after the last `[ASSISTANT]:`. */
  grounding?: boolean;
  messages: Message[];
}

/** What a prompt file or the command line describes: a plain interleaved sequence or a conversation. */
export type PromptInput = { kind: "sequence"; parts: Part[] } | { kind: "conversation"; conversation: Conversation };

export function describeSource(source: ImageSource): string {
  return "path" in source ? source.path : source.label;
}
