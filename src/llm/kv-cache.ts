// The decoder's key/value cache behind an interface: generation code only asks for the next step's feeds, hands
// back the step's outputs, and rearranges batch rows (beam reordering, beam expansion, dropped rows). HostKvCache
// keeps the past tensors in host memory; DeviceKvCache (device-kv-cache.ts) keeps them as WebGPU buffers and
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
   * The row, as select() numbers rows, that each batch row of the feeds holds, when that is not row i in batch row
   * i: a cache may leave a beam where it lies rather than move it to its rank's row. The decoder's other inputs
   * (embeddings, mask, positions) go in this order, and its outputs (absorb's too) come back in it.
   */
  feedOrder(): readonly number[] | undefined;
  /**
   * The decoder outputs this cache needs from a graph whose outputs are `outputs` (a part of a split decoder has
   * only its own layers'): the runtime fetches only these, since onnxruntime-node copies every fetched output.
   */
  outputsToFetch(outputs: readonly string[]): readonly string[];
  /**
   * Takes the decoder's outputs (new_key_values.{i}.key/value rows, or present.{i}.key/value) into the new past; a
   * device cache appends on the device, a session run, so the caller awaits it.
   */
  absorb(outputs: OrtFeeds): void | Promise<void>;
  /**
   * Keeps rows `rows`, in that order (row i becomes what row rows[i] was): repeats expand a row (one prompt -> its
   * beams), a permutation reorders beams, a missing row is dropped.
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

/**
 * Makes an empty cache (P = 0) for `batch` rows. `maxLength`, when known, is the most tokens it will ever hold (a
 * generation's prompt plus the new tokens it feeds back): a cache that keeps free slots never keeps more than that.
 */
export type KvCacheFactory = (batch: number, maxLength?: number) => Promise<KvCache>;

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

  /** The feed name of every entry (past_key_values.{name}), made once: feeds() runs on every token. */
  private feedNames?: string[];

  feeds(): OrtFeeds {
    this.feedNames ??= this.names.map((n) => `past_key_values.${n}`);
    const feeds: OrtFeeds = {};
    for (let i = 0; i < this.names.length; i++) feeds[this.feedNames[i]] = this.entry(this.names[i]);
    return feeds;
  }

  locations(): string[] {
    return this.names.map((n) => this.entry(n).location);
  }

  /** Row i in batch row i: a cache that moves rows where select() puts them. */
  feedOrder(): readonly number[] | undefined {
    return undefined;
  }

  /** select()'s rows must name rows the cache holds. */
  protected checkRows(rows: readonly number[]): void {
    const batch = this.batch;
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= batch)
        throw new RangeError(`KV cache row ${r} is outside 0..${batch - 1}`);
    }
  }
}

/** An entry's past [B,h,C,d]; `shared` once a fork reads it too (then neither writes it again). */
interface HostBuffer {
  data: Float32Array | Uint16Array;
  shared: boolean;
}

/**
 * Slots a buffer grows to for `needed` tokens: an eighth more (at least 32), so that a new buffer (and one copy of
 * the cache into it) comes every eighth of the cache's growth, while the unused slots the decoder reads (masked)
 * stay a small part of its attention; but never more than `maxLength`, the most the cache will hold: slots no token
 * can fill would only be read, masked, at every step (an eighth more attention at a long prompt).
 */
export function capacityFor(needed: number, maxLength = Infinity): number {
  return Math.max(needed, Math.min(maxLength, Math.max(needed + 32, Math.ceil(needed * 1.125))));
}

/**
 * The cache in host memory. With a decoder that has new_key_values outputs (this run's own key/value rows) it
 * fetches only those and writes them into free slots of its own buffers, [B,h,C,d] with C >= P: the decoder reads
 * all C slots where they lie (its graph has no presents, so it concatenates nothing), the attention mask marks the
 * free ones as padding (graphs.ts), and nothing of the cache is copied per token. onnxruntime-node copies every
 * fetched output into a newly allocated JS buffer, so fetching presents would copy the whole cache on every token
 * (720 ms against ONNX Runtime's own 175 ms at Emu2's width, 2 layers and 1,536 tokens: bench:real). Beam
 * reordering works within the same buffer, so 5 beams never hold a second copy of their cache (0.9 GB per 2
 * layers at Emu2's width and 1,536 tokens): a beam stays in the batch row it lies in whatever its new rank
 * (feedOrder), only a beam that two new beams continue is copied, into the row of one that none continues, and a
 * copy between beams of one prompt takes only the slots after the prompt, which they share: the tokens generated
 * so far, not the whole context. A decoder exported before
 * new_key_values existed gives its presents, which become the past as they are.
 */
