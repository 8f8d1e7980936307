import assert from "node:assert/strict";
import { test } from "node:test";
import { loadSplit, type Sample } from "../../src/eval/datasets.js";
import { balancedDemos, demoPool, randomDemos, ricesDemos } from "../../src/eval/demos.js";
import { loadTaskConfig } from "../../src/eval/task-config.js";

const { config } = loadTaskConfig("vqav2");
const train = loadSplit(config, "train", "fixtures/datasets").samples;
const queries = loadSplit(config, "eval", "fixtures/datasets").samples;

/** A fixed permutation (reversed, then odd positions first): a data file in another order. */
function shuffled<T>(list: readonly T[]): T[] {
  const r = [...list].reverse();
  return [...r.filter((_, i) => i % 2 === 1), ...r.filter((_, i) => i % 2 === 0)];
}

test("random demonstrations depend only on (seed, query id): not on the order of either file", () => {
  const pool = demoPool(train);
  const pool2 = demoPool(shuffled(train));
  for (const q of queries) {
    const a = randomDemos(pool, q, 8, 3).map((d) => d.id);
    assert.equal(new Set(a).size, 8, "drawn without replacement");
    assert.deepEqual(
      randomDemos(pool2, q, 8, 3).map((d) => d.id),
      a,
      q.id,
    );
  }
  const perQuery = queries.map((q) =>
    randomDemos(pool, q, 4, 3)
      .map((d) => d.id)
      .join(),
  );
  assert.ok(new Set(perQuery).size > queries.length / 2, "queries get different draws");
  assert.notDeepEqual(
    queries.map((q) =>
      randomDemos(pool, q, 4, 4)
        .map((d) => d.id)
        .join(),
    ),
    perQuery,
    "another seed, other draws",
  );
});

test("the draw is uniform enough: every train sample is drawn as a first demonstration", () => {
  const pool = demoPool(train);
  const firsts = new Set<string>();
  for (let seed = 0; seed < 200; seed++) firsts.add(randomDemos(pool, queries[0], 1, seed)[0].id);
  assert.equal(firsts.size, train.length);
});

test("a query is never its own demonstration; k larger than the pool gives the whole pool", () => {
  const pool = demoPool(train);
  const self = train[3];
  for (let seed = 0; seed < 20; seed++) assert.ok(!randomDemos(pool, self, 5, seed).some((d) => d.id === self.id));
  assert.equal(randomDemos(pool, queries[0], 100, 0).length, train.length);
});

test("RICES: the k most similar by cosine, the MOST similar LAST, ties by id, whatever the pool order", () => {
  const s = (id: string): Sample => ({ id, image: `/${id}.png`, where: id });
  const vectors: Record<string, number[]> = { q: [1, 0], a: [0, 1], b: [1, 1], c: [2, 0.1], d: [1, 0.5], e: [1, 1] };
  const vector = (x: Sample) => Float32Array.from(vectors[x.id]);
  const pool = demoPool(["a", "b", "c", "d", "e"].map(s));
  assert.deepEqual(
    ricesDemos(pool, s("q"), 3, vector).map((d) => d.id),
    ["b", "d", "c"],
  );
  // b and e tie: b (smaller id) ranks first, so it is nearer the query.
  assert.deepEqual(
    ricesDemos(pool, s("q"), 4, vector).map((d) => d.id),
    ["e", "b", "d", "c"],
  );
  assert.deepEqual(
    ricesDemos([...pool].reverse(), s("q"), 4, vector).map((d) => d.id),
    ["e", "b", "d", "c"],
  );
});

test("balanced demonstrations show every class once before any twice, in a seeded order, from the toy nonsense-label split", () => {
  const task = loadTaskConfig("toy-nonsense-color").config;
  const pool = demoPool(loadSplit(task, "train", "fixtures").samples);
  const toyQueries = loadSplit(task, "eval", "fixtures").samples.slice(0, 20);
  const classCounts = (demos: readonly Sample[]) => {
    const counts = new Map<string, number>();
    for (const d of demos) counts.set(d.label as string, (counts.get(d.label as string) ?? 0) + 1);
    return [...counts.values()].sort();
  };
  for (const q of toyQueries) {
    assert.deepEqual(classCounts(balancedDemos(pool, q, 4, 0)), [1, 1, 1, 1], q.id);
    assert.deepEqual(classCounts(balancedDemos(pool, q, 6, 0)), [1, 1, 2, 2], q.id);
    assert.deepEqual(classCounts(balancedDemos(pool, q, 8, 0)), [2, 2, 2, 2], q.id);
    const eight = balancedDemos(pool, q, 8, 0).map((d) => d.id);
    assert.equal(new Set(eight).size, 8, "drawn without replacement");
    assert.ok(!eight.includes(q.id), "never the query itself");
    assert.deepEqual(
      balancedDemos(demoPool(shuffled(pool)), q, 8, 0).map((d) => d.id),
      eight,
    );
  }
  // The order is drawn too: the first demonstration's class varies across queries and seeds.
  const firstClasses = new Set(toyQueries.map((q, i) => balancedDemos(pool, q, 4, i)[0].label));
  assert.equal(firstClasses.size, 4);
  assert.notDeepEqual(
    toyQueries.map((q) => balancedDemos(pool, q, 4, 0)[0].id),
    toyQueries.map((q) => balancedDemos(pool, q, 4, 1)[0].id),
  );
  // ... and not in rounds (class order repeated), which a model could read the answer's position from.
  const inRounds = (d: Sample[]) => d.slice(0, 4).every((x, i) => x.label === d[i + 4].label);
  assert.ok(toyQueries.some((q) => !inRounds(balancedDemos(pool, q, 8, 0))));
  // A class with fewer samples than its share gives what it has; the others fill the rest.
  const one = pool.filter((s) => s.label !== pool[0].label).concat([pool[0]]);
  const few = balancedDemos(demoPool(one), toyQueries[0], 8, 0);
  assert.equal(few.length, 8);
  assert.equal(few.filter((d) => d.label === pool[0].label).length, 1);
  assert.throws(
    () => balancedDemos([{ ...pool[0], label: undefined }], toyQueries[0], 1, 0),
    /--demos balanced: train sample .* has no label/,
  );
});
