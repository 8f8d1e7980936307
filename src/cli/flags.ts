// The one check of every whole-number flag (--num-images, --steps, --beams, --seed, --threads, ...): digits only,
// within a range, and a message that names the flag, the range and what was given.
import { UsageError } from "../util/errors.js";

export interface WholeNumberRange {
  min?: number;
  /** At most 2^53-1, the largest integer a JavaScript number holds exactly. */
  max?: number;
  /** What the message says was expected, when the range alone would not say it well. */
  expected?: string;
}

function describe(min: number, max: number): string {
  if (max < Number.MAX_SAFE_INTEGER) return `a whole number from ${min} to ${max}`;
  return min === 1 ? "a whole number > 0" : `a whole number >= ${min}`;
}

export function wholeNumber(flag: string, value: string, range: WholeNumberRange = {}): number {
  const min = range.min ?? 0;
  const max = Math.min(range.max ?? Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const x = Number(value);
  if (!/^\d+$/.test(value) || x < min || x > max) {
    throw new UsageError(`${flag}: expected ${range.expected ?? describe(min, max)}, got ${JSON.stringify(value)}`);
  }
  return x;
}

/** The same, as a commander argument parser that checks the value when the flag is read. */
export function wholeNumberFlag(flag: string, range: WholeNumberRange = {}) {
  return (value: string): string => {
    wholeNumber(flag, value, range);
    return value;
  };
}
