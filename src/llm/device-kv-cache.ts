// The KV cache kept on the GPU (WebGPU): the decoder session returns its presents as device buffers
// (GraphOptions.deviceOutputs), and they are fed back as the next step's past without visiting host memory. Beam
// reordering/expansion and dropped rows are one Gather per entry along the batch axis, run on the same WebGPU
// device by a small graph built here (model/onnx-writer.ts); its outputs stay on the device too. Nothing of the
// cache ever comes back to the host: only the decoder's last_hidden_state does, for lm_head.
import { writeOnnxModel } from "../model/onnx-writer.js";
import { int64Tensor, zeros, type OrtFeeds, type OrtTensor, type Session } from "../model/ort.js";
import { entryNames, KvCacheEntries, type KvCache, type KvCacheFactory, type KvCacheShape } from "./kv-cache.js";

/** The decoder outputs a device cache keeps on the device: those of layers first .. first + layers - 1. */
export function presentNames(layers: number, first = 0): string[] {
  return entryNames(first + layers)
    .slice(2 * first)
    .map((n) => `present.${n}`);
}

/** The row-selection graph's outputs, kept on the device too. */
export function selectedNames(layers: number, first = 0): string[] {
  return entryNames(layers, first).map((n) => `selected.${n}`);
}

/** The row-selection graph: selected.{i}.{key,value} = Gather(past_key_values.{i}.{key,value}, rows, axis 0). */
export function rowSelectionGraph(shape: KvCacheShape): Uint8Array {
  const names = entryNames(shape.layers, shape.firstLayer);
  const dims = (batch: string) => [batch, shape.heads, "past", shape.headDim];
  return writeOnnxModel({
    name: "kv_cache_select_rows",
    opset: 17,
    inputs: [
      { name: "rows", type: "int64", dims: ["rows"] },
      ...names.map((n) => ({ name: `past_key_values.${n}`, type: shape.dtype, dims: dims("batch") })),
    ],
    outputs: selectedNames(shape.layers, shape.firstLayer).map((name) => ({
      name,
      type: shape.dtype,
      dims: dims("rows"),
    })),
    nodes: names.map((n) => ({
      op: "Gather",
      inputs: [`past_key_values.${n}`, "rows"],
      outputs: [`selected.${n}`],
      ints: { axis: 0 },
    })),
  });
}

/** Counts the caches holding each device buffer (a fork shares its parent's); the last one out frees it. */
class DeviceBuffers {
  private readonly holders = new Map<OrtTensor, number>();

  hold(t: OrtTensor): OrtTensor {
    this.holders.set(t, (this.holders.get(t) ?? 0) + 1);
    return t;
  }

  drop(t: OrtTensor): void {
    const n = (this.holders.get(t) ?? 1) - 1;
    if (n > 0) {
      this.holders.set(t, n);
      return;
    }
    this.holders.delete(t);
    if (t.location === "gpu-buffer") t.dispose();
  }
}

export class DeviceKvCache extends KvCacheEntries implements KvCache {
  private constructor(
    private readonly shape: KvCacheShape,
    private readonly selectSession: Session,
    private readonly buffers: DeviceBuffers,
    names: string[],
    tensors: Map<string, OrtTensor>,
  ) {
    super(names, tensors);
  }

  /**
   * A factory of empty caches. `selectSession` is a WebGPU session of rowSelectionGraph(shape) whose outputs stay
   * on the device; the decoder's session must keep presentNames(layers) on the same device.
   */
  static factory(shape: KvCacheShape, selectSession: Session): KvCacheFactory {
    const buffers = new DeviceBuffers();
    const names = entryNames(shape.layers, shape.firstLayer);
    return async (batch) => {
      const tensors = new Map<string, OrtTensor>();
      for (const n of names) tensors.set(n, buffers.hold(zeros(shape.dtype, [batch, shape.heads, 0, shape.headDim])));
      return new DeviceKvCache(shape, selectSession, buffers, names, tensors);
    };
  }

  outputsToFetch(outputs: readonly string[]): readonly string[] {
    // The presents stay on the device and become the next past as they are: no rows to append.
    return this.names.map((n) => `present.${n}`).filter((name) => outputs.includes(name));
  }

  absorb(outputs: OrtFeeds): void {
    for (const n of this.names) {
      const present = outputs[`present.${n}`];
      if (!present) throw new Error(`the decoder returned no present.${n}`);
      if (present.location !== "gpu-buffer")
        throw new Error(
          `present.${n} came back to host memory: the decoder session does not keep its presents on the device`,
        );
    }
    for (const n of this.names) this.replace(n, outputs[`present.${n}`]);
  }

  private replace(name: string, next: OrtTensor): void {
    const old = this.entry(name);
    this.tensors.set(name, this.buffers.hold(next));
    this.buffers.drop(old);
  }

  async select(rows: readonly number[]): Promise<void> {
    this.checkRows(rows);
    if (this.length === 0) {
      // Nothing on the device yet: the empty past only changes its batch size.
      for (const n of this.names)
        this.replace(n, zeros(this.shape.dtype, [rows.length, this.shape.heads, 0, this.shape.headDim]));
      return;
    }
    const out = await this.selectSession.run({ rows: int64Tensor(rows, [rows.length]), ...this.feeds() });
    for (const n of this.names) {
      const selected = out[`selected.${n}`];
      if (selected.location !== "gpu-buffer")
        throw new Error(
          `selected.${n} came back to host memory: the row-selection session does not keep its outputs on the device`,
        );
      this.replace(n, selected);
    }
  }

  fork(): DeviceKvCache {
    // Buffers are never written in place (absorb and select replace them), so the fork shares them.
    for (const t of this.tensors.values()) this.buffers.hold(t);
    return new DeviceKvCache(this.shape, this.selectSession, this.buffers, this.names, new Map(this.tensors));
  }

  release(): void {
    for (const t of this.tensors.values()) this.buffers.drop(t);
    this.tensors.clear();
  }
}
