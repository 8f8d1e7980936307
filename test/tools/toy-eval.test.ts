// tools/toy-eval.ts: the demonstrations of a nonsense-label query (pure logic; no model).
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { TOY_EVAL, drawDemos, readJsonl, type LabeledImage } from "../../tools/toy-eval.js";

const pool = readJsonl<LabeledImage>(join(TOY_EVAL, "nonsense-shape-train.jsonl"));

const query = (id: string): LabeledImage => ({ id, image: `images/${id}.png`, label: "x" });

test("demonstrations are class-balanced, depend only on (query, shots), and come from the pool", () => {
  const demos = drawDemos(pool, query("q1"), 8);
  const counts = new Map<string, number>();
  for (const d of demos) counts.set(d.label, (counts.get(d.label) ?? 0) + 1);
  assert.deepEqual([...counts.values()], [2, 2, 2, 2]);
  assert.equal(new Set(demos.map((d) => d.id)).size, 8);
  assert.deepEqual(drawDemos([...pool].reverse(), query("q1"), 8), demos);
  assert.notDeepEqual(drawDemos(pool, query("q2"), 8), demos);
  assert.equal(new Set(drawDemos(pool, query("q1"), 4).map((d) => d.label)).size, 4);
  assert.deepEqual(drawDemos(pool, query("q1"), 0), []);
});
