// Image regression (Emu2-Gen, emu/emu.py generate_image): the prompt gets [IMG] appended; at each of
// n steps the final hidden state of the last position goes through project_down to a visual embedding, and
// project_up of that embedding is the next input embedding (no token is sampled). The n embeddings [B,n,W]
// condition the visual decoder.
import { concat, type Tensor } from "../model/tensor.js";
import { prefill, type LlmContext } from "./generate.js";

/** Image features [K,Q,W] (or null) -> visual embeddings [B,steps,W]. */
export async function regressImage(
  ctx: LlmContext,
  prompts: readonly (readonly number[])[],
  features: Tensor | null,
  imgTokenId: number,
  steps: number,
): Promise<Tensor> {
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`regression steps must be a whole number >= 1 (got ${steps})`);
  const batch = prompts.length;
  const {
    cache,
    mask: promptMask,
    last: promptLast,
  } = await prefill(
    ctx,
    prompts.map((p) => [...p, imgTokenId]),
    features,
    steps - 1,
  );
  let mask = promptMask;
  let last = promptLast;
  const embeddings: Tensor[] = [];
  try {
    for (let i = 0; i < steps; i++) {
      const visual = await ctx.graphs.projectDown(last, batch);
      embeddings.push({ data: visual, dims: [batch, 1, visual.length / batch] });
      if (i + 1 === steps) break;
      const next = await ctx.graphs.projectUp(embeddings[i]);
      mask = mask.map((m) => [...m, 1]);
      last = ctx.graphs.lastRows(await ctx.graphs.decoder(next, mask, cache), batch);
    }
  } finally {
    cache.release();
  }
  return concat(embeddings, 1);
}
