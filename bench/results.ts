// Where a bench run keeps its figures: bench/results/<machine>-<date>[-<bench>].json, committed with the README
// table they back.
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");

/**
 * bench/results/<host>-<date><suffix>.json, or -2, -3, ... when an earlier run of the day wrote that: a run (often
 * of a few rows) never overwrites another's figures.
 */
export function freeResultsFile(host: string, started: Date, suffix = ""): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stem = join(RESULTS_DIR, `${host}-${started.toISOString().slice(0, 10)}${suffix}`);
  for (let n = 1; ; n++) {
    const file = n === 1 ? `${stem}.json` : `${stem}-${n}.json`;
    if (!existsSync(file)) return file;
  }
}
