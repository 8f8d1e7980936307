// Rows of a lookup graph's table (an embedding graph: one Gather), read by the runtime in place of a session of
// that graph. A decode step looks up one row per batch row: a session run for that cost about 15-30 us of a 260 us
// tiny step (its call, the setImmediate hop onnxruntime-node takes, and the output's copy). A small table is read
// whole when it opens; a large one is read whole in the background, and until it is in memory its rows are read one
// by one from the file. Rows read from the file come from the page cache only while the kernel keeps the file's
// pages there, and this VM drops them within seconds with 11 GB free (fincore: 180 of the stand-in table's 820 MB
// left): beam 5 at batch 4 at Emu2's width then read its 20 rows a step from disk, 2-7 ms of a 330-545 ms step.
import { closeSync, existsSync, fstatSync, openSync, read, readSync, realpathSync } from "node:fs";
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

/**
 * Tables up to this size are held in memory once the background read has them (Emu2's is 852 MB in float32, 426 MB
 * in float16: what a session of the graph would hold); a larger one (a vocabulary or width far beyond Emu2's) stays
 * in its file and is read a row at a time.
 */
export const HELD_TABLE_BYTES = 2 * 2 ** 30;

/** The background read's chunk: large enough for few calls, small enough that closing waits for little. */
const LOAD_CHUNK_BYTES = 8 * 2 ** 20;

export class LookupTable {
  private readonly rowBytes: number;
  /** One row as its file holds it, for float16 rows read from the file (converted into the output). */
  private readonly halfRow?: Uint16Array;
  /** The whole table as its file holds it, once it is read. */
  private whole?: Float32Array | Uint16Array;
  /** The background read of the whole table, while it runs. */
  private loading?: Promise<void>;
  private closed = false;

  private constructor(
    /** The table's file, until the table is closed or read whole when it opened. */
    private fd: number | undefined,
    readonly location: LookupTableLocation,
  ) {
    this.rowBytes = location.cols * (location.dtype === "float32" ? 4 : 2);
    if (location.dtype === "float16") this.halfRow = new Uint16Array(location.cols);
  }

  private get bytes(): number {
    return this.location.rows * this.rowBytes;
  }

  /**
   * The table of the graph in `onnxPath` when it is a plain lookup (onnx-file.ts's readLookupTable) and its file
   * holds all of it; undefined otherwise, and on a big-endian host (the file's values are little-endian). A table of
   * at most `wholeBytes` is read into memory now; one of at most `heldBytes` in the background (whenRead).
   */
  static open(onnxPath: string, wholeBytes = WHOLE_TABLE_BYTES, heldBytes = HELD_TABLE_BYTES): LookupTable | undefined {
    if (endianness() !== "LE") return undefined;
    const location = readLookupTable(onnxPath);
    // A table file that is missing, or lies outside the graph's folder (an external location with .. or a link
    // leading out), is left to the session, which reports it as it reports any graph's weights.
    if (!location || !existsSync(location.file)) return undefined;
    if (!isInside(dirname(realpathSync(onnxPath)), realpathSync(location.file))) return undefined;
    const fd = openSync(location.file, "r");
    const table = new LookupTable(fd, location);
    if (fstatSync(fd).size < location.offset + table.bytes) {
      closeSync(fd);
      return undefined;
    }
    if (table.bytes <= wholeBytes) {
      const raw = new Uint8Array(table.bytes);
      table.read(raw, location.offset);
      table.hold(raw);
      table.closeFile();
    } else if (table.bytes <= heldBytes) {
      table.loading = table.load().finally(() => {
        table.loading = undefined;
        // Rows held in memory need the file no more.
        if (table.closed || table.whole) table.closeFile();
      });
    }
    return table;
  }

  /** Settles once the background read has ended (the table in memory, or left in its file), at once when none runs. */
  async whenRead(): Promise<void> {
    await this.loading;
  }

  /** Whether the rows come from memory (else from the file). */
  get inMemory(): boolean {
    return this.whole !== undefined;
  }

  /**
   * Reads the table into memory a chunk at a time on libuv's thread pool, while rows() keeps reading from the file.
   * A read that fails or ends early leaves the table in its file: rows() reads from there and reports what it finds.
   */
  private async load(): Promise<void> {
    const raw = new Uint8Array(this.bytes);
    for (let done = 0; done < raw.length;) {
      if (this.closed) return;
      const length = Math.min(LOAD_CHUNK_BYTES, raw.length - done);
      const n = await new Promise<number>((resolve) =>
        read(this.fd as number, raw, done, length, this.location.offset + done, (err, bytesRead) =>
          resolve(err ? 0 : bytesRead),
        ),
      );
      if (n === 0) return;
      done += n;
    }
    if (!this.closed) this.hold(raw);
  }

  private hold(raw: Uint8Array): void {
    this.whole = this.location.dtype === "float32" ? new Float32Array(raw.buffer) : new Uint16Array(raw.buffer);
  }

  /**
   * The rows of `ids`, in order, as float32 [ids.length, cols] (what the Gather outputs, as float32): written into
   * `out` when given (it must have that length), else into a new array.
   */
  rows(ids: readonly number[], out: Float32Array = new Float32Array(ids.length * this.location.cols)): Float32Array {
    if (this.closed) throw new Error("the lookup table was closed");
    const { cols, rows, offset } = this.location;
    if (out.length !== ids.length * cols)
      throw new RangeError(`${ids.length} rows of ${cols} values into an array of ${out.length}`);
    const whole = this.whole;
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= rows)
        throw new RangeError(`token id ${id} is outside the embedding table (${rows} rows)`);
      const into = out.subarray(i * cols, (i + 1) * cols);
      if (whole instanceof Float32Array) into.set(whole.subarray(id * cols, (id + 1) * cols));
      else if (whole) fromFloat16(whole.subarray(id * cols, (id + 1) * cols), into);
      else if (this.halfRow) {
        this.read(new Uint8Array(this.halfRow.buffer), offset + id * this.rowBytes);
        fromFloat16(this.halfRow, into);
      } else this.read(new Uint8Array(out.buffer, i * this.rowBytes, this.rowBytes), offset + id * this.rowBytes);
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
    this.closed = true;
    this.whole = undefined;
    // A background read still running has a read of the file in flight: the file closes when it returns.
    if (!this.loading) this.closeFile();
  }

  private closeFile(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
