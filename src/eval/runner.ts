// emu2 fewshot-eval's engine: for each task, shot count and trial seed, build every query's few-shot prompt, run
// the model through the facade (generation, or classification by ranking class names), append one record per
// sample to the predictions JSONL, and score. Results are recomputed from the records, so a resumed run, a merged
// set of shards and an uninterrupted run end with the same results.json.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Emu2 } from "../emu2.js";
import type { GenerationSettings } from "../llm/stage.js";
import type { PromptInput } from "../prompt/types.js";
import { Emu2Error, errorMessage, UsageError } from "../util/errors.js";
import { VERSION } from "../index.js";
import { DataError } from "./json-files.js";
import { loadSplit, taskClasses, type LoadedSplit, type Sample, type Skipped } from "./datasets.js";
import { balancedDemos, demoPool, randomDemos, ricesDemos, type DemoStrategy } from "./demos.js";
import { FeatureCache } from "./feature-cache.js";
import { vqaAccuracy } from "./metrics/vqa.js";
import { buildPrompt, cleanPrediction } from "./prompts.js";
import {
  canonical,
  firstDifference,
  PredictionWriter,
  predictionsFile,
  readPredictions,
  readResults,
  RESULTS_FILE,
  writeJsonAtomic,
  type PredictionRecord,
} from "./run-store.js";
import {
  scoreAccuracyItems,
  scoreCaptionItems,
  scoreRocAucItems,
  scoreVqaItems,
  type ScoreReport,
} from "./score-files.js";
import { checkDataFiles, type TaskConfig } from "./task-config.js";

export interface Shard {
  index: number;
  count: number;
}

export interface RunSettings {
  trials: number;
  seed: number;
  demos: DemoStrategy;
  /** Evaluate only the first N samples of each task's eval split. */
  limit: number | null;
  /** Shot counts for every task (default: each config's own). */
  shots: number[] | null;
}

export interface TaskData {
  config: TaskConfig;
  file: string;
  eval: LoadedSplit;
  train: LoadedSplit;
  classes: string[] | null;
}

export interface TrialResult {
  seed: number;
  /** null when the metric is undefined on these samples (ROC-AUC of one class, e.g. in a small shard). */
  score: number | null;
  /** Why there is no score. */
  note?: string;
  n: number;
  skipped: number;
  breakdown: Record<string, unknown>;
}

export interface ShotResult {
  metric: string;
  trials: TrialResult[];
  /** null when a trial has no score. */
  mean: number | null;
  /** Population standard deviation over trials (numpy's default, as OpenFlamingo reports). */
  std: number | null;
}

export interface ResultsFile {
  emu2_version: string;
  package: { name: string; manifest_sha256: string };
  run: RunSettings & { tasks: string[] };
  configs: Record<string, TaskConfig>;
  /** Samples of each split that could not be used, with where and why (first 100 listed). */
  data_skipped: Record<string, { eval: number; train: number; examples: Skipped[] }>;
  shard: Shard | null;
  results: Record<string, Record<string, ShotResult>>;
  complete: boolean;
}

const MAX_SKIPPED_LISTED = 100;

/** Loads and checks every task before any model work: configs, data files, records. */
export function loadTasks(configs: { config: TaskConfig; file: string }[], dataDir: string): TaskData[] {
  const names = new Set<string>();
  for (const { config, file } of configs) {
    if (names.has(config.name)) throw new UsageError(`${file}: task ${config.name} is given twice`);
    names.add(config.name);
    checkDataFiles(config, file, dataDir);
  }
  return configs.map(({ config, file }) => {
    const evalSplit = loadSplit(config, "eval", dataDir);
    const trainSplit = loadSplit(config, "train", dataDir);
    const classes = config.kind === "classification" ? taskClasses(config, evalSplit, trainSplit) : null;
    return { config, file, eval: evalSplit, train: trainSplit, classes };
  });
}

export function manifestSha256(model: Emu2): string {
  return createHash("sha256")
    .update(readFileSync(model.pkg.path("manifest.yaml")))
    .digest("hex");
}

/** The slice of a task's evaluation list this run does: first --limit samples, then every count-th for a shard. */
export function evalList(
  task: TaskData,
  limit: number | null,
  shard: Shard | null,
): { sample: Sample; index: number }[] {
  const all = (limit === null ? task.eval.samples : task.eval.samples.slice(0, limit)).map((sample, index) => ({
    sample,
    index,
  }));
  return shard === null ? all : all.filter((x) => x.index % shard.count === shard.index);
}

