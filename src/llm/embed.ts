// Prompt embeddings: embed_tokens of the ids, then project_up(image features) written over the <image> rows in the
// order the rows appear (row-major over the batch), as Emu2's LLM does before its decoder (emu2-facts.md).
import { Emu2Error } from "../util/errors.js";
import type { Tensor } from "../model/tensor.js";
import type { LlmGraphs } from "./graphs.js";

/** Flat row indices (b * T + t) of `imageTokenId` in rectangular ids [B,T]. */
export function imageRows(ids: readonly (readonly number[])[], imageTokenId: number): number[] {
  const rows: number[] = [];
  ids.flat().forEach((id, i) => {
    if (id === imageTokenId) rows.push(i);
  });
  return rows;
}

/** Checks that the <image> rows and the features agree: images x n_query rows. */
export function checkImageRows(count: number, features: Tensor | null): void {
  const available = features ? features.dims[0] * features.dims[1] : 0;
  if (count === available) return;
  const supplied = features ? `${features.dims[0]} image(s) x ${features.dims[1]} tokens = ${available} feature rows` : "no image features";
  throw new Emu2Error(`the prompt has ${count} <image> tokens but there are ${supplied}`);
}

/** Writes rows of `projected` [K*Q,H] over `embeds` [B*T,H] at `rows`, in order. */
export function spliceRows(embeds: Float32Array, rows: readonly number[], projected: Float32Array, hidden: number): void {
  rows.forEach((row, k) => embeds.set(projected.subarray(k * hidden, (k + 1) * hidden), row * hidden));
}

/** Embeddings [B,T,H] of rectangular ids with project_up(features) on the <image> rows. */
export async function embedPrompt(graphs: LlmGraphs, ids: readonly (readonly number[])[], features: Tensor | null, imageTokenId: number): Promise<Float32Array> {
  const rows = imageRows(ids, imageTokenId);
  checkImageRows(rows.length, features);
  const embeds = await graphs.embedTokens(ids);
  if (features && rows.length > 0) spliceRows(embeds, rows, await graphs.projectUp(features), graphs.hidden);
  return embeds;
}
