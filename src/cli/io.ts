// Stdout carries results only; everything meant for a person (notices, progress, spinners) goes to stderr, and
// progress is drawn only when stderr is a terminal.
export interface Reporter {
  quiet: boolean;
  verbose: boolean;
  /** Whether to draw spinners and progress bars. */
  interactive: boolean;
  notice(message: string): void;
  debug(message: string): void;
}

export function makeReporter(options: { quiet?: boolean; verbose?: boolean }): Reporter {
  const quiet = options.quiet ?? false;
  const verbose = options.verbose ?? false;
  return {
    quiet,
    verbose,
    interactive: Boolean(process.stderr.isTTY) && !quiet,
    notice(message) {
      if (!quiet) process.stderr.write(`${message}\n`);
    },
    debug(message) {
      if (verbose) process.stderr.write(`${message}\n`);
    },
  };
}

export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function writeJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** commander's accumulator for repeatable flags (--image a --image b). */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
