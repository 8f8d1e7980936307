// CIDEr-D as pycocoevalcap computes it (cider/cider_scorer.py), on captions already PTB-tokenized
// (ptb-tokenizer.ts). Checked against the official scorer in test/eval/metrics/cider.test.ts.

const MAX_N = 4;
const SIGMA = 6;

type Counts = Map<string, number>;

/** n-gram counts for n = 1..4 of a tokenized sentence (words split on whitespace); keys carry their order. */
function ngramCounts(sentence: string): Counts {
  const words = sentence.split(/\s+/).filter((w) => w.length > 0);
  const counts: Counts = new Map();
  for (let k = 1; k <= MAX_N; k++) {
    for (let i = 0; i + k <= words.length; i++) {
      const key = `${k}\u0000${words.slice(i, i + k).join("\u0000")}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

const order = (key: string) => Number(key.slice(0, key.indexOf("\u0000"))) - 1;

interface Vector {
  weights: Map<string, number>[];
  norms: number[];
  /** The scorer's "length": it counts BIGRAMS (its `n == 1` is the 0-based order), i.e. words - 1. */
  length: number;
}

export interface CiderItem {
  /** The tokenized candidate caption. */
  hypothesis: string;
  /** The tokenized reference captions of the same image (at least one). */
  references: readonly string[];
}

export interface CiderResult {
  /** Mean over images of the per-image CIDEr-D (the raw value; papers print 100x). */
  score: number;
  perImage: number[];
}

export function ciderD(items: readonly CiderItem[]): CiderResult {
  if (items.length === 0) return { score: 0, perImage: [] };
  const refCounts = items.map((item) => {
    if (item.references.length === 0) throw new Error("CIDEr needs at least one reference caption per image");
    return item.references.map(ngramCounts);
  });
  // Document frequency: in how many images' reference SETS an n-gram occurs.
  const df = new Map<string, number>();
  for (const refs of refCounts) {
    const seen = new Set<string>();
    for (const ref of refs) for (const key of ref.keys()) seen.add(key);
    for (const key of seen) df.set(key, (df.get(key) ?? 0) + 1);
  }
  const logImages = Math.log(items.length);

  const toVector = (counts: Counts): Vector => {
    const weights = Array.from({ length: MAX_N }, () => new Map<string, number>());
    const squares = new Array<number>(MAX_N).fill(0);
    let length = 0;
    for (const [key, tf] of counts) {
      const n = order(key);
      const w = tf * (logImages - Math.log(Math.max(1, df.get(key) ?? 0)));
      weights[n].set(key, w);
      squares[n] += w * w;
      if (n === 1) length += tf;
    }
    return { weights, norms: squares.map(Math.sqrt), length };
  };

  const similarity = (hyp: Vector, ref: Vector): number[] => {
    const delta = hyp.length - ref.length;
    const penalty = Math.exp(-(delta * delta) / (2 * SIGMA * SIGMA));
    return hyp.weights.map((weights, n) => {
      let value = 0;
      for (const [key, w] of weights) {
        const r = ref.weights[n].get(key) ?? 0;
        value += Math.min(w, r) * r;
      }
      if (hyp.norms[n] !== 0 && ref.norms[n] !== 0) value /= hyp.norms[n] * ref.norms[n];
      return value * penalty;
    });
  };

  const perImage = items.map((item, i) => {
    const hyp = toVector(ngramCounts(item.hypothesis));
    const sums = new Array<number>(MAX_N).fill(0);
    for (const ref of refCounts[i]) similarity(hyp, toVector(ref)).forEach((v, n) => (sums[n] += v));
    const mean = sums.reduce((s, v) => s + v, 0) / MAX_N;
    return (mean / item.references.length) * 10;
  });
  return { score: perImage.reduce((s, v) => s + v, 0) / perImage.length, perImage };
}