export class HostKvCache extends KvCacheEntries implements KvCache {
  private constructor(
    private readonly ort: Ort,
    private readonly shape: KvCacheShape,
    names: string[],
    /** Each entry's past: the buffer fed to the decoder, free slots included. */
    tensors: Map<string, OrtTensor>,
    /** The buffer under each entry's past, when the cache wrote it (not a decoder's own present). */
    private readonly holding: Map<string, HostBuffer>,
    /** Filled slots (P), the same in every entry; the rest of the C slots are free. */
    private valid: number,
    /**
     * Batch rows of one lineage hold the same first `sharedSlots` slots: beams copied from one prompt's row, which
     * share that prompt. Copying a row to another of its lineage copies only the slots after those.
     */
    private lineage: number[],
    private sharedSlots: number,
    /** The most tokens this cache will hold (the generation's bound), or Infinity. */
    private readonly maxLength: number,
    /**
     * Whether row i stays in batch row i (rows move on select): the host part of a decoder split across devices,
     * whose other parts' caches move theirs.
     */
    private readonly rankOrder: boolean,
    /** The row (select()'s numbering) each batch row holds; undefined while row i is in batch row i. */
    private held: number[] | undefined,
  ) {
    super(names, tensors);
  }

  /** Rows put aside during an in-place reorder (reorderInPlace). */
  private asides: (Float32Array | Uint16Array)[] = [];

  /**
   * `freeSlots`: slots the empty past has (masked, as any free slot): a decoder run on WebGPU needs at least one,
   * since ONNX Runtime's WebGPU MatMul crashes on the empty past's inner dimension (device-kv-cache.ts).
   */
  static async empty(
    shape: KvCacheShape,
    batch: number,
    maxLength = Infinity,
    freeSlots = 0,
    rankOrder = false,
  ): Promise<HostKvCache> {
    const names = entryNames(shape.layers, shape.firstLayer);
    const tensors = new Map<string, OrtTensor>();
    for (const name of names) tensors.set(name, zeros(shape.dtype, [batch, shape.heads, freeSlots, shape.headDim]));
    const lineage = Array.from({ length: batch }, (_, row) => row);
    return new HostKvCache(loadOrt(), shape, names, tensors, new Map(), 0, lineage, 0, maxLength, rankOrder, undefined);
  }

  static factory(shape: KvCacheShape, freeSlots = 0, rankOrder = false): KvCacheFactory {
    return (batch, maxLength) => HostKvCache.empty(shape, batch, maxLength, freeSlots, rankOrder);
  }

  override feedOrder(): readonly number[] | undefined {
    this.entry(this.names[0]);
    return this.held;
  }

  /** Filled slots only: the past fed to the decoder has `capacity` (free ones masked). */
  override get length(): number {
    this.entry(this.names[0]);
    return this.valid;
  }

  /** Slots per row of the past fed to the decoder (C >= length; the free ones are masked). */
  get capacity(): number {
    return Number(this.entry(this.names[0]).dims[2]);
  }

  /** outputsToFetch's answer for the last graph outputs asked about (a session's own array, the same every token). */
  private fetched?: { outputs: readonly string[]; names: readonly string[] };

  outputsToFetch(outputs: readonly string[]): readonly string[] {
    if (this.fetched?.outputs !== outputs) {
      const names = this.names.flatMap((n) => {
        if (outputs.includes(`new_key_values.${n}`)) return [`new_key_values.${n}`];
        return outputs.includes(`present.${n}`) ? [`present.${n}`] : [];
      });
      this.fetched = { outputs, names };
    }
    return this.fetched.names;
  }

