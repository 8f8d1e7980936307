// Spinners (ora) and progress bars (cli-progress) on stderr, drawn only when stderr is a terminal. ONNX Runtime
// blocks the event loop during a run, so both are advanced explicitly between runs rather than by timers alone.
import { SingleBar } from "cli-progress";
import ora, { type Ora } from "ora";
import type { Reporter } from "./io.js";

export interface Progress {
  /** Advances to `done` of `total`, with an optional label for the current item. */
  update(done: number, label?: string): void;
  stop(): void;
}

export function progressBar(reporter: Reporter, title: string, total: number): Progress {
  if (!reporter.interactive) return { update() {}, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${title} [{bar}] {value}/{total} | {percentage}% | ETA {eta_formatted} | {label}`,
    hideCursor: true,
    clearOnComplete: false,
    etaBuffer: 20,
    synchronousUpdate: true,
  });
  bar.start(total, 0, { label: "" });
  return {
    update(done, label = "") {
      bar.update(done, { label });
    },
    stop() {
      bar.stop();
    },
  };
}

export interface Spinner {
  text(message: string): void;
  succeed(message?: string): void;
  stop(): void;
}

export function spinner(reporter: Reporter, message: string): Spinner {
  if (!reporter.interactive) return { text() {}, succeed() {}, stop() {} };
  const s: Ora = ora({ text: message, stream: process.stderr, discardStdin: false }).start();
  return {
    text(next) {
      s.text = next;
      s.render();
    },
    succeed(done) {
      s.succeed(done);
    },
    stop() {
      s.stop();
    },
  };
}
