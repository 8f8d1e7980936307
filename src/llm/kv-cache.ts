// The decoder's key/value cache behind an interface: generation code only asks for the next step's feeds, hands
// back the step's outputs, and rearranges batch rows (beam reordering, beam expansion, dropped rows). HostKvCache
// keeps the present tensors in host memory; DeviceKvCache (device-kv-cache.ts) keeps them as WebGPU buffers and
// implements the same operations on the device, without the generation code changing.
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
}

/** Makes an empty cache (P = 0) for `batch` rows. */
export type KvCacheFactory = (batch: number) => Promise<KvCache>;

export interface KvCacheShape {
  layers: number;
  heads: number;
  headDim: number;
  dtype: Dtype;
}

/** Entry names in feed order: 0.key, 0.value, 1.key, ... */
export function entryNames(layers: number): string[] {
  return Array.from({ length: layers }, (_, i) => [`${i}.key`, `${i}.value`]).flat();
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
}

export class HostKvCache extends KvCacheEntries implements KvCache {
  private constructor(names: string[], tensors: Map<string, OrtTensor>) {
    super(names, tensors);
  }

  static async empty(shape: KvCacheShape, batch: number): Promise<HostKvCache> {
    const names = entryNames(shape.layers);
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
