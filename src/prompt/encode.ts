// A rendered prompt -> the token ids the LLM reads: image placeholders expanded to [IMG] + n_query x <image> +
// [/IMG], video frame placeholders to [IMG] + video_n_query x [gIMG] + [/IMG], bos added, and the checks that a
// prompt fits the package (image and frame counts, video support, context length).
import type { Manifest } from "../model/manifest.js";
import { Emu2Tokenizer } from "../tokenizer/tokenizer.js";
import { PackageError, PromptError } from "../util/errors.js";
import { VIDEO_PLACEHOLDER, type RenderedPrompt } from "./render.js";
import { FRAME_TOKEN, frameTokenSpan, IMAGE_TOKEN, VIDEO_TOKEN } from "./tokens.js";

export interface EncodedPrompt extends RenderedPrompt {
  ids: number[];
  nQuery: number;
  /** Tokens per video frame (the package's video_n_query); present when the prompt has videos. */
  videoNQuery?: number;
}

/** video_n_query of a package that takes video, or a one-line error saying why it does not. */
export function videoNQuery(manifest: Manifest): number {
  const missing = [VIDEO_TOKEN, FRAME_TOKEN].filter((t) => manifest.tokenizer.special_tokens[t] === undefined);
  if (manifest.vision.video_n_query === undefined || missing.length > 0) {
    const why =
      manifest.vision.video_n_query === undefined
        ? "its manifest has no vision.video_n_query"
        : `its tokenizer has no ${missing.join(" or ")} token`;
    throw new PackageError(`package ${manifest.name} has no video support (${why}): use an Emu2 or Emu2-Chat package`);
  }
  return manifest.vision.video_n_query;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function encodePrompt(
  rendered: RenderedPrompt,
  tokenizer: Emu2Tokenizer,
  manifest: Manifest,
  options: { reserveTokens?: number } = {},
): EncodedPrompt {
  const nQuery = manifest.vision.n_query;
  const placeholder = manifest.prompt.image_placeholder;
  const placeholders = rendered.text.split(placeholder).length - 1;
  if (placeholders !== rendered.images.length) {
    throw new PromptError(
      `the prompt has ${plural(placeholders, "image placeholder")} but ${plural(rendered.images.length, "image")}`,
    );
  }
  const frames = rendered.videos.reduce((n, v) => n + v.frames, 0);
  const frameSlots = rendered.text.split(VIDEO_PLACEHOLDER).length - 1;
  if (frameSlots !== frames)
    throw new PromptError(
      `the prompt has ${plural(frameSlots, "video frame placeholder")} but ${plural(frames, "video frame")}`,
    );
  const vQuery = rendered.videos.length > 0 ? videoNQuery(manifest) : undefined;
  let text = Emu2Tokenizer.expandImagePlaceholders(rendered.text, nQuery, placeholder);
  if (vQuery !== undefined) text = text.split(VIDEO_PLACEHOLDER).join(frameTokenSpan(vQuery));
  const ids = tokenizer.encode(text);
  const tokens = manifest.tokenizer.special_tokens;
  const imageTokens = ids.filter((id) => id === tokens[IMAGE_TOKEN]).length;
  if (imageTokens !== rendered.images.length * nQuery) {
    // <image> typed in the text itself would be spliced with features that do not exist.
    throw new PromptError(
      `the prompt text contains ${imageTokens - rendered.images.length * nQuery} stray <image> token(s); use ${placeholder} or --image to add images`,
    );
  }
  const frameTokenId = tokens[FRAME_TOKEN];
  const frameTokens = frameTokenId === undefined ? 0 : ids.filter((id) => id === frameTokenId).length;
  if (frameTokens !== frames * (vQuery ?? 0)) {
    throw new PromptError(
      `the prompt text contains ${frameTokens - frames * (vQuery ?? 0)} stray ${FRAME_TOKEN} token(s); use --video or a video: part to add videos`,
    );
  }
  const context = manifest.llm.max_position_embeddings;
  const needed = ids.length + (options.reserveTokens ?? 0);
  if (needed > context) {
    const per = `each image takes ${nQuery + 2}${vQuery !== undefined ? `, each video frame ${vQuery + 2}` : ""}`;
    throw new PromptError(
      `the prompt is ${ids.length} tokens${options.reserveTokens ? ` + ${options.reserveTokens} to generate` : ""}, more than the model's context of ${context} tokens (${per})`,
    );
  }
  return { ...rendered, ids, nQuery, ...(vQuery !== undefined ? { videoNQuery: vQuery } : {}) };
}
