// Measures emu2-toy on the toy world's held-out data (fixtures/toy-eval, made by python/make_toy_eval.py) through the
// project's own runtime (the Emu2 facade: encoder, splicing, KV cache, generation and continuation scoring):
//
//   node --import tsx tools/toy-eval.ts [-m fixtures/models/emu2-toy] [--data fixtures/toy-eval] [--limit N]
//                                        [--shots 0,1,2,4,8] [--json]
//
// - captions: greedy caption of each image; "names color and shape" = the caption contains the scene's color word
//   and its shape word (singular or plural); exact = equals the reference caption.
// - vqa: greedy answer to `<image>question`, exact match after trimming and lowercasing.
// - nonsense labels: k demonstrations from the train split, class-balanced (fewshot-eval's --demos balanced), then
//   the query image; the 4 labels are ranked by the mean log-probability of their tokens.
// Results go to stdout (a table, or one JSON object with --json); progress to stderr.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Emu2 } from "../src/emu2.js";
import { balancedDemos, demoPool } from "../src/eval/demos.js";
import type { GenerationSettings } from "../src/llm/stage.js";
import { PLAIN_GREEDY } from "../src/llm/settings.js";
import type { Part, PromptInput } from "../src/prompt/types.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const TOY_PACKAGE = join(ROOT, "fixtures", "models", "emu2-toy");
export const TOY_EVAL = join(ROOT, "fixtures", "toy-eval");
// The texts the toy was trained on (python/emu2toy/data.py).
const CLASSIFY_DEMO = (label: string) => `This is a ${label}. `;
const CLASSIFY_QUERY = "What is this?";

export interface LabeledImage {
  id: string;
  image: string;
  label: string;
}

export function readJsonl<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as T);
}

/**
 * k class-balanced demonstrations for one query: fewshot-eval's `--demos balanced` draw (seed 0), so this tool and
 * `emu2 fewshot-eval --demos balanced` show a query the same demonstrations.
 */
export function drawDemos(pool: readonly LabeledImage[], query: LabeledImage, shots: number): LabeledImage[] {
  return balancedDemos(demoPool(pool), query, shots, 0);
}

export function fewShotPrompt(demos: readonly LabeledImage[], query: LabeledImage, dataDir: string): PromptInput {
  const parts: Part[] = [];
  for (const d of demos) {
    parts.push(
      { kind: "image", image: { path: resolve(dataDir, d.image) } },
      { kind: "text", text: CLASSIFY_DEMO(d.label) },
    );
  }
  parts.push({ kind: "image", image: { path: resolve(dataDir, query.image) } }, { kind: "text", text: CLASSIFY_QUERY });
  return { kind: "sequence", parts };
}

/** Accuracy of nonsense-label classification at `shots` demonstrations over `queries`. */
export async function fewShotAccuracy(
  model: Emu2,
  pool: readonly LabeledImage[],
  queries: readonly LabeledImage[],
  shots: number,
  dataDir: string,
): Promise<number> {
  const labels = [...new Set(pool.map((p) => p.label))].sort();
  let correct = 0;
  for (const query of queries) {
    const scores = await model.scoreContinuations(fewShotPrompt(drawDemos(pool, query, shots), query, dataDir), labels);
    const best = scores.reduce((a, b) => (b.mean > a.mean ? b : a));
    if (best.candidate === query.label) correct++;
  }
  return correct / queries.length;
}

function greedy(model: Emu2): GenerationSettings {
  const g = model.manifest.generation;
  return { ...PLAIN_GREEDY, maxNewTokens: g.max_new_tokens, minNewTokens: 1 };
}

async function answers(model: Emu2, prompts: PromptInput[]): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < prompts.length; i += 8) {
    const results = await model.generateText(prompts.slice(i, i + 8), greedy(model));
    out.push(...results.map((r) => r.text.trim()));
  }
  return out;
}

const clean = (s: string) => s.trim().toLowerCase().replace(/\.$/, "");

/** The generative half of the eval: greedy captions (names color and shape; exact) and VQA answers (exact), over the
 * first `limit` records of caption.jsonl and vqa.jsonl. */
export async function generativeAccuracy(
  model: Emu2,
  dataDir: string,
  limit = Infinity,
  log: (s: string) => void = () => {},
): Promise<{ results: Record<string, number>; samples: { captions: number; vqa: number } }> {
  const results: Record<string, number> = {};
  const captions = readJsonl<{ image: string; prompt: string; captions: string[]; shape: string; color: string }>(
    join(dataDir, "caption.jsonl"),
  ).slice(0, limit);
  const said = await answers(
    model,
    captions.map((c) => ({
      kind: "sequence",
      parts: [
        { kind: "image", image: { path: join(dataDir, c.image) } },
        { kind: "text", text: c.prompt },
      ],
    })),
  );
  const words = (s: string) => new Set(clean(s).split(/\s+/));
  results["caption.color_and_shape"] =
    said.filter(
      (s, i) =>
        words(s).has(captions[i].color) && (words(s).has(captions[i].shape) || words(s).has(`${captions[i].shape}s`)),
    ).length / said.length;
  results["caption.exact"] = said.filter((s, i) => clean(s) === captions[i].captions[0]).length / said.length;
  log(
    `captions: ${said
      .slice(0, 3)
      .map((s) => JSON.stringify(s))
      .join(", ")} ...`,
  );

  const vqa = readJsonl<{ image: string; question: string; answers: string[] }>(join(dataDir, "vqa.jsonl")).slice(
    0,
    limit,
  );
  const replies = await answers(
    model,
    vqa.map((q) => ({
      kind: "sequence",
      parts: [
        { kind: "image", image: { path: join(dataDir, q.image) } },
        { kind: "text", text: q.question },
      ],
    })),
  );
  results["vqa.accuracy"] = replies.filter((r, i) => clean(r) === vqa[i].answers[0]).length / replies.length;
  log(`vqa: ${results["vqa.accuracy"]}`);
  return { results, samples: { captions: captions.length, vqa: vqa.length } };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string", short: "m", default: TOY_PACKAGE },
      data: { type: "string", default: TOY_EVAL },
      limit: { type: "string" },
      shots: { type: "string", default: "0,1,2,4,8" },
      json: { type: "boolean", default: false },
    },
  });
  const dataDir = resolve(values.data!);
  const limit = values.limit === undefined ? Infinity : Number(values.limit);
  const model = Emu2.open(resolve(values.model!));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const { results, samples } = await generativeAccuracy(model, dataDir, limit, log);

  for (const attribute of ["shape", "color"]) {
    const pool = readJsonl<LabeledImage>(join(dataDir, `nonsense-${attribute}-train.jsonl`));
    const queries = readJsonl<LabeledImage>(join(dataDir, `nonsense-${attribute}-test.jsonl`)).slice(0, limit);
    for (const shots of values.shots!.split(",").map(Number)) {
      results[`nonsense_${attribute}.${shots}_shot`] = await fewShotAccuracy(model, pool, queries, shots, dataDir);
      log(`nonsense ${attribute} ${shots}-shot: ${results[`nonsense_${attribute}.${shots}_shot`]}`);
    }
  }
  await model.release();
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ model: model.manifest.name, samples, results })}\n`);
  } else {
    for (const [name, value] of Object.entries(results))
      process.stdout.write(`${name}\t${(100 * value).toFixed(1)}%\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
