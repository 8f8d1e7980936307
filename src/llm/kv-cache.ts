// The decoder's key/value cache behind an interface: generation code only asks for the next step's feeds, hands
// back the step's outputs, and rearranges batch rows (beam reordering, beam expansion, dropped rows). HostKvCache
// keeps the present tensors in host memory; DeviceKvCache (device-kv-cache.ts) keeps them as WebGPU buffers and
// implements the same operations on the device, without the generation code changing. A decoder split into parts
// on different devices has one cache per part (PartCaches), each where its part runs.
import type { Dtype } from "../model/manifest.js";
import { loadOrt, zeros, type Ort, type OrtFeeds, type OrtTensor } from "../model/ort.js";

export interface KvCache {
  /** Batch rows the cache holds. */
  readonly batch: number;
  /** Past tokens per row (P of the decoder's next run). */
  readonly length: number;
  /** The past_key_values.{i}.key/value feeds for the next decoder run. */
  feeds(): OrtFeeds;
  /**
   * The decoder outputs this cache needs from a graph whose outputs are `outputs` (a part of a split decoder has
   * only its own layers'): the runtime fetches only these, since onnxruntime-node copies every fetched output.
   */
  outputsToFetch(outputs: readonly string[]): string[];
  /** Takes the decoder's outputs (new_key_values.{i}.key/value rows, or present.{i}.key/value) as the new past. */
  absorb(outputs: OrtFeeds): void;
  /**
   * Keeps batch rows `rows`, in that order: repeats expand a row (one prompt -> its beams), a permutation reorders
   * beams, a missing row is dropped.
   */
  select(rows: readonly number[]): Promise<void>;
  /** An independent cache that starts from this one's contents (a context shared by several continuations). */
  fork(): KvCache;
  /** Gives the memory back; the cache is unusable afterwards. */
  release(): void;
  /**
   * Where each entry's tensor lives, in feed order: "cpu", or "gpu-buffer" in a device cache once the decoder has
   * run (the empty first past is a host tensor).
   */
  locations(): string[];
}

/** Makes an empty cache (P = 0) for `batch` rows. */
export type KvCacheFactory = (batch: number) => Promise<KvCache>;

export interface KvCacheShape {
  /** Layers the cache holds: firstLayer .. firstLayer + layers - 1 of the decoder (a part of a split one). */
  layers: number;
  firstLayer?: number;
  heads: number;
  headDim: number;
  dtype: Dtype;
}

/** Entry names in feed order: first.key, first.value, (first + 1).key, ... */
export function entryNames(layers: number, first = 0): string[] {
  return Array.from({ length: layers }, (_, i) => [`${first + i}.key`, `${first + i}.value`]).flat();
}

/** What both strategies share: the entries by name in feed order, whatever memory their tensors live in. */
export abstract class KvCacheEntries {
  protected constructor(
    protected readonly names: string[],
    protected readonly tensors: Map<string, OrtTensor>,
  ) {}

  protected entry(name: string): OrtTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error("the KV cache was released");
    return t;
  }

  get batch(): number {
    return Number(this.entry(this.names[0]).dims[0]);
  }

  get length(): number {
    return Number(this.entry(this.names[0]).dims[2]);
  }

  feeds(): OrtFeeds {
    return Object.fromEntries(this.names.map((n) => [`past_key_values.${n}`, this.entry(n)]));
  }

  locations(): string[] {
    return this.names.map((n) => this.entry(n).location);
  }
}

/** A host buffer the cache writes its next past into; `shared` once a fork reads it (then nobody writes it again). */
interface HostBuffer {
  data: Float32Array | Uint16Array;
  shared: boolean;
}

/** Head room when a buffer has to grow: a new one every quarter of the cache's growth rather than every token. */
const GROWTH = 1.25;

/**
 * The cache in host memory. With a decoder that has new_key_values outputs (this run's own key/value rows) it
 * fetches only those and appends them itself, into one of two buffers per entry that take turns (the past is read
 * from one while the next past is written into the other): onnxruntime-node copies every fetched output into a
 * fresh JS buffer, so fetching the presents instead would copy the whole cache into newly allocated memory on every
 * token (720 ms against ONNX Runtime's own 175 ms at Emu2's width, 2 layers and 1,536 tokens: bench:real). A decoder
 * exported before those outputs existed gives its presents, which become the past as they are.
 */
export class HostKvCache extends KvCacheEntries implements KvCache {
  private constructor(
    private readonly ort: Ort,
    private readonly shape: KvCacheShape,
    names: string[],
    tensors: Map<string, OrtTensor>,
    /** The buffer each entry's past lives in (none for an empty past or a decoder's own present). */
    private readonly holding: Map<string, HostBuffer>,
    /** The buffer each entry writes its next past into, when it has one that nobody else reads. */
    private readonly spare: Map<string, HostBuffer>,
  ) {
    super(names, tensors);
  }

  static async empty(shape: KvCacheShape, batch: number): Promise<HostKvCache> {
    const names = entryNames(shape.layers, shape.firstLayer);
    const tensors = new Map<string, OrtTensor>();
    for (const name of names) tensors.set(name, await zeros(shape.dtype, [batch, shape.heads, 0, shape.headDim]));
    return new HostKvCache(await loadOrt(), shape, names, tensors, new Map(), new Map());
  }

  static factory(shape: KvCacheShape): KvCacheFactory {
    return (batch) => HostKvCache.empty(shape, batch);
  }

  outputsToFetch(outputs: readonly string[]): string[] {
    return this.names.flatMap((n) => {
      if (outputs.includes(`new_key_values.${n}`)) return [`new_key_values.${n}`];
      return outputs.includes(`present.${n}`) ? [`present.${n}`] : [];
    });
  }

