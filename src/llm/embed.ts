// Prompt embeddings: embed_tokens of the ids, then project_up(image features) written over the <image> rows in the
// order the rows appear (row-major over the batch), as Emu2's LLM does before its decoder (emu/emu.py of baaivision/Emu). Video
// frames take the [gIMG] rows the same way, from their own stream (docs/prompt-format.md, "Video"); the two streams
// are merged into one list of feature rows in row order (mergeFeatureRows), so one project_up call serves both.
import { Emu2Error } from "../util/errors.js";
import type { Tensor } from "../model/tensor.js";
import { FRAME_TOKEN, IMAGE_TOKEN } from "../prompt/tokens.js";
import type { LlmGraphs } from "./graphs.js";

/** Flat row indices (b * T + t) of `imageTokenId` (and `frameTokenId`) in rectangular ids [B,T]. */
export function imageRows(ids: readonly (readonly number[])[], imageTokenId: number, frameTokenId?: number): number[] {
  const rows: number[] = [];
  ids.flat().forEach((id, i) => {
    if (id === imageTokenId || (frameTokenId !== undefined && id === frameTokenId)) rows.push(i);
  });
  return rows;
}

/**
 * One prompt's feature rows [1,R,W] for its <image> and [gIMG] rows in the order they appear in `ids`: the k-th
 * <image> row takes the k-th row of `images` [K,Q,W] (flattened), the k-th [gIMG] row the k-th row of `frames`
 * [F,Qv,W], as the official code fills each token's rows from its own stream.
 */
export function mergeFeatureRows(
  ids: readonly number[],
  imageTokenId: number,
  images: Tensor | null,
  frameTokenId: number,
  frames: Tensor | null,
): Tensor {
  const width = (images ?? frames)?.dims[2] ?? 0;
  const streams = new Map([
    [imageTokenId, { data: images?.data, next: 0 }],
    [frameTokenId, { data: frames?.data, next: 0 }],
  ]);
  const rows = ids.filter((id) => streams.has(id)).length;
  const out = new Float32Array(rows * width);
  let r = 0;
  for (const id of ids) {
    const stream = streams.get(id);
    if (!stream) continue;
    const start = stream.next * width;
    if (!stream.data || start + width > stream.data.length) {
      throw new Emu2Error(
        `the prompt has more ${id === imageTokenId ? IMAGE_TOKEN : FRAME_TOKEN} tokens than feature rows for them`,
      );
    }
    out.set(stream.data.subarray(start, start + width), r++ * width);
    stream.next++;
  }
  for (const [id, stream] of streams) {
    if (stream.data && stream.next * width !== stream.data.length) {
      throw new Emu2Error(
        `the prompt has fewer ${id === imageTokenId ? IMAGE_TOKEN : FRAME_TOKEN} tokens than feature rows for them`,
      );
    }
  }
  return { data: out, dims: [1, rows, width] };
}

/** Checks that the <image> rows and the features agree: images x n_query rows. */
export function checkImageRows(count: number, features: Tensor | null): void {
  const available = features ? features.dims[0] * features.dims[1] : 0;
  if (count === available) return;
  const supplied = features
    ? `${features.dims[0]} image(s) x ${features.dims[1]} tokens = ${available} feature rows`
    : "no image features";
  throw new Emu2Error(`the prompt has ${count} <image> tokens but there are ${supplied}`);
}

/** Writes rows of `projected` [K*Q,H] over `embeds` [B*T,H] at `rows`, in order. */
export function spliceRows(
  embeds: Float32Array,
  rows: readonly number[],
  projected: Float32Array,
  hidden: number,
): void {
  rows.forEach((row, k) => embeds.set(projected.subarray(k * hidden, (k + 1) * hidden), row * hidden));
}

/** Embeddings [B,T,H] of rectangular ids with project_up(features) on the <image> (and [gIMG]) rows. */
export async function embedPrompt(
  graphs: LlmGraphs,
  ids: readonly (readonly number[])[],
  features: Tensor | null,
  imageTokenId: number,
  frameTokenId?: number,
): Promise<Float32Array> {
  const rows = imageRows(ids, imageTokenId, frameTokenId);
  checkImageRows(rows.length, features);
  const embeds = await graphs.embedTokens(ids);
  if (features && rows.length > 0) spliceRows(embeds, rows, await graphs.projectUp(features), graphs.hidden);
  return embeds;
}
