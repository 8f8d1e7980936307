// Stop strings (llama.cpp's --stop): the one owner of finding a stop text in a decoded continuation, of the answer
// trimmed before it, and of the text a stream must hold back because the next tokens may complete a stop there.
// Generation stops at the token whose text completes a stop (src/llm/stopping.ts); the facade trims and streams.

export class StopStrings {
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  get empty(): boolean {
    return this.stops.length === 0;
  }

  /** Where the earliest stop text starts in `text`, or -1. */
  find(text: string): number {
    let at = -1;
    for (const stop of this.stops) {
      const i = text.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at;
  }

  /** `text` up to the earliest stop (the stop itself is not part of the answer). */
  trim(text: string): string {
    const at = this.find(text);
    return at < 0 ? text : text.slice(0, at);
  }

  /** How much of `text` a stream may show now: all of it but a tail that could still become the start of a stop. */
  settledLength(text: string): number {
    const at = this.find(text);
    if (at >= 0) return at;
    let held = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > held; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          held = n;
          break;
        }
      }
    }
    return text.length - held;
  }
}

/** `text` up to the first of `stops` it contains. */
export function trimAtStop(text: string, stops: readonly string[]): string {
  return new StopStrings(stops).trim(text);
}
