// The runtime's scans over whole rows of scores (a vocabulary's worth, on every token), in WebAssembly SIMD
// (scores.wat, assembled into scores-wasm.ts). The module has one memory that holds one row at a time: loadRow
// copies a row in, and the scans read the row loaded last.
import { SCORES_WASM } from "./scores-wasm.js";

interface ScoresModule {
  memory: WebAssembly.Memory;
  argmax: (n: number) => number;
  firstAbove: (start: number, n: number, base: number, bar: number) => number;
  rowMax: (n: number) => number;
  sumExp: (n: number, max: number) => number;
  shift: (n: number, max: number, logSum: number) => void;
  /** The row's place in the module's memory (a new view whenever the memory grows). */
  row: Float32Array;
}

let scoresModule: ScoresModule | undefined;

/** scores.wat's module, instantiated on first use (synchronously: 631 bytes compile in well under a millisecond). */
function instance(): ScoresModule {
  if (!scoresModule) {
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(SCORES_WASM));
    const memory = exports.memory as WebAssembly.Memory;
    scoresModule = {
      memory,
      argmax: exports.argmax as ScoresModule["argmax"],
      firstAbove: exports.first_above as ScoresModule["firstAbove"],
      rowMax: exports.row_max as ScoresModule["rowMax"],
      sumExp: exports.sum_exp as ScoresModule["sumExp"],
      shift: exports.shift as ScoresModule["shift"],
      row: new Float32Array(memory.buffer),
    };
  }
  return scoresModule;
}

/** Copies `row` into the module's memory (as float32), growing it when the row does not fit. */
export function loadRow(row: ArrayLike<number>): void {
  const scores = instance();
  if (row.length > scores.row.length) {
    const page = 65536;
    scores.memory.grow(Math.ceil((row.length * 4 - scores.memory.buffer.byteLength) / page));
    scores.row = new Float32Array(scores.memory.buffer);
  }
  scores.row.set(row);
}

/**
 * Index of the largest score; the first one on ties (torch.argmax on CPU). Scores are read as float32, and NaN
 * scores are skipped. Greedy decoding runs this on every token: about 5 us over 32k scores, the copy included,
 * where V8's best scalar loop took 22 us alone and 37-43 us between a decode step's session runs.
 */
export function argmax(row: ArrayLike<number>): number {
  loadRow(row);
  return instance().argmax(row.length);
}

/**
 * The first index i in [start, n) of the row loaded last whose float32 sum score + base is greater than `bar`, or n
 * when there is none (NaN never is).
 */
export function firstAbove(start: number, n: number, base: number, bar: number): number {
  return instance().firstAbove(start, n, base, bar);
}

/**
 * log_softmax of a row of float32 scores, in place, as torch computes it in float32: (x - max) - log(sum(exp(x -
 * max))), the logarithm of the sum (taken in float64) rounded to float32. About 2 us per thousand scores with the
 * copies in and out (1.2 ms for 20 rows of 32,274); within 2 float32 ulps of a float64 computation
 * (test/llm/scores.test.ts).
 */
export function logSoftmaxInPlace(row: Float32Array): void {
  loadRow(row);
  const scores = instance();
  const n = row.length;
  const max = scores.rowMax(n);
  scores.shift(n, max, Math.fround(Math.log(scores.sumExp(n, max))));
  row.set(scores.row.subarray(0, n));
}
