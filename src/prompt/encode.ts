// A rendered prompt -> the token ids the LLM reads: placeholders expanded to [IMG] + n_query x <image> + [/IMG],
// bos added, and the checks that a prompt fits the package (image count, context length).
import type { Manifest } from "../model/manifest.js";
import { Emu2Tokenizer } from "../tokenizer/tokenizer.js";
import { PromptError } from "../util/errors.js";
import type { RenderedPrompt } from "./render.js";

export interface EncodedPrompt extends RenderedPrompt {
  ids: number[];
  nQuery: number;
}

export function encodePrompt(rendered: RenderedPrompt, tokenizer: Emu2Tokenizer, manifest: Manifest, options: { reserveTokens?: number } = {}): EncodedPrompt {
  const nQuery = manifest.vision.n_query;
  const placeholder = manifest.prompt.image_placeholder;
  const placeholders = rendered.text.split(placeholder).length - 1;
  if (placeholders !== rendered.images.length) {
    throw new PromptError(`the prompt has ${placeholders} image placeholder${placeholders === 1 ? "" : "s"} but ${rendered.images.length} image${rendered.images.length === 1 ? "" : "s"}`);
  }
  const ids = tokenizer.encode(Emu2Tokenizer.expandImagePlaceholders(rendered.text, nQuery, placeholder));
  const imageTokenId = manifest.tokenizer.special_tokens["<image>"];
  const imageTokens = ids.filter((id) => id === imageTokenId).length;
  if (imageTokens !== rendered.images.length * nQuery) {
    // <image> typed in the text itself would be spliced with features that do not exist.
    throw new PromptError(`the prompt text contains ${imageTokens - rendered.images.length * nQuery} stray <image> token(s); use ${placeholder} or --image to add images`);
  }
  const context = manifest.llm.max_position_embeddings;
  const needed = ids.length + (options.reserveTokens ?? 0);
  if (needed > context) {
    throw new PromptError(`the prompt is ${ids.length} tokens${options.reserveTokens ? ` + ${options.reserveTokens} to generate` : ""}, more than the model's context of ${context} tokens (each image takes ${nQuery + 2})`);
  }
  return { ...rendered, ids, nQuery };
}
