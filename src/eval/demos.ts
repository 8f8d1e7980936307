// Demonstrations for a query, from the train split (the protocol of OpenFlamingo's open_flamingo/eval). Both strategies depend only on the
// seed, the query and the train split's content: never on batch size, sharding, or the order of either file.
import { createHash } from "node:crypto";
import { Emu2Error } from "../util/errors.js";
import type { Sample } from "./datasets.js";

export type DemoStrategy = "random" | "rices" | "balanced";

/** What a demonstration draw reads of a sample. */
type Drawable = Pick<Sample, "id" | "image" | "label">;

const byId = (a: Drawable, b: Drawable) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The train split in id order, the order every draw starts from. */
export function demoPool<T extends Drawable>(train: readonly T[]): T[] {
  return [...train].sort(byId);
}

/** The query's own record (the same id and image) is never its own demonstration. */
function candidates<T extends Drawable>(pool: readonly T[], query: Drawable): T[] {
  return pool.filter((s) => !(s.id === query.id && s.image === query.image));
}

/** A stream of uniform numbers in [0,1) from SHA-256 of (seed, query id, counter): portable and order-free. */
function seededUniforms(seed: number, queryId: string): () => number {
  let counter = 0;
  let block: Buffer = Buffer.alloc(0);
  let at = 0;
  return () => {
    if (at + 6 > block.length) {
      block = createHash("sha256").update(`${seed}\u0000${queryId}\u0000${counter++}`).digest();
      at = 0;
    }
    // 48 random bits: exact in a double.
    const value = block.readUIntBE(at, 6) / 2 ** 48;
    at += 6;
    return value;
  };
}

/** k demonstrations drawn without replacement (a partial Fisher-Yates shuffle of the id-ordered pool). */
export function randomDemos(pool: readonly Sample[], query: Sample, k: number, seed: number): Sample[] {
  const list = candidates(pool, query);
  const uniform = seededUniforms(seed, query.id);
  const n = Math.min(k, list.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(uniform() * (list.length - i));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list.slice(0, n);
}

/**
 * k demonstrations spread over the classes, the n-way k-shot protocol of Frozen's fast-binding tasks: the classes
 * in a seeded order, each shown once before any is shown twice, each class's samples drawn at random; the k in a
 * seeded order. A random draw leaves classes out (4 draws from 4 equal classes miss the query's class about 30% of
 * the time), and a nonsense label never shown cannot be learned from the prompt. Every train sample needs a label.
 */
export function balancedDemos<T extends Drawable>(pool: readonly T[], query: Drawable, k: number, seed: number): T[] {
  const uniform = seededUniforms(seed, query.id);
  const shuffle = <T>(list: T[]): T[] => {
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    return list;
  };
  const byClass = new Map<string, T[]>();
  for (const s of candidates(pool, query)) {
    if (s.label === undefined) throw new Emu2Error(`--demos balanced: train sample ${s.id} has no label`);
    byClass.set(s.label, [...(byClass.get(s.label) ?? []), s]);
  }
  const classes = shuffle([...byClass.keys()].sort()).map((c) => shuffle(byClass.get(c) as T[]));
  const demos: T[] = [];
  for (let round = 0; demos.length < k && classes.some((c) => c.length > round); round++)
    for (const members of classes) if (demos.length < k && round < members.length) demos.push(members[round]);
  return shuffle(demos);
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/**
 * RICES: the k train samples whose image vectors are most similar (cosine) to the query's, ordered by increasing
 * similarity so the MOST similar is LAST, next to the query (as OpenFlamingo's rices.py orders them). Ties go by id.
 */
export function ricesDemos(
  pool: readonly Sample[],
  query: Sample,
  k: number,
  vector: (s: Sample) => Float32Array,
): Sample[] {
  const q = vector(query);
  const ranked = candidates(pool, query)
    .map((s) => ({ s, sim: cosine(q, vector(s)) }))
    .sort((a, b) => b.sim - a.sim || byId(a.s, b.s));
  return ranked
    .slice(0, k)
    .reverse()
    .map((r) => r.s);
}