export function trialSeeds(settings: RunSettings): number[] {
  return Array.from({ length: settings.trials }, (_, t) => settings.seed + t);
}

export function shotsOf(config: TaskConfig, settings: RunSettings): number[] {
  return settings.shots ?? config.shots;
}

/** The score of one trial, from its records in index order. */
export function scoreRecords(config: TaskConfig, records: PredictionRecord[], seed: number): TrialResult {
  const ran = [...records].sort((a, b) => a.index - b.index).filter((r) => r.skipped === undefined);
  const skipped = records.length - ran.length;
  let report: ScoreReport;
  if (ran.length === 0) return { seed, score: null, note: "no sample could be run", n: 0, skipped, breakdown: {} };
  try {
    report = scoreItems(config, ran);
  } catch (err) {
    if (!(err instanceof DataError)) throw err;
    return { seed, score: null, note: err.message, n: ran.length, skipped, breakdown: {} };
  }
  return { seed, score: report.score, n: report.n, skipped, breakdown: report.breakdown };
}

function scoreItems(config: TaskConfig, ran: PredictionRecord[]): ScoreReport {
  switch (config.metric) {
    case "vqa":
      return scoreVqaItems(
        ran.map((r) => ({
          prediction: r.prediction!,
          answers: r.references!,
          answerType: r.answer_type,
          questionType: r.question_type,
        })),
        config.vqa_always_normalize,
      );
    case "cider":
      return scoreCaptionItems(ran.map((r) => ({ prediction: r.prediction!, references: r.references! })));
    case "roc-auc":
      return scoreRocAucItems(ran.map((r) => ({ probability: r.probability!, positive: r.positive! })));
    case "accuracy":
      return scoreAccuracyItems(ran.map((r) => ({ prediction: r.prediction!, label: r.label! })));
  }
}

export function summarizeTrials(metric: string, trials: TrialResult[]): ShotResult {
  if (trials.some((t) => t.score === null)) return { metric, trials, mean: null, std: null };
  const scores = trials.map((t) => t.score!);
  const mean = scores.reduce((s, v) => s + v, 0) / scores.length;
  const variance = scores.reduce((s, v) => s + (v - mean) ** 2, 0) / scores.length;
  return { metric, trials, mean, std: Math.sqrt(variance) };
}

export function dataSkipped(tasks: TaskData[]): ResultsFile["data_skipped"] {
  return Object.fromEntries(
    tasks.map((t) => [
      t.config.name,
      {
        eval: t.eval.skipped.length,
        train: t.train.skipped.length,
        examples: [...t.eval.skipped, ...t.train.skipped].slice(0, MAX_SKIPPED_LISTED),
      },
    ]),
  );
}

/** What must be equal for two output directories to hold parts of the same run (resume, merge). */
export function runIdentity(
  r: Pick<ResultsFile, "emu2_version" | "package" | "run" | "configs">,
): Record<string, unknown> {
  return { emu2_version: r.emu2_version, package: r.package, run: r.run, configs: r.configs };
}

export interface RunCallbacks {
  /** A bar per task, shot count and seed: called with the samples done so far. */
  onProgress?: (label: string, done: number, total: number) => void;
  onProgressEnd?: () => void;
  /** A task and shot count finished all its trials. */
  onShotResult?: (task: string, shots: number, result: ShotResult) => void;
  onNotice?: (message: string) => void;
}

export interface RunRequest {
  model: Emu2;
  tasks: TaskData[];
  settings: RunSettings;
  outputDir: string;
  resume: boolean;
  shard: Shard | null;
  batchSize: number;
  /** null: no feature cache on disk (every image of every prompt goes through the encoder). */
  featureCacheDir: string | null;
  signal?: AbortSignal;
}

function generationSettings(model: Emu2, config: TaskConfig): GenerationSettings {
  const d = model.manifest.generation;
  return {
    maxNewTokens: config.decoding.max_new_tokens ?? d.max_new_tokens,
    minNewTokens: config.decoding.min_new_tokens ?? d.min_new_tokens,
    numBeams: config.decoding.num_beams ?? d.num_beams,
    lengthPenalty: config.decoding.length_penalty ?? d.length_penalty,
    repetitionPenalty: d.repetition_penalty,
    // Evaluation decodes deterministically (beam search or greedy), whatever the package's chat defaults say.
    doSample: false,
    temperature: d.temperature,
    topK: d.top_k,
    topP: d.top_p,
    seed: 0,
    stop: [],
  };
}