  absorb(outputs: OrtFeeds): void {
    const rows = this.names.map((n) => outputs[`new_key_values.${n}`]);
    const missing = rows.findIndex((t) => t === undefined);
    if (missing < 0) {
      this.append(rows);
      return;
    }
    if (rows.some((t) => t !== undefined))
      throw new Error(`the decoder returned no new_key_values.${this.names[missing]}`);
    const presents = this.names.map((n) => {
      const present = outputs[`present.${n}`];
      if (!present) throw new Error(`the decoder returned neither new_key_values.${n} nor present.${n}`);
      return present;
    });
    if (this.capacity !== this.valid)
      throw new Error("the decoder returned presents to a cache with free slots: its graph has no new_key_values");
    this.names.forEach((n, i) => {
      this.holding.delete(n);
      this.tensors.set(n, presents[i]);
    });
    this.valid = Number(presents[0].dims[2]);
  }

  /** Writes rows [B,h,T,d] of every entry into slots P .. P+T-1, moving to a larger buffer first when needed. */
  private append(rows: OrtTensor[]): void {
    const [batch, heads, , d] = this.entry(this.names[0]).dims.map(Number);
    const t = Number(rows[0].dims[2]);
    rows.forEach((r, i) => {
      const [rb, rh, rt, rd] = r.dims;
      if (rb !== batch || rh !== heads || rt !== t || rd !== d)
        throw new Error(
          `new_key_values.${this.names[i]} [${r.dims.join(",")}] does not extend the past [${batch},${heads},${this.valid},${d}]`,
        );
    });
    const p = this.valid;
    const capacity = p + t > this.capacity ? capacityFor(p + t, this.maxLength) : this.capacity;
    this.names.forEach((n, i) => {
      const target = this.writable(n, capacity);
      const add = rows[i].data as Float32Array | Uint16Array;
      for (let bh = 0; bh < batch * heads; bh++)
        target.set(add.subarray(bh * t * d, (bh + 1) * t * d), (bh * capacity + p) * d);
    });
    this.valid = p + t;
  }

  /**
   * The data of a buffer with `capacity` slots holding this entry's past, that this cache may write: the one it
   * holds when that is so, else a new one with the past copied in.
   */
  private writable(name: string, capacity: number): Float32Array | Uint16Array {
    const past = this.entry(name);
    const held = this.holding.get(name);
    if (held && !held.shared && Number(past.dims[2]) === capacity) return held.data;
    const [batch, heads, slots, d] = past.dims.map(Number);
    const buffer = this.allocate(batch * heads * capacity * d);
    const from = past.data as Float32Array | Uint16Array;
    for (let bh = 0; bh < batch * heads; bh++)
      buffer.data.set(from.subarray(bh * slots * d, (bh * slots + this.valid) * d), bh * capacity * d);
    this.hold(name, buffer, [batch, heads, capacity, d]);
    return buffer.data;
  }

  private allocate(size: number): HostBuffer {
    return {
      data: this.shape.dtype === "float16" ? new Uint16Array(size) : new Float32Array(size),
      shared: false,
    };
  }

  /** `buffer` now holds the entry's past. */
  private hold(name: string, buffer: HostBuffer, dims: number[]): void {
    this.holding.set(name, buffer);
    this.tensors.set(name, new this.ort.Tensor(this.shape.dtype, buffer.data, dims));
  }

