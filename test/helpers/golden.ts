// Reads the goldens the PyTorch reference wrote (format: docs/package-format.md).
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type GoldenArray =
  | { dtype: "float32"; shape: number[]; data: Float32Array }
  | { dtype: "int64"; shape: number[]; data: BigInt64Array }
  | { dtype: "int32"; shape: number[]; data: Int32Array }
  | { dtype: "uint8"; shape: number[]; data: Uint8Array };

interface IndexEntry {
  dtype: GoldenArray["dtype"];
  shape: number[];
  offset: number;
  length: number;
}

export class Golden {
  readonly meta: Record<string, unknown>;
  private readonly arrays: Record<string, IndexEntry>;
  private readonly blob: Buffer;

  constructor(readonly folder: string) {
    const doc = JSON.parse(readFileSync(join(folder, "index.json"), "utf8")) as {
      meta: Record<string, unknown>;
      arrays: Record<string, IndexEntry>;
    };
    this.meta = doc.meta;
    this.arrays = doc.arrays;
    this.blob = readFileSync(join(folder, "data.bin"));
  }

  names(): string[] {
    return Object.keys(this.arrays);
  }

  get(name: string): GoldenArray {
    const e = this.arrays[name];
    if (!e) throw new Error(`golden ${this.folder}: no array named ${name}`);
    // Copy out so the typed array is aligned and independent of the file buffer.
    const bytes = this.blob.subarray(e.offset, e.offset + e.length);
    const copy = new Uint8Array(bytes).buffer;
    switch (e.dtype) {
      case "float32":
        return { dtype: e.dtype, shape: e.shape, data: new Float32Array(copy) };
      case "int64":
        return { dtype: e.dtype, shape: e.shape, data: new BigInt64Array(copy) };
      case "int32":
        return { dtype: e.dtype, shape: e.shape, data: new Int32Array(copy) };
      case "uint8":
        return { dtype: e.dtype, shape: e.shape, data: new Uint8Array(copy) };
    }
  }

  float32(name: string): { shape: number[]; data: Float32Array } {
    const a = this.get(name);
    if (a.dtype !== "float32") throw new Error(`golden ${name} is ${a.dtype}, not float32`);
    return a;
  }

  ints(name: string): number[] {
    const a = this.get(name);
    if (a.dtype === "float32") throw new Error(`golden ${name} is float32, not an integer array`);
    return Array.from(a.data as ArrayLike<number | bigint>, (v) => Number(v));
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}