  absorb(outputs: OrtFeeds): void {
    const next = new Map<string, OrtTensor>();
    for (const n of this.names) {
      const rows = outputs[`new_key_values.${n}`];
      const present = outputs[`present.${n}`];
      if (rows) next.set(n, this.append(n, rows));
      else if (present) {
        this.recycle(n, undefined);
        next.set(n, present);
      } else throw new Error(`the decoder returned neither new_key_values.${n} nor present.${n}`);
    }
    for (const [n, t] of next) this.tensors.set(n, t);
  }

  /** The past [B,H,P,D] followed by `rows` [B,H,T,D] along the token axis, in this entry's other buffer. */
  private append(name: string, rows: OrtTensor): OrtTensor {
    const past = this.entry(name);
    const [batch, heads, p, d] = past.dims.map(Number);
    const t = Number(rows.dims[2]);
    if (Number(rows.dims[0]) !== batch || Number(rows.dims[1]) !== heads || Number(rows.dims[3]) !== d)
      throw new Error(
        `new_key_values.${name} [${rows.dims.join(",")}] does not extend the past [${past.dims.join(",")}]`,
      );
    const from = past.data as Float32Array | Uint16Array;
    const add = rows.data as Float32Array | Uint16Array;
    const target = this.writable(name, batch * heads * (p + t) * d);
    for (let bh = 0; bh < batch * heads; bh++) {
      const at = bh * (p + t) * d;
      if (p > 0) target.set(from.subarray(bh * p * d, (bh + 1) * p * d), at);
      target.set(add.subarray(bh * t * d, (bh + 1) * t * d), at + p * d);
    }
    return this.tensor(target, [batch, heads, p + t, d]);
  }

  /** The first `size` elements of a buffer this entry may write: its spare when large enough, else a new one. */
  private writable(name: string, size: number): Float32Array | Uint16Array {
    let buffer = this.spare.get(name);
    if (!buffer || buffer.data.length < size) {
      const capacity = Math.ceil(size * GROWTH);
      buffer = {
        data: this.shape.dtype === "float16" ? new Uint16Array(capacity) : new Float32Array(capacity),
        shared: false,
      };
    }
    this.spare.delete(name);
    this.recycle(name, buffer);
    return buffer.data.subarray(0, size);
  }

  /** `next` now holds the entry's past; the buffer that held it becomes the spare unless a fork still reads it. */
  private recycle(name: string, next: HostBuffer | undefined): void {
    const old = this.holding.get(name);
    if (old && !old.shared) this.spare.set(name, old);
    if (next) this.holding.set(name, next);
    else this.holding.delete(name);
  }

  private tensor(data: Float32Array | Uint16Array, dims: number[]): OrtTensor {
    return new this.ort.Tensor(this.shape.dtype, data, dims);
  }

  async select(rows: readonly number[]): Promise<void> {
    // Beam search selects every step, and most steps keep every beam where it is: copying the whole cache then
    // (0.8 GB at Emu2's width, 5 beams, 1,536 tokens) would buy nothing.
    if (rows.length === this.batch && rows.every((r, i) => r === i)) return;
    const batch = this.batch;
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= batch)
        throw new RangeError(`KV cache row ${r} is outside 0..${batch - 1}`);
    }
    const next = new Map<string, OrtTensor>();
    for (const n of this.names) {
      const past = this.entry(n);
      const dims = past.dims.map(Number);
      const per = dims[1] * dims[2] * dims[3];
      const from = past.data as Float32Array | Uint16Array;
      const target = this.writable(n, rows.length * per);
      rows.forEach((r, i) => target.set(from.subarray(r * per, (r + 1) * per), i * per));
      next.set(n, this.tensor(target, [rows.length, dims[1], dims[2], dims[3]]));
    }
    for (const [n, t] of next) this.tensors.set(n, t);
  }

  fork(): HostKvCache {
    // Both caches read the buffers that hold the past now, so neither may write them again: each writes its next
    // past into a buffer of its own.
    for (const buffer of this.holding.values()) buffer.shared = true;
    return new HostKvCache(this.ort, this.shape, this.names, new Map(this.tensors), new Map(this.holding), new Map());
  }

  release(): void {
    this.tensors.clear();
    this.holding.clear();
    this.spare.clear();
  }
}

/**
 * The cache of a decoder split into parts (in layer order): each part's layers in a cache of their own (host memory
 * for a part on the CPU, a DeviceKvCache for one on WebGPU), so no part's past crosses between devices. Row
 * operations apply to every part.
 */
export class PartCaches implements KvCache {
  private constructor(private readonly parts: KvCache[]) {}

  static factory(parts: KvCacheFactory[]): KvCacheFactory {
    return async (batch) => {
      const caches: KvCache[] = [];
      for (const make of parts) caches.push(await make(batch));
      return new PartCaches(caches);
    };
  }

  get batch(): number {
    return this.parts[0].batch;
  }

  get length(): number {
    return this.parts[0].length;
  }

  feeds(): OrtFeeds {
    return Object.assign({}, ...this.parts.map((p) => p.feeds()));
  }

  outputsToFetch(outputs: readonly string[]): string[] {
    return this.parts.flatMap((p) => p.outputsToFetch(outputs));
  }

  absorb(outputs: OrtFeeds): void {
    // Each part takes the presents of its own layers.
    for (const p of this.parts) p.absorb(outputs);
  }

  async select(rows: readonly number[]): Promise<void> {
    for (const p of this.parts) await p.select(rows);
  }

  fork(): PartCaches {
    return new PartCaches(this.parts.map((p) => p.fork()));
  }

  release(): void {
    for (const p of this.parts) p.release();
  }

  locations(): string[] {
    return this.parts.flatMap((p) => p.locations());
  }
}
