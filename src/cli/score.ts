// emu2 score: re-scores saved predictions without a model (official formats, or fewshot-eval's predictions JSONL).
import { Option, type Command } from "commander";
import { METRICS, scoreFiles, type MetricName, type ScoreReport } from "../eval/score-files.js";
import { writeJson } from "./io.js";

interface ScoreFlags {
  metric: MetricName;
  predictions: string;
  references?: string;
  questions?: string;
  vqaAlwaysNormalize?: boolean;
  json?: boolean;
}

function formatNumber(value: unknown): string {
  return typeof value === "number"
    ? Number.isInteger(value)
      ? String(value)
      : value.toFixed(2)
    : JSON.stringify(value);
}

/** The report as text: "metric: score (n=...)" and one line per breakdown entry. */
export function formatScoreReport(report: ScoreReport): string {
  const lines = [`${report.metric}: ${report.score.toFixed(2)} (n=${report.n})`];
  for (const [name, value] of Object.entries(report.breakdown)) {
    if (value !== null && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        // Scores of a breakdown print like the score itself (two decimals); counts stay whole.
        const shown =
          v !== null && typeof v === "object"
            ? Object.entries(v)
                .map(([a, b]) => `${a}=${formatNumber(b)}`)
                .join(" ")
            : typeof v === "number"
              ? v.toFixed(2)
              : formatNumber(v);
        lines.push(`  ${name} ${k}: ${shown}`);
      }
    } else {
      lines.push(`  ${name}: ${formatNumber(value)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export function registerScore(program: Command): void {
  program
    .command("score")
    .description(
      "score saved predictions without a model (VQA, COCO captions, Hateful Memes formats, or fewshot-eval output)",
    )
    .addOption(new Option("--metric <metric>", "the metric").choices([...METRICS]).makeOptionMandatory())
    .requiredOption(
      "--predictions <file>",
      "predictions: [{question_id, answer}], [{image_id, caption}], [{id, prediction}] (JSON or JSONL), or a fewshot-eval predictions JSONL",
    )
    .option(
      "--references <file>",
      "VQA annotations, COCO caption annotations or Hateful Memes JSONL (not needed for fewshot-eval predictions)",
    )
    .option("--questions <file>", "VQA questions: every annotated question must be in it")
    .option(
      "--vqa-always-normalize",
      "VQA: normalize answers even when all ground-truth answers are identical (OpenFlamingo) instead of the official script's behaviour",
    )
    .option("--json", "print one JSON object")
    .action((flags: ScoreFlags) => {
      const report = scoreFiles({
        metric: flags.metric,
        predictions: flags.predictions,
        references: flags.references,
        questions: flags.questions,
        alwaysNormalize: flags.vqaAlwaysNormalize,
      });
      if (flags.json) writeJson(report);
      else process.stdout.write(formatScoreReport(report));
    });
}
