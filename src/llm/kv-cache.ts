// The decoder's key/value cache behind an interface: generation code only asks for the next step's feeds, hands
// back the step's outputs, and rearranges batch rows (beam reordering, beam expansion, dropped rows). HostKvCache
// keeps the present tensors in host memory; DeviceKvCache (device-kv-cache.ts) keeps them as WebGPU buffers and
// implements the same operations on the device, without the generation code changing. A decoder split into parts
// on different devices has one cache per part (PartCaches), each where its part runs.
import type { Dtype } from "../model/manifest.js";
import { selectRows, zeros, type OrtFeeds, type OrtTensor } from "../model/ort.js";

export interface KvCache {
  /** Batch rows the cache holds. */
  readonly batch: number;
  /** Past tokens per row (P of the decoder's next run). */
  readonly length: number;
  /** The past_key_values.{i}.key/value feeds for the next decoder run. */
  feeds(): OrtFeeds;
  /** Takes the decoder's present.{i}.key/value outputs as the new past. */
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

export class HostKvCache extends KvCacheEntries implements KvCache {
  private constructor(names: string[], tensors: Map<string, OrtTensor>) {
    super(names, tensors);
  }

  static async empty(shape: KvCacheShape, batch: number): Promise<HostKvCache> {
    const names = entryNames(shape.layers, shape.firstLayer);
    const tensors = new Map<string, OrtTensor>();
    for (const name of names) tensors.set(name, await zeros(shape.dtype, [batch, shape.heads, 0, shape.headDim]));
    return new HostKvCache(names, tensors);
  }

  static factory(shape: KvCacheShape): KvCacheFactory {
    return (batch) => HostKvCache.empty(shape, batch);
  }

  absorb(outputs: OrtFeeds): void {
    for (const n of this.names) {
      const present = outputs[`present.${n}`];
      if (!present) throw new Error(`the decoder returned no present.${n}`);
      this.tensors.set(n, present);
    }
  }

  async select(rows: readonly number[]): Promise<void> {
    // Beam search selects every step, and most steps keep every beam where it is: copying the whole cache then
    // (0.8 GB at Emu2's width, 5 beams, 1,536 tokens) would buy nothing.
    if (rows.length === this.batch && rows.every((r, i) => r === i)) return;
    for (const n of this.names) this.tensors.set(n, await selectRows(this.entry(n), rows));
  }

  fork(): HostKvCache {
    // Tensors are never written in place (absorb and select replace them), so the fork can share them.
    return new HostKvCache(this.names, new Map(this.tensors));
  }

  release(): void {
    this.tensors.clear();
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