/** Natural log-probabilities -> probabilities (softmax), for p(positive class). */
function softmax(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((s, v) => s + v, 0);
  return exps.map((v) => v / sum);
}

export async function runFewshotEval(request: RunRequest, callbacks: RunCallbacks = {}): Promise<ResultsFile> {
  const { model, tasks, settings, outputDir, shard } = request;
  const results: ResultsFile = {
    emu2_version: VERSION,
    package: { name: model.pkg.name, manifest_sha256: manifestSha256(model) },
    run: { ...settings, tasks: tasks.map((t) => t.config.name) },
    configs: Object.fromEntries(tasks.map((t) => [t.config.name, t.config])),
    data_skipped: dataSkipped(tasks),
    shard,
    results: {},
    complete: false,
  };
  const existing = readResults(outputDir);
  const predictionsDir = join(outputDir, "predictions");
  if (existing === null && existsSync(predictionsDir) && readdirSync(predictionsDir).length > 0) {
    throw new UsageError(
      `${predictionsDir} holds predictions but ${join(outputDir, RESULTS_FILE)} is missing: choose another --output-dir`,
    );
  }
  if (existing !== null) {
    const where = join(outputDir, RESULTS_FILE);
    if (!request.resume)
      throw new UsageError(`${where} exists: pass --resume to continue that run, or choose another --output-dir`);
    const differs = firstDifference(runIdentity(existing as unknown as ResultsFile), runIdentity(results));
    if (differs !== null)
      throw new UsageError(
        `--resume: ${where} was made by a different run (${differs} differs): choose another --output-dir`,
      );
    if (canonical(existing.shard ?? null) !== canonical(shard))
      throw new UsageError(`--resume: ${where} is shard ${canonical(existing.shard)}, not ${canonical(shard)}`);
  }
  mkdirSync(outputDir, { recursive: true });
  writeJsonAtomic(join(outputDir, RESULTS_FILE), results);

  const cache = new FeatureCache(model, request.featureCacheDir);
  for (const task of tasks) {
    const config = task.config;
    const pool = demoPool(task.train.samples);
    const list = evalList(task, settings.limit, shard);
    const shotsList = shotsOf(config, settings);
    const maxShots = Math.max(...shotsList);
    // RICES ranks the train split by each query's image: every vector first (from the disk cache when there).
    // A train image that cannot be read is never ranked; an eval image that cannot be read skips its sample.
    const rices = settings.demos === "rices" && maxShots > 0;
    if (rices) {
      callbacks.onNotice?.(
        `emu2: ${config.name}: image vectors of ${pool.length} train and ${list.length} eval samples for RICES`,
      );
      for (const s of [...pool, ...list.map((x) => x.sample)]) {
        try {
          await cache.vector(s.image);
        } catch (err) {
          if (!(err instanceof Emu2Error)) throw err;
        }
      }
    }
    const ricesPool = rices ? pool.filter((s) => cache.knownVector(s.image) !== undefined) : pool;
    const vectorOf = (s: Sample) => {
      const known = cache.knownVector(s.image);
      if (!known) throw new Emu2Error(`${s.where}: image ${s.image} could not be read`);
      return known;
    };
    const decoding = generationSettings(model, config);
    results.results[config.name] = {};
    for (const shots of shotsList) {
      const trials: TrialResult[] = [];
      for (const seed of trialSeeds(settings)) {
        const file = predictionsFile(outputDir, config.name, shots, seed);
        const done = request.resume ? readPredictions(file) : [];
        const doneIds = new Set(done.map((r) => r.id));
        const todo = list.filter((x) => !doneIds.has(x.sample.id));
        const label = `${config.name} ${shots}-shot seed ${seed}`;
        let finished = list.length - todo.length;
        callbacks.onProgress?.(label, finished, list.length);
        const writer = new PredictionWriter(file);
        try {
          for (let start = 0; start < todo.length && !request.signal?.aborted; start += request.batchSize) {
            const batch = todo.slice(start, start + request.batchSize);
            const prepared = batch.map(({ sample, index }) => {
              try {
                const demos =
                  shots === 0
                    ? []
                    : settings.demos === "rices"
                      ? ricesDemos(ricesPool, sample, shots, vectorOf)
                      : settings.demos === "balanced"
                        ? balancedDemos(pool, sample, shots, seed)
                        : randomDemos(pool, sample, shots, seed);
                return { sample, index, demos, prompt: buildPrompt(config, sample, demos) };
              } catch (err) {
                if (!(err instanceof Emu2Error)) throw err;
                return { sample, index, demos: [] as Sample[], error: errorMessage(err) };
              }
            });
            const records = await runBatch(model, task, prepared, decoding, cache, request.signal);
            if (records === null) break;
            for (const record of records) writer.write(record);
            finished += batch.length;
            callbacks.onProgress?.(label, finished, list.length);
          }
        } finally {
          writer.close();
          callbacks.onProgressEnd?.();
        }
        if (request.signal?.aborted) return results;
        trials.push(scoreRecords(config, readPredictions(file), seed));
      }
      const shotResult = summarizeTrials(config.metric, trials);
      results.results[config.name][String(shots)] = shotResult;
      writeJsonAtomic(join(outputDir, RESULTS_FILE), results);
      callbacks.onShotResult?.(config.name, shots, shotResult);
    }
  }
  results.complete = true;
  writeJsonAtomic(join(outputDir, RESULTS_FILE), results);
  return results;
}

