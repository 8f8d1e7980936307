// Errors a user can cause. The CLI prints their message as one line and exits with their code; anything else is a
// bug and is shown with its stack only under --verbose.

export class Emu2Error extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "Emu2Error";
    this.exitCode = exitCode;
  }
}

/** Bad flags or arguments: exit code 2, like commander's own usage errors. */
export class UsageError extends Emu2Error {
  constructor(message: string) {
    super(message, 2);
    this.name = "UsageError";
  }
}

/** A model package that is missing, malformed or does not fit the request. */
export class PackageError extends Emu2Error {
  constructor(message: string) {
    super(message, 1);
    this.name = "PackageError";
  }
}

/** A prompt (text, YAML, images) that cannot be rendered. */
export class PromptError extends Emu2Error {
  constructor(message: string) {
    super(message, 1);
    this.name = "PromptError";
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
