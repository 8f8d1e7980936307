// Rows of a lookup graph's table (an embedding graph: one Gather), read by the runtime in place of a session of
// that graph. A decode step looks up one row per batch row: a session run for that cost about 15-30 us of a 260 us
// tiny step (its call, the setImmediate hop onnxruntime-node takes, and the output's copy), and the session holds
// the whole table in memory (852 MB at Emu2's width in float32). A small table is read whole once; a large one row
// by row from its file (3 us a row here), which leaves it to the page cache.
import { closeSync, existsSync, fstatSync, openSync, readSync, realpathSync } from "node:fs";
import { endianness } from "node:os";
import { dirname } from "node:path";
import { fromFloat16 } from "../util/float16.js";
import { isInside } from "../util/paths.js";
import { readLookupTable, type LookupTableLocation } from "./onnx-file.js";

/**
 * Tables up to this size are read whole when opened (4 MB for the tiny packages' 32k x 32 float32): a prompt's
 * rows then cost a copy each, where reading 75 rows from the file took longer than the session's run (0.69 against
 * 0.49 ms for a tiny prefill's first token).
 */
export const WHOLE_TABLE_BYTES = 64 * 2 ** 20;

export class LookupTable {
  private readonly rowBytes: number;
  /** One row as its file holds it, for float16 tables read row by row (converted into the output). */
  private readonly halfRow?: Uint16Array;

  private constructor(
    private fd: number | undefined,
    readonly location: LookupTableLocation,
    /** The whole table as float32, when it was read at once. */
    private whole: Float32Array | undefined,
  ) {
    this.rowBytes = location.cols * (location.dtype === "float32" ? 4 : 2);
    if (location.dtype === "float16" && !whole) this.halfRow = new Uint16Array(location.cols);
  }

  /**
   * The table of the graph in `onnxPath` when it is a plain lookup (onnx-file.ts's readLookupTable) and its file
   * holds all of it; undefined otherwise, and on a big-endian host (the file's values are little-endian). A table of
   * at most `wholeBytes` is read into memory now; a larger one is read a row at a time.
   */
  static open(onnxPath: string, wholeBytes = WHOLE_TABLE_BYTES): LookupTable | undefined {
    if (endianness() !== "LE") return undefined;
    const location = readLookupTable(onnxPath);
    // A table file that is missing, or lies outside the graph's folder (an external location with .. or a link
    // leading out), is left to the session, which reports it as it reports any graph's weights.
    if (!location || !existsSync(location.file)) return undefined;
    if (!isInside(dirname(realpathSync(onnxPath)), realpathSync(location.file))) return undefined;
    const fd = openSync(location.file, "r");
    const bytes = location.rows * location.cols * (location.dtype === "float32" ? 4 : 2);
    if (fstatSync(fd).size < location.offset + bytes) {
      closeSync(fd);
      return undefined;
    }
    const table = new LookupTable(fd, location, undefined);
    if (bytes > wholeBytes) return table;
    try {
      const raw = new Uint8Array(bytes);
      table.read(raw, location.offset);
      const values =
        location.dtype === "float32" ? new Float32Array(raw.buffer) : fromFloat16(new Uint16Array(raw.buffer));
      return new LookupTable(undefined, location, values);
    } finally {
      closeSync(fd);
    }
  }

  /** The rows of `ids`, in order, as float32 [ids.length, cols] (what the Gather outputs, as float32). */
  rows(ids: readonly number[]): Float32Array {
    if (this.fd === undefined && !this.whole) throw new Error("the lookup table was closed");
    const { cols, rows, offset } = this.location;
    const out = new Float32Array(ids.length * cols);
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= rows)
        throw new RangeError(`token id ${id} is outside the embedding table (${rows} rows)`);
      if (this.whole) {
        out.set(this.whole.subarray(id * cols, (id + 1) * cols), i * cols);
        return;
      }
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
    this.whole = undefined;
  }
}
