// Visual tokens from the encoder's last hidden state, as the official code pools them (emu/emu.py): drop CLS,
// view the N patch tokens as a sqrt(N) x sqrt(N) grid of W channels, average-pool with kernel = stride =
// sqrt(N) / sqrt(Q), flatten the pooled grid row-major -> [B,Q,W] (docs/package-format.md, "Pooling").

/** lastHiddenState [B,1+N,W] (CLS first) -> pooled features [B,Q,W], Q = nQuery. */
export function poolVisualFeatures(
  lastHiddenState: Float32Array,
  dims: readonly [number, number, number],
  nQuery: number,
): { data: Float32Array; dims: [number, number, number] } {
  const [batch, tokens, width] = dims;
  if (lastHiddenState.length !== batch * tokens * width) {
    throw new RangeError(
      `last_hidden_state has ${lastHiddenState.length} values, dims [${dims.join(",")}] need ${batch * tokens * width}`,
    );
  }
  const grid = Math.round(Math.sqrt(tokens - 1));
  const side = Math.round(Math.sqrt(nQuery));
  if (grid * grid !== tokens - 1) throw new RangeError(`${tokens - 1} patch tokens (after CLS) are not a square grid`);
  if (side * side !== nQuery || side < 1 || grid % side !== 0) {
    throw new RangeError(`n_query ${nQuery} must be a square whose side divides the ${grid}x${grid} patch grid`);
  }
  const kernel = grid / side;
  const out = new Float32Array(batch * nQuery * width);
  // Sum in float64, divide once: torch's float32 avg_pool2d accumulates in float32, so results agree to ~1e-7.
  const acc = new Float64Array(width);
  const area = kernel * kernel;
  for (let b = 0; b < batch; b++) {
    const patches = (b * tokens + 1) * width; // skip CLS
    for (let qy = 0; qy < side; qy++) {
      for (let qx = 0; qx < side; qx++) {
        acc.fill(0);
        for (let dy = 0; dy < kernel; dy++) {
          for (let dx = 0; dx < kernel; dx++) {
            const p = patches + ((qy * kernel + dy) * grid + qx * kernel + dx) * width;
            for (let c = 0; c < width; c++) acc[c] += lastHiddenState[p + c];
          }
        }
        const o = ((b * side + qy) * side + qx) * width;
        for (let c = 0; c < width; c++) out[o + c] = acc[c] / area;
      }
    }
  }
  return { data: out, dims: [batch, nQuery, width] };
}
