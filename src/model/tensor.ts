// The one host tensor of the runtime: float32 values, row-major, with their dims. Image features [K,Q,W], visual
// embeddings [B,Q,W] and hidden states travel between stages in this form whatever the package's activation type
// (the manifest's Dtype): widening float16 outputs and narrowing inputs happens only at the ONNX Runtime boundary
// (ort.ts).

export interface Tensor {
  data: Float32Array;
  dims: readonly number[];
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

/** Throws unless the data length matches the dims. */
export function checkTensor(t: Tensor, what: string): void {
  if (t.data.length !== elementCount(t.dims))
    throw new RangeError(`${what}: ${t.data.length} values for dims [${t.dims.join(",")}]`);
}

/**
 * Tensors joined along `axis` (default the first): every other dim must agree. Stacking several prompts' image
 * features, several images' features, or per-step [B,1,W] embeddings into [B,n,W] are all this one operation.
 */
export function concat(parts: readonly Tensor[], axis = 0): Tensor {
  if (parts.length === 0) throw new RangeError("concat of no tensors");
  const rank = parts[0].dims.length;
  if (axis < 0 || axis >= rank) throw new RangeError(`concat axis ${axis} outside a rank-${rank} tensor`);
  parts.forEach((p, i) => {
    checkTensor(p, `concat part ${i}`);
    if (p.dims.length !== rank || p.dims.some((d, k) => k !== axis && d !== parts[0].dims[k])) {
      throw new RangeError(
        `concat part ${i} has dims [${p.dims.join(",")}], part 0 has [${parts[0].dims.join(",")}] (axis ${axis} may differ)`,
      );
    }
  });
  const outer = elementCount(parts[0].dims.slice(0, axis));
  const inner = elementCount(parts[0].dims.slice(axis + 1));
  const total = parts.reduce((n, p) => n + p.dims[axis], 0);
  const data = new Float32Array(outer * total * inner);
  let offset = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const chunk = p.dims[axis] * inner;
      data.set(p.data.subarray(o * chunk, (o + 1) * chunk), offset);
      offset += chunk;
    }
  }
  const dims = [...parts[0].dims];
  dims[axis] = total;
  return { data, dims };
}
