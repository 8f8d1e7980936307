// Emu2's special-token texts and its image placeholder, spelled as the official code spells them (emu/constants.py
// of baaivision/Emu): the one module of the runtime that writes them. The ids come from each package's manifest.

export const IMAGE_PLACEHOLDER = "[<IMG_PLH>]";
export const IMAGE_TOKEN = "<image>";
export const IMG_START = "[IMG]";
export const IMG_END = "[/IMG]";
export const PAD_TOKEN = "[PAD]";
export const UNK_TOKEN = "<unk>";
export const BOS_TOKEN = "<s>";
export const EOS_TOKEN = "</s>";
export const GROUNDING = "<grounding>";
export const PHRASE_START = "<phrase>";
export const PHRASE_END = "</phrase>";
export const OBJECT_START = "<object>";
export const OBJECT_END = "</object>";
export const USER = "[USER]";
export const ASSISTANT = "[ASSISTANT]";
/** Written ahead of a video's frames (emu/chat.py); the end of a video writes nothing. */
export const VIDEO_TOKEN = "[VIDEO]";
/** The token whose rows take a video frame's features (emu/emu.py borrows [gIMG] for it: docs/prompt-format.md). */
export const FRAME_TOKEN = "[gIMG]";

/** What one image placeholder becomes in the token stream: [IMG] + nQuery x <image> + [/IMG]. */
export function imageTokenSpan(nQuery: number): string {
  return `${IMG_START}${IMAGE_TOKEN.repeat(nQuery)}${IMG_END}`;
}

/** What one video frame placeholder becomes: [IMG] + vQuery x [gIMG] + [/IMG]. */
export function frameTokenSpan(vQuery: number): string {
  return `${IMG_START}${FRAME_TOKEN.repeat(vQuery)}${IMG_END}`;
}

/** The added tokens every template's renderer may write; the chat template adds [USER] and [ASSISTANT]. */
export const TEMPLATE_TOKENS: Record<"base" | "chat" | "gen", string[]> = (() => {
  const common = [
    PAD_TOKEN,
    IMG_START,
    IMG_END,
    IMAGE_TOKEN,
    GROUNDING,
    PHRASE_START,
    PHRASE_END,
    OBJECT_START,
    OBJECT_END,
  ];
  return { base: common, gen: common, chat: [...common, USER, ASSISTANT] };
})();
