// Image regression (Emu2-Gen, emu/emu.py generate_image; emu2-facts.md): the prompt gets [IMG] appended; at each of
// n steps the final hidden state of the last position goes through project_down to a visual embedding, and
// project_up of that embedding is the next input embedding (no token is sampled). The n embeddings [B,n,W]
// condition the visual decoder.
import type { Features } from "./graphs.js";
import { prefill, type LlmContext } from "./generate.js";

export async function regressImage(ctx: LlmContext, prompts: readonly (readonly number[])[], features: Features | null, imgTokenId: number, steps: number): Promise<Features> {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`regression steps must be a whole number >= 1 (got ${steps})`);
  const batch = prompts.length;
  const { cache, mask: promptMask, last: promptLast } = await prefill(ctx, prompts.map((p) => [...p, imgTokenId]), features);
  let mask = promptMask;
  let last = promptLast;
  const embeddings: Float32Array[] = [];
  try {
    for (let i = 0; i < steps; i++) {
      const visual = await ctx.graphs.projectDown(last, batch);
      embeddings.push(visual);
      if (i + 1 === steps) break;
      const width = visual.length / batch;
      const next = await ctx.graphs.projectUp({ data: visual, dims: [batch, 1, width] });
      mask = mask.map((m) => [...m, 1]);
      last = ctx.graphs.lastRows(await ctx.graphs.decoder(next, mask, cache), batch);
    }
  } finally {
    cache.release();
  }
  const width = embeddings[0].length / batch;
  const data = new Float32Array(batch * steps * width);
  for (let b = 0; b < batch; b++) {
    embeddings.forEach((e, i) => data.set(e.subarray(b * width, (b + 1) * width), (b * steps + i) * width));
  }
  return { data, dims: [batch, steps, width] };
}