  async select(rows: readonly number[]): Promise<void> {
    // Beam search selects every step, and most steps keep every beam where it is: copying the whole cache then
    // (0.8 GB at Emu2's width, 5 beams, 1,536 tokens) would buy nothing.
    if (rows.length === this.batch && rows.every((r, i) => r === i)) return;
    this.checkRows(rows);
    const buffers = this.names.map((n) => this.holding.get(n));
    if (rows.length === this.batch && buffers.every((b) => b && !b.shared)) {
      const data = buffers.map((b) => (b as HostBuffer).data);
      if (!this.rankOrder) {
        this.placeInPlace(rows, data);
        return;
      }
      // Slots [0, start) of row `to` already hold what row `from` holds there.
      const start = (to: number, from: number) => (this.lineage[to] === this.lineage[from] ? this.sharedSlots : 0);
      this.names.forEach((n, i) => this.reorderInPlace(n, data[i], rows, start));
      this.lineage = rows.map((from) => this.lineage[from]);
    } else {
      // The new buffer holds the rows in select()'s order.
      const batchRowOf = this.batchRows();
      const batchRows = rows.map((row) => batchRowOf[row]);
      for (const n of this.names) this.selectIntoNew(n, batchRows);
      // Rows copied from one row hold the same filled slots (beam expansion: a prompt's beams share it whole).
      this.lineage = batchRows;
      this.sharedSlots = this.valid;
      this.held = undefined;
    }
  }

  /** The batch row that holds each row (select()'s numbering): feedOrder's inverse. */
  private batchRows(): number[] {
    const batchRowOf = Array.from({ length: this.batch }, (_, row) => row);
    this.held?.forEach((row, b) => (batchRowOf[row] = b));
    return batchRowOf;
  }

  /**
   * select() without moving rows: row i of the new order stays in the batch row of the row it continues; when
   * several continue one row, the first stays and each other is copied into the batch row of a row that none
   * continues (one of the same lineage when there is one: it holds the shared slots already). The copies read rows
   * that stay and write rows that no one reads, so their order does not matter. Beam 5 at batch 4 on Emu2's
   * stand-in moved 13.5 of its 20 rows a step in rank order; 4.5 a step are copies.
   */
  private placeInPlace(rows: readonly number[], data: (Float32Array | Uint16Array)[]): void {
    const batchRow = this.batchRows();
    const continued = new Set(rows);
    // In batch row order: the rows that no new row continues.
    const unread = [...batchRow.keys()].filter((b) => !continued.has(this.held?.[b] ?? b));
    const next = new Array<number>(rows.length);
    const stays = new Set<number>();
    rows.forEach((source, i) => {
      const from = batchRow[source];
      if (!stays.has(source)) {
        stays.add(source);
        next[from] = i;
        return;
      }
      const k = unread.findIndex((b) => this.lineage[b] === this.lineage[from]);
      const [to] = unread.splice(Math.max(k, 0), 1);
      this.copyRow(data, from, to);
      next[to] = i;
    });
    this.held = next.every((row, b) => row === b) ? undefined : next;
  }

  /** Batch row `from` copied over batch row `to` in every entry: the slots after those they share. */
  private copyRow(data: (Float32Array | Uint16Array)[], from: number, to: number): void {
    const [, heads, capacity, d] = this.entry(this.names[0]).dims.map(Number);
    const start = (this.lineage[to] === this.lineage[from] ? this.sharedSlots : 0) * d;
    const end = this.valid * d;
    for (const entry of data) {
      for (let h = 0; h < heads; h++) {
        const at = (row: number) => (row * heads + h) * capacity * d;
        // copyWithin: set() from a view of the same buffer would clone the source first.
        entry.copyWithin(at(to) + start, at(from) + start, at(from) + end);
      }
    }
    this.lineage[to] = this.lineage[from];
  }