interface PreparedQuery {
  sample: Sample;
  index: number;
  demos: Sample[];
  prompt?: PromptInput;
  error?: string;
}

/** Runs one batch; null when it was interrupted (nothing of it is written). */
async function runBatch(
  model: Emu2,
  task: TaskData,
  batch: PreparedQuery[],
  decoding: GenerationSettings,
  cache: FeatureCache,
  signal?: AbortSignal,
): Promise<PredictionRecord[] | null> {
  const config = task.config;
  const base = (q: PreparedQuery): PredictionRecord => ({
    id: q.sample.id,
    index: q.index,
    demos: q.demos.map((d) => d.id),
  });
  const records: (PredictionRecord | null)[] = batch.map((q) =>
    q.error !== undefined ? { ...base(q), skipped: q.error } : null,
  );
  const runnable = batch.map((q, i) => ({ q, i })).filter(({ q }) => q.error === undefined);
  if (config.kind === "classification") {
    const classes = task.classes!;
    for (const { q, i } of runnable) {
      if (signal?.aborted) return null;
      try {
        const scores = await model.scoreContinuations(q.prompt!, classes, { imageFeatures: cache.source });
        const means = scores.map((s) => s.mean);
        let best = 0;
        means.forEach((m, k) => (m > means[best] ? (best = k) : undefined));
        const record: PredictionRecord = {
          ...base(q),
          raw: classes[best],
          prediction: classes[best],
          label: q.sample.label,
          class_scores: Object.fromEntries(classes.map((c, k) => [c, means[k]])),
          score: classes[best] === q.sample.label ? 1 : 0,
        };
        if (config.positive_class !== undefined) {
          record.probability = softmax(means)[classes.indexOf(config.positive_class)];
          record.positive = q.sample.label === config.positive_class;
        }
        records[i] = record;
      } catch (err) {
        if (!(err instanceof Emu2Error)) throw err;
        records[i] = { ...base(q), skipped: errorMessage(err) };
      }
    }
  } else if (runnable.length > 0) {
    const outputs = await model.generateTextEach(
      runnable.map(({ q }) => q.prompt!),
      decoding,
      { signal, imageFeatures: cache.source, frames: config.video_frames },
    );
    if (signal?.aborted) return null;
    outputs.forEach((out, k) => {
      const { q, i } = runnable[k];
      if ("error" in out) {
        records[i] = { ...base(q), skipped: errorMessage(out.error) };
        return;
      }
      const prediction = cleanPrediction(config, out.text);
      if (config.kind === "vqa") {
        records[i] = {
          ...base(q),
          raw: out.text,
          prediction,
          references: q.sample.answers,
          answer_type: q.sample.answerType,
          question_type: q.sample.questionType,
          score: vqaAccuracy(prediction, q.sample.answers!, { alwaysNormalize: config.vqa_always_normalize }),
        };
      } else {
        records[i] = { ...base(q), raw: out.text, prediction, references: q.sample.captions };
      }
    });
  }
  return records.map((r) => r!);
}

export function resolveDataDir(flag: string | undefined): string {
  return resolve(flag ?? process.env.EMU2_DATA ?? ".");
}
