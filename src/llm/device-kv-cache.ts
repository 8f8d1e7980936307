// The KV cache kept on the GPU (WebGPU): the decoder session returns this run's keys and values (new_key_values)
// as device buffers (GraphOptions.deviceOutputs), a small graph built here (model/onnx-writer.ts) appends them to the
// past on the same device, and the result is fed back as the next step's past without visiting host memory. A
// decoder exported before new_key_values had presents, the past and new rows together, which become the next past
// as they are. Beam reordering/expansion and dropped rows are one Gather per entry along the batch axis, run by
// another built graph; its outputs stay on the device too. Nothing of the cache ever comes back to the host: only
// the decoder's last_hidden_state does, for lm_head.
import { writeOnnxModel } from "../model/onnx-writer.js";
import { int64Tensor, zeros, type OrtFeeds, type OrtTensor, type Session } from "../model/ort.js";
import { entryNames, KvCacheEntries, type KvCache, type KvCacheFactory, type KvCacheShape } from "./kv-cache.js";

/** The decoder's present outputs of layers first .. first + layers - 1 (a decoder exported before new_key_values). */
export function presentNames(layers: number, first = 0): string[] {
  return entryNames(layers, first).map((n) => `present.${n}`);
}

/** The decoder's new_key_values outputs (this run's rows) of layers first .. first + layers - 1. */
export function newRowNames(layers: number, first = 0): string[] {
  return entryNames(layers, first).map((n) => `new_key_values.${n}`);
}

/**
 * The decoder outputs a device cache keeps on the device, for a decoder graph whose outputs are `outputs`: its
 * new_key_values where it has them (appended on the device), else its presents.
 */
export function deviceCacheOutputs(outputs: readonly string[], layers: number, first = 0): string[] {
  const rows = newRowNames(layers, first);
  return rows.every((name) => outputs.includes(name)) ? rows : presentNames(layers, first);
}

/** The row-selection graph's outputs, kept on the device too. */
export function selectedNames(layers: number, first = 0): string[] {
  return entryNames(layers, first).map((n) => `selected.${n}`);
}

