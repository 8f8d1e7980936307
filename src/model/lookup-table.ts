// Rows of a lookup graph's table (an embedding graph: one Gather) read straight from the package's file, in place
// of a session of that graph. A decode step looks up one row per batch row: a session run for that cost about 30 us
// of a 260 us tiny step (its call, the setImmediate hop onnxruntime-node takes, and the output's copy), and the
// session holds the whole table in memory (852 MB at Emu2's width in float32), where reading rows leaves it to the
// page cache.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { endianness } from "node:os";
import { fromFloat16 } from "../util/float16.js";
import { readLookupTable, type LookupTableLocation } from "./onnx-file.js";

export class LookupTable {
  private readonly rowBytes: number;
  /** One row as its file holds it, for float16 tables (converted into the output). */
  private readonly halfRow?: Uint16Array;

  private constructor(
    private fd: number | undefined,
    readonly location: LookupTableLocation,
  ) {
    this.rowBytes = location.cols * (location.dtype === "float32" ? 4 : 2);
    if (location.dtype === "float16") this.halfRow = new Uint16Array(location.cols);
  }

  /**
   * The table of the graph in `onnxPath` when it is a plain lookup (onnx-file.ts's readLookupTable) and its file
   * holds all of it; undefined otherwise, and on a big-endian host (the file's values are little-endian).
   */
  static open(onnxPath: string): LookupTable | undefined {
    if (endianness() !== "LE") return undefined;
    const location = readLookupTable(onnxPath);
    if (!location) return undefined;
    const fd = openSync(location.file, "r");
    const bytes = location.rows * location.cols * (location.dtype === "float32" ? 4 : 2);
    if (fstatSync(fd).size < location.offset + bytes) {
      closeSync(fd);
      return undefined;
    }
    return new LookupTable(fd, location);
  }

  get cols(): number {
    return this.location.cols;
  }

  /** The rows of `ids`, in order, as float32 [ids.length, cols] (what the Gather outputs, as float32). */
  rows(ids: readonly number[]): Float32Array {
    if (this.fd === undefined) throw new Error("the lookup table was closed");
    const { cols, rows, offset } = this.location;
    const out = new Float32Array(ids.length * cols);
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= rows)
        throw new RangeError(`token id ${id} is outside the embedding table (${rows} rows)`);
      const at = offset + id * this.rowBytes;
      if (this.halfRow) {
        this.read(new Uint8Array(this.halfRow.buffer), at);
        fromFloat16(this.halfRow, out.subarray(i * cols, (i + 1) * cols));
      } else this.read(new Uint8Array(out.buffer, i * this.rowBytes, this.rowBytes), at);
    });
    return out;
  }

  private read(into: Uint8Array, position: number): void {
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.fd as number, into, done, into.length - done, position + done);
      if (n === 0) throw new Error(`${this.location.file}: ends inside the lookup table`);
      done += n;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
