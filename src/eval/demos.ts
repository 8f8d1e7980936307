// Demonstrations for a query, from the train split (the protocol of OpenFlamingo's open_flamingo/eval). Both strategies depend only on the
// seed, the query and the train split's content: never on batch size, sharding, or the order of either file.
import { createHash } from "node:crypto";
import type { Sample } from "./datasets.js";

export type DemoStrategy = "random" | "rices";

const byId = (a: Sample, b: Sample) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The train split in id order, the order every draw starts from. */
export function demoPool(train: readonly Sample[]): Sample[] {
  return [...train].sort(byId);
}

/** The query's own record (the same id and image) is never its own demonstration. */
function candidates(pool: readonly Sample[], query: Sample): Sample[] {
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
