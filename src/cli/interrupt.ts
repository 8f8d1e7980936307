// Ctrl-C during model work stops the work, not the process: `work` sees its signal abort, finishes what it can
// (writes what is done, releases sessions), and the command ends with EXIT_INTERRUPTED. A second Ctrl-C, once the
// handler is gone, ends the process the usual way.
import { Emu2Error } from "../util/errors.js";
import { EXIT_INTERRUPTED } from "./exit-codes.js";

export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once("SIGINT", onSigint);
  try {
    return await work(controller.signal);
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
}

/** The end of an interrupted command: one line saying what was kept, exit code 130. */
export class Interrupted extends Emu2Error {
  constructor(message = "interrupted") {
    super(message, EXIT_INTERRUPTED);
    this.name = "Interrupted";
  }
}
