// emu2 fewshot-eval merge: shard output directories -> the output of one unsharded run (the same results.json and
// predictions files), refusing shards of different runs, packages or shard counts.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../util/errors.js";
import {
  PredictionWriter,
  predictionsFile,
  readPredictions,
  readResults,
  RESULTS_FILE,
  writeJsonAtomic,
  type PredictionRecord,
} from "./run-store.js";
import { firstDifference } from "./run-store.js";
import {
  runIdentity,
  scoreRecords,
  shotsOf,
  summarizeTrials,
  trialSeeds,
  type ResultsFile,
  type TrialResult,
} from "./runner.js";

export function mergeShards(dirs: string[], outputDir: string): ResultsFile {
  if (dirs.length === 0) throw new UsageError("merge: name the shard output directories");
  const shards = dirs.map((dir) => {
    const r = readResults(dir);
    if (r === null)
      throw new UsageError(`merge: ${join(dir, RESULTS_FILE)}: no such file (not a fewshot-eval output directory)`);
    const results = r as unknown as ResultsFile;
    if (results.shard === null || results.shard === undefined)
      throw new UsageError(`merge: ${dir} is not a shard (run with --shard i/n)`);
    if (!results.complete)
      throw new UsageError(
        `merge: ${dir}: shard ${results.shard.index}/${results.shard.count} is not finished (run it again with --resume)`,
      );
    return { dir, results };
  });
  const first = shards[0];
  for (const s of shards.slice(1)) {
    const differs = firstDifference(runIdentity(first.results), runIdentity(s.results));
    if (differs !== null)
      throw new UsageError(`merge: ${s.dir} and ${first.dir} are shards of different runs (${differs} differs)`);
  }
  const count = first.results.shard!.count;
  const seen = new Map<number, string>();
  for (const s of shards) {
    const { index, count: c } = s.results.shard!;
    if (c !== count) throw new UsageError(`merge: ${s.dir} is a shard of ${c}, ${first.dir} of ${count}`);
    if (seen.has(index))
      throw new UsageError(`merge: ${s.dir} and ${seen.get(index)} are both shard ${index}/${count}`);
    seen.set(index, s.dir);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0)
    throw new UsageError(
      `merge: shard${missing.length > 1 ? "s" : ""} ${missing.map((i) => `${i}/${count}`).join(", ")} missing`,
    );
  if (existsSync(join(outputDir, RESULTS_FILE)))
    throw new UsageError(`merge: ${join(outputDir, RESULTS_FILE)} exists: choose another --output-dir`);
  if (existsSync(join(outputDir, "predictions")) && readdirSync(join(outputDir, "predictions")).length > 0) {
    throw new UsageError(`merge: ${join(outputDir, "predictions")} is not empty: choose another --output-dir`);
  }
  mkdirSync(outputDir, { recursive: true });

  const merged: ResultsFile = { ...first.results, shard: null, results: {}, complete: false };
  for (const task of merged.run.tasks) {
    const config = merged.configs[task];
    merged.results[task] = {};
    for (const shots of shotsOf(config, merged.run)) {
      const trials: TrialResult[] = [];
      for (const seed of trialSeeds(merged.run)) {
        const records: PredictionRecord[] = shards.flatMap((s) =>
          readPredictions(predictionsFile(s.dir, task, shots, seed)),
        );
        records.sort((a, b) => a.index - b.index);
        records.forEach((r, i) => {
          if (i > 0 && records[i - 1].index === r.index)
            throw new UsageError(
              `merge: sample ${r.id} (index ${r.index}) of ${task} ${shots}-shot seed ${seed} is in two shards`,
            );
        });
        const writer = new PredictionWriter(predictionsFile(outputDir, task, shots, seed));
        try {
          for (const r of records) writer.write(r);
        } finally {
          writer.close();
        }
        trials.push(scoreRecords(config, records, seed));
      }
      merged.results[task][String(shots)] = summarizeTrials(config.metric, trials);
    }
  }
  merged.complete = true;
  writeJsonAtomic(join(outputDir, RESULTS_FILE), merged);
  return merged;
}
