// Runs the real emu2 binary (bin/emu2.js over the compiled dist/, as a user runs it).
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

export const BIN = resolve("bin/emu2.js");

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function emu2(
  args: string[],
  options: { input?: string | Buffer; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input: options.input ?? "",
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Asserts helper: an error is exactly one line on stderr. */
export function oneLine(text: string): boolean {
  return text.trim().length > 0 && !text.trim().includes("\n");
}
