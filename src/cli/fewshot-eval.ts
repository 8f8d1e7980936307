// emu2 fewshot-eval: the paper's few-shot benchmarks (configs/eval/*.yaml), lm-evaluation-harness style flags,
// resumable, shardable, with predictions written as the run goes. Summary lines and the final table on stdout
// (or one JSON object with --json); progress bars on stderr when it is a terminal.
import { join, resolve } from "node:path";
import { Option, type Command } from "commander";
import { Emu2 } from "../emu2.js";
import { mergeShards } from "../eval/merge.js";
import {
  loadTasks,
  resolveDataDir,
  runFewshotEval,
  type ResultsFile,
  type RunSettings,
  type Shard,
  type ShotResult,
} from "../eval/runner.js";
import { loadTaskConfig } from "../eval/task-config.js";
import { UsageError } from "../util/errors.js";
import { wholeNumber } from "./flags.js";
import { interruptible, Interrupted } from "./interrupt.js";
import { makeReporter, writeJson } from "./io.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";
import { progressBar, type Progress } from "./progress.js";

interface FewshotFlags extends ModelOptions {
  tasks?: string;
  shots?: string;
  trials: string;
  seed: string;
  demos: "random" | "rices" | "balanced";
  limit?: string;
  batchSize: string;
  outputDir: string;
  resume?: boolean;
  shard?: string;
  dataDir?: string;
  featureCache?: string | false;
  json?: boolean;
  quiet?: boolean;
}

export function parseShots(value: string): number[] {
  const shots = value.split(",").map((s) => wholeNumber("--shots", s.trim(), { min: 0 }));
  if (new Set(shots).size !== shots.length) throw new UsageError(`--shots: ${value} repeats a shot count`);
  return shots;
}