/** The append graph's outputs, kept on the device too. */
export function appendedNames(layers: number, first = 0): string[] {
  return entryNames(layers, first).map((n) => `appended.${n}`);
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

/**
 * The append graph: appended.{i}.{key,value} = Concat(past_key_values.{i}.{key,value}, new_key_values.{i}.{key,
 * value}, axis 2), the decoder's presents as the reference computes them.
 */
export function appendGraph(shape: KvCacheShape): Uint8Array {
  const names = entryNames(shape.layers, shape.firstLayer);
  const dims = (length: string) => ["batch", shape.heads, length, shape.headDim];
  return writeOnnxModel({
    name: "kv_cache_append",
    opset: 17,
    inputs: names.flatMap((n) => [
      { name: `past_key_values.${n}`, type: shape.dtype, dims: dims("past") },
      { name: `new_key_values.${n}`, type: shape.dtype, dims: dims("tokens") },
    ]),
    outputs: appendedNames(shape.layers, shape.firstLayer).map((name) => ({
      name,
      type: shape.dtype,
      dims: dims("total"),
    })),
    nodes: names.map((n) => ({
      op: "Concat",
      inputs: [`past_key_values.${n}`, `new_key_values.${n}`],
      outputs: [`appended.${n}`],
      ints: { axis: 2 },
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

/** The device sessions a DeviceKvCache runs: row selection, and the append for a decoder giving new_key_values. */
export interface DeviceCacheSessions {
  /** A WebGPU session of rowSelectionGraph(shape) whose outputs stay on the device. */
  select: Session;
  /** A WebGPU session of appendGraph(shape) whose outputs stay on the device; absent for a decoder with presents. */
  append?: Session;
}

/**
 * The sessions a DeviceKvCache of `shape` runs beside a decoder that keeps `decoderOutputs` on the device
 * (deviceCacheOutputs): the row selection, and the append when those outputs are new rows (presents need none).
 * `build` makes a session of a built graph (its name, bytes, and the outputs to keep on the device).
 */
export async function deviceCacheSessions(
  shape: KvCacheShape,
  decoderOutputs: readonly string[],
  build: (name: string, graph: Uint8Array, deviceOutputs: string[]) => Promise<Session>,
): Promise<DeviceCacheSessions> {
  const { layers, firstLayer } = shape;
  const select = await build("kv_cache_select_rows", rowSelectionGraph(shape), selectedNames(layers, firstLayer));
  const appends = decoderOutputs.some((name) => name.startsWith("new_key_values."));
  const append = appends
    ? await build("kv_cache_append", appendGraph(shape), appendedNames(layers, firstLayer))
    : undefined;
  return { select, append };
}

export class DeviceKvCache extends KvCacheEntries implements KvCache {
  private constructor(
    private readonly shape: KvCacheShape,
    private readonly sessions: DeviceCacheSessions,
    private readonly buffers: DeviceBuffers,
    names: string[],
    tensors: Map<string, OrtTensor>,
    /**
     * Whether the cache holds nothing yet. With a decoder giving new_key_values, its past is then one free slot of
     * zeros, which the attention mask marks as padding, not a zero-length one: ONNX Runtime 1.30's WebGPU MatMul
     * crashes the process on an empty inner dimension, which the decoder's product of the past's attention weights
     * and values has at P = 0.
     */
    private empty = true,
  ) {
    super(names, tensors);
  }

  /**
   * The empty cache's past: one free slot per row (see `empty`), or none for a decoder with presents (they would
   * carry the slot on, and such a graph concatenates rather than multiplies by an empty past).
   */
  private static emptyPast(shape: KvCacheShape, sessions: DeviceCacheSessions, batch: number): OrtTensor {
    return zeros(shape.dtype, [batch, shape.heads, sessions.append ? 1 : 0, shape.headDim]);
  }

  override get length(): number {
    return this.empty ? 0 : super.length;
  }

  /**
   * A factory of empty caches; the decoder's session must keep deviceCacheOutputs(...) on the same device (its
   * new_key_values when `sessions.append` is given, else its presents).
   */
  static factory(shape: KvCacheShape, sessions: DeviceCacheSessions): KvCacheFactory {
    const buffers = new DeviceBuffers();
    const names = entryNames(shape.layers, shape.firstLayer);
    return async (batch) => {
      const tensors = new Map<string, OrtTensor>();
      for (const n of names) tensors.set(n, buffers.hold(DeviceKvCache.emptyPast(shape, sessions, batch)));
      return new DeviceKvCache(shape, sessions, buffers, names, tensors);
    };
  }

  /** The decoder output of entry `name` this cache takes. */
  private output(name: string): string {
    return this.sessions.append ? `new_key_values.${name}` : `present.${name}`;
  }

  outputsToFetch(outputs: readonly string[]): readonly string[] {
    // The outputs stay on the device: new rows are appended there, presents become the next past as they are.
    return this.names.map((n) => this.output(n)).filter((name) => outputs.includes(name));
  }

  async absorb(outputs: OrtFeeds): Promise<void> {
    for (const n of this.names) {
      const output = outputs[this.output(n)];
      if (!output) throw new Error(`the decoder returned no ${this.output(n)}`);
      if (output.location !== "gpu-buffer")
        throw new Error(
          `${this.output(n)} came back to host memory: the decoder session does not keep it on the device`,
        );
    }
    if (!this.sessions.append || this.empty) {
      // Presents are the next past; so are a first step's rows (the free slot before them is dropped).
      for (const n of this.names) this.replace(n, outputs[this.output(n)]);
      this.empty = false;
      return;
    }
    const feeds: OrtFeeds = this.feeds();
    for (const n of this.names) feeds[`new_key_values.${n}`] = outputs[`new_key_values.${n}`];
    const appended = await this.sessions.append.run(feeds);
    for (const n of this.names) {
      // The rows are in the appended past now: their own buffers are freed.
      outputs[`new_key_values.${n}`].dispose();
      const past = appended[`appended.${n}`];
      if (past.location !== "gpu-buffer")
        throw new Error(`appended.${n} came back to host memory: the append session does not keep it on the device`);
      this.replace(n, past);
    }
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
      for (const n of this.names) this.replace(n, DeviceKvCache.emptyPast(this.shape, this.sessions, rows.length));
      return;
    }
    const out = await this.sessions.select.run({ rows: int64Tensor(rows, [rows.length]), ...this.feeds() });
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
    return new DeviceKvCache(this.shape, this.sessions, this.buffers, this.names, new Map(this.tensors), this.empty);
  }

  release(): void {
    for (const t of this.tensors.values()) this.buffers.drop(t);
    this.tensors.clear();
  }
}
