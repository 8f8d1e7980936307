// Where a bench run keeps its figures: bench/results/<machine>-<date>[-<bench>].json, committed with the README
// table they back.
import { mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");

/**
 * bench/results/<host>-<date><suffix>.json, or -2, -3, ... after the highest number of the day: a run (often of a
 * few rows) never overwrites another's figures, nor takes the name of one removed since (git history keeps those).
 */
export function freeResultsFile(host: string, started: Date, suffix = ""): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const name = `${host}-${started.toISOString().slice(0, 10)}${suffix}`;
  const taken = readdirSync(RESULTS_DIR)
    .map((file) =>
      file === `${name}.json` ? 1 : file.startsWith(`${name}-`) ? Number(file.slice(name.length + 1, -5)) : 0,
    )
    .filter((n) => Number.isInteger(n) && n > 0);
  const n = Math.max(0, ...taken) + 1;
  return join(RESULTS_DIR, n === 1 ? `${name}.json` : `${name}-${n}.json`);
}