  /**
   * Rank order (rankOrder): row r becomes row rows[r] within the buffer. Only the rows that change are written, each after every row that
   * reads its old contents has been written, so a chain of moves (what beam search mostly does) needs no copy
   * aside; rows that read each other in a cycle (two beams swapping ranks) put one row aside to break it. Each move
   * copies slots [start(to, from), P) of every head: the free slots are masked whatever they hold, and the first
   * ones may already be equal (the lineage).
   */
  private reorderInPlace(
    name: string,
    data: Float32Array | Uint16Array,
    rows: readonly number[],
    start: (to: number, from: number) => number,
  ): void {
    const [, heads, capacity, d] = this.entry(name).dims.map(Number);
    const end = this.valid * d;
    const headAt = (row: number, h: number) => (row * heads + h) * capacity * d;
    const pending = new Set(rows.flatMap((from, to) => (from === to ? [] : [to])));
    // How many pending rows still read each row's old contents.
    const readers = rows.map(() => 0);
    for (const to of pending) readers[rows[to]]++;
    // Where a pending row reads from when its source went aside.
    const asideOf = new Map<number, Float32Array | Uint16Array>();
    let asides = 0;
    while (pending.size > 0) {
      const to = [...pending].find((row) => readers[row] === 0);
      if (to === undefined) {
        const row = pending.values().next().value as number;
        const aside = this.asideRow(asides++, heads * capacity * d);
        const its = [...pending].filter((reader) => rows[reader] === row);
        const from = Math.min(...its.map((reader) => start(reader, row))) * d;
        for (let h = 0; h < heads; h++)
          aside.set(data.subarray(headAt(row, h) + from, headAt(row, h) + end), h * capacity * d + from);
        for (const reader of its) asideOf.set(reader, aside);
        readers[row] = 0;
        continue;
      }
      const aside = asideOf.get(to);
      const from = start(to, rows[to]) * d;
      for (let h = 0; h < heads; h++) {
        if (aside) data.set(aside.subarray(h * capacity * d + from, h * capacity * d + end), headAt(to, h) + from);
        // copyWithin: set() from a view of the same buffer would clone the source first.
        else data.copyWithin(headAt(to, h) + from, headAt(rows[to], h) + from, headAt(rows[to], h) + end);
      }
      if (!aside) readers[rows[to]]--;
      pending.delete(to);
    }
  }

  /** Row buffers kept between reorders for rows put aside (a fresh one per step would be fresh memory per step). */
  private asideRow(index: number, size: number): Float32Array | Uint16Array {
    if (this.asides[index]?.length !== size) this.asides[index] = this.allocate(size).data;
    return this.asides[index];
  }

  /**
   * Batch rows `rows` copied into a new buffer, in that order: the batch changes (beam expansion), or a fork still
   * reads the old one.
   */
  private selectIntoNew(name: string, rows: readonly number[]): void {
    const past = this.entry(name);
    const [, heads, capacity, d] = past.dims.map(Number);
    const target = this.allocate(rows.length * heads * capacity * d);
    const from = past.data as Float32Array | Uint16Array;
    const span = this.valid * d;
    rows.forEach((r, i) => {
      for (let h = 0; h < heads; h++) {
        const src = (r * heads + h) * capacity * d;
        target.data.set(from.subarray(src, src + span), (i * heads + h) * capacity * d);
      }
    });
    this.hold(name, target, [rows.length, heads, capacity, d]);
  }

  fork(): HostKvCache {
    // Both caches read the buffers that hold the past now, so neither may write them again: each moves to a buffer
    // of its own before it writes.
    for (const buffer of this.holding.values()) buffer.shared = true;
    return new HostKvCache(
      this.ort,
      this.shape,
      this.names,
      new Map(this.tensors),
      new Map(this.holding),
      this.valid,
      [...this.lineage],
      this.sharedSlots,
      // A fork continues past what this cache was bounded by (a candidate after a scored context): no bound.
      Infinity,
      this.rankOrder,
      this.held && [...this.held],
    );
  }

  release(): void {
    this.tensors.clear();
    this.holding.clear();
    this.asides = [];
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
    return async (batch, maxLength) => {
      const caches: KvCache[] = [];
      for (const make of parts) caches.push(await make(batch, maxLength));
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

  /** The parts' common order: one part's last_hidden_state is the next part's input, row for row. */
  feedOrder(): readonly number[] | undefined {
    const [first, ...rest] = this.parts.map((p) => p.feedOrder());
    const same = (o: readonly number[] | undefined) =>
      o === first || (o !== undefined && first !== undefined && o.every((row, b) => row === first[b]));
    if (!rest.every(same)) throw new Error("the parts of a split decoder's cache hold their rows in different orders");
    return first;
  }

  outputsToFetch(outputs: readonly string[]): readonly string[] {
    return this.parts.flatMap((p) => p.outputsToFetch(outputs));
  }

  async absorb(outputs: OrtFeeds): Promise<void> {
    // Each part takes the outputs of its own layers.
    for (const p of this.parts) await p.absorb(outputs);
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