export function parseShard(value: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2]))
    throw new UsageError(`--shard: expected i/n with 0 <= i < n (e.g. 0/4), got ${JSON.stringify(value)}`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

function formatShot(r: ShotResult): string {
  if (r.mean === null || r.std === null) return "n/a";
  return r.trials.length > 1 ? `${r.mean.toFixed(2)} ± ${r.std.toFixed(2)}` : r.mean.toFixed(2);
}

/** One line per task and shot count as it finishes. */
export function summaryLine(task: string, shots: number, r: ShotResult): string {
  const n = r.trials[0]?.n ?? 0;
  const skipped = r.trials.reduce((s, t) => s + t.skipped, 0);
  const trials = r.trials.length > 1 ? `, trials ${r.trials.map((t) => t.score?.toFixed(2) ?? "n/a").join(" ")}` : "";
  const note = r.trials.find((t) => t.note)?.note;
  return `${task} ${shots}-shot ${r.metric}: ${formatShot(r)} (n=${n}${skipped > 0 ? `, skipped ${skipped}` : ""}${trials})${note ? `: ${note}` : ""}`;
}

/** The final table: a row per task, a column per shot count. */
export function resultsTable(results: ResultsFile): string {
  const shots = [...new Set(Object.values(results.results).flatMap((byShot) => Object.keys(byShot).map(Number)))].sort(
    (a, b) => a - b,
  );
  const rows = [["task", "metric", ...shots.map((s) => `${s}-shot`)]];
  for (const [task, byShot] of Object.entries(results.results)) {
    const metric = Object.values(byShot)[0]?.metric ?? "";
    rows.push([task, metric, ...shots.map((s) => (byShot[String(s)] ? formatShot(byShot[String(s)]) : "-"))]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return (
    rows
      .map((r) =>
        r
          .map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

export function registerFewshotEval(program: Command): void {
  const command = program
    .command("fewshot-eval")
    .description(
      "few-shot benchmarks (VQAv2, OK-VQA, VizWiz, TextVQA, Hateful Memes, COCO, Flickr30k, class folders, your JSONL)",
    )
    .option("--tasks <list>", "comma-separated task names (configs/eval/*.yaml) or paths to task configs")
    .option("--shots <list>", "comma-separated shot counts (default: each task's own, e.g. 0,4,8,16)")
    .option("--trials <n>", "trials per shot count, seeds --seed, --seed+1, ...", "1")
    .option("--seed <n>", "seed of the first trial (demonstrations depend only on the seed and the query)", "0")
    .addOption(
      new Option(
        "--demos <strategy>",
        "how demonstrations are chosen: random, rices (most similar images), balanced (classification: every class shown before any twice)",
      )
        .choices(["random", "rices", "balanced"])
        .default("random"),
    )
    .option("--limit <n>", "evaluate only the first N samples of each task")
    .option("-b, --batch-size <n>", "prompts generated together (results do not depend on it)", "1")
    .option("-o, --output-dir <dir>", "where results.json and the predictions go", "emu2-eval")
    .option("--resume", "continue the run in --output-dir (it must be the same run: tasks, settings, package)")
    .option("--shard <i/n>", "run slice i of n (0-based); combine with `emu2 fewshot-eval merge`")
    .option("--data-dir <dir>", "root of the datasets (default: $EMU2_DATA, else the current folder)")
    .option("--feature-cache <dir>", "image feature cache (default: <output-dir>/features)")
    .option("--no-feature-cache", "encode every image of every prompt again")
    .option("--json", "print the results object instead of the summary and table")
    .option("-q, --quiet", "no notices or progress on stderr");
  addModelOptions(command).action(async (flags: FewshotFlags) => {
    const reporter = makeReporter(flags);
    if (!flags.tasks) throw new UsageError("--tasks: name at least one task (e.g. --tasks vqav2,okvqa)");
    const settings: RunSettings = {
      trials: wholeNumber("--trials", flags.trials, { min: 1 }),
      seed: wholeNumber("--seed", flags.seed, { min: 0 }),
      demos: flags.demos,
      limit: flags.limit === undefined ? null : wholeNumber("--limit", flags.limit, { min: 1 }),
      shots: flags.shots === undefined ? null : parseShots(flags.shots),
    };
    const batchSize = wholeNumber("--batch-size", flags.batchSize, { min: 1 });
    const shard = flags.shard === undefined ? null : parseShard(flags.shard);
    const dataDir = resolveDataDir(flags.dataDir);
    const names = flags.tasks
      .split(",")
      .map((t) => t.trim())
      .filter((t) => t.length > 0);
    // Every config and data file is checked before the model is opened.
    const tasks = loadTasks(names.map(loadTaskConfig), dataDir);
    const videoTask = tasks.find((t) => t.config.format === "video_qa");
    if (videoTask && settings.demos === "rices")
      throw new UsageError(
        `--demos rices ranks demonstrations by image features: task ${videoTask.config.name} has videos (use --demos random)`,
      );
    const unlabelled = tasks.find((t) => t.config.kind !== "classification");
    if (unlabelled && settings.demos === "balanced")
      throw new UsageError(
        `--demos balanced draws demonstrations per class: task ${unlabelled.config.name} is a ${unlabelled.config.kind} task (use --demos random)`,
      );
    for (const t of tasks) {
      for (const s of [...t.eval.skipped, ...t.train.skipped].slice(0, 5))
        reporter.notice(`emu2: skipped ${s.where}: ${s.reason}`);
      const more = t.eval.skipped.length + t.train.skipped.length - 5;
      if (more > 0) reporter.notice(`emu2: ${t.config.name}: ${more} more skipped records (listed in results.json)`);
    }
    const outputDir = resolve(flags.outputDir);
    const model = new Emu2(openModel(flags, reporter));
    let interrupted = false;
    let bar: Progress | null = null;
    let barLabel = "";
    let results: ResultsFile;
    try {
      results = await interruptible(async (signal) => {
        const run = await runFewshotEval(
          {
            model,
            tasks,
            settings,
            outputDir,
            resume: flags.resume ?? false,
            shard,
            batchSize,
            featureCacheDir:
              flags.featureCache === false ? null : resolve(flags.featureCache ?? join(outputDir, "features")),
            signal,
          },
          {
            onProgress: (label, done, total) => {
              if (label !== barLabel) {
                bar?.stop();
                bar = progressBar(reporter, label, total);
                barLabel = label;
              }
              bar?.update(done);
            },
            onProgressEnd: () => {
              bar?.stop();
              bar = null;
              barLabel = "";
            },
            onShotResult: (task, shots, r) => {
              if (!flags.json) process.stdout.write(`${summaryLine(task, shots, r)}\n`);
            },
            onNotice: (m) => reporter.notice(m),
          },
        );
        interrupted = signal.aborted;
        return run;
      });
    } finally {
      await model.release();
    }
    if (interrupted)
      throw new Interrupted(`interrupted: the predictions so far are in ${outputDir}; --resume continues`);
    if (flags.json) writeJson(results);
    else process.stdout.write(`\n${resultsTable(results)}`);
  });

  command
    .command("merge")
    .description("combine the output directories of --shard i/n runs into the results of one unsharded run")
    .argument("<dirs...>", "shard output directories")
    .option("--json", "print the results object instead of the table")
    .addHelpText("after", "\nThe merged output goes to fewshot-eval's -o/--output-dir, which merge requires.")
    .action((dirs: string[], flags: { json?: boolean }) => {
      // commander hands -o to the parent command (whose option it is) wherever it stands on the line.
      if (command.getOptionValueSource("outputDir") === "default")
        throw new UsageError("merge: -o/--output-dir is required (where the merged results go)");
      const results = mergeShards(
        dirs.map((d) => resolve(d)),
        resolve((command.opts() as FewshotFlags).outputDir),
      );
      if (flags.json) writeJson(results);
      else process.stdout.write(resultsTable(results));
    });
}
