// An exclusive claim on an output file, so two runs writing the same `-o` cannot both append to it. The claim is a
// lock file beside the output holding the owner's pid: created with O_EXCL (only one run can create it), removed when
// the run ends, and taken over when its owner is no longer alive (a run killed with SIGKILL leaves it behind).
//
// Written here rather than taken from proper-lockfile: that library keeps its lock fresh by touching it on a timer,
// and ONNX Runtime blocks the event loop for whole model calls, so a long caption batch would let the lock go stale
// under a live owner. A pid does not age.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { Emu2Error } from "../util/errors.js";

export function lockPath(output: string): string {
  return `${output}.lock`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readOwner(file: string): { text: string; pid: number | undefined } | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const match = /^(\d+)\n?$/.exec(text);
  return { text, pid: match ? Number(match[1]) : undefined };
}

export class OutputLock {
  private released = false;
  private readonly onExit = () => this.release();

  private constructor(
    readonly output: string,
    readonly file: string,
  ) {
    // A run that ends through process.exit (a closed stdout, for one) still gives its claim back.
    process.once("exit", this.onExit);
  }

  /** Claims `output` for this process, or fails with one line naming the run that holds it. */
  static acquire(output: string): OutputLock {
    const file = lockPath(output);
    // Two tries: the second follows the removal of a stale lock.
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(file, "wx");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EEXIST") throw new Emu2Error(`${file}: cannot create the lock file for ${output} (${code})`);
        const owner = readOwner(file);
        if (owner === undefined) continue;
        if (owner.pid !== undefined && owner.pid !== process.pid && isAlive(owner.pid)) {
          throw new Emu2Error(
            `${output} is being written by another run (pid ${owner.pid}); wait for it to finish, or remove ${file} if that process is not emu2`,
          );
        }
        // The owner is gone: remove its lock unless someone replaced it in the meantime.
        if (readOwner(file)?.text === owner.text) {
          try {
            unlinkSync(file);
          } catch (unlinkErr) {
            if ((unlinkErr as NodeJS.ErrnoException).code !== "ENOENT") throw unlinkErr;
          }
        }
        continue;
      }
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return new OutputLock(output, file);
    }
    throw new Emu2Error(`${output} is being claimed by another run at the same moment (${file}); try again`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    process.removeListener("exit", this.onExit);
    if (readOwner(this.file)?.pid !== process.pid) return;
    try {
      unlinkSync(this.file);
    } catch {
      // Already gone: nothing to give back.
    }
  }
}
