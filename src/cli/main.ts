// The emu2 command line: parse, dispatch, and turn every failure into one line on stderr and an exit code
// (0 success, 2 usage, 1 anything else, 130 interrupted, 141 stdout closed; exit-codes.ts).
import { Command, CommanderError } from "commander";
import { Emu2Error, errorMessage, UsageError } from "../util/errors.js";
import { registerCaption } from "./caption.js";
import { registerChat } from "./chat.js";
import { registerGenerate } from "./generate.js";
import { registerInfo } from "./info.js";
import { registerPrompt } from "./prompt.js";
import { registerScore } from "./score.js";
import { registerFewshotEval } from "./fewshot-eval.js";
import { VERSION } from "../index.js";
import { EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";

export { EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("emu2")
    .description("Run Emu2 (BAAI's generative multimodal model) on ONNX Runtime: chat, caption, generate")
    .version(VERSION)
    .option("-v, --verbose", "show stack traces and details on stderr")
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // Commander's usage errors become the same single "emu2: ..." line as every other error.
      outputError: (text, write) => write(`emu2: ${text.replace(/^error: /, "").trimEnd()} (see emu2 --help)\n`),
    })
    .exitOverride();
  registerChat(program);
  registerCaption(program);
  registerGenerate(program);
  registerInfo(program);
  registerPrompt(program);
  registerFewshotEval(program);
  registerScore(program);
  // Every subcommand's usage errors are one "emu2: ..." line that points to that subcommand's help.
  const overrideExit = (command: Command, path: string): void => {
    for (const sub of command.commands) {
      const name = `${path} ${sub.name()}`;
      sub.exitOverride().configureOutput({
        writeErr: (text) => process.stderr.write(text),
        outputError: (text, write) =>
          write(`emu2: ${text.replace(/^error: /, "").trimEnd()} (see ${name} --help)
`),
      });
      overrideExit(sub, name);
    }
  };
  overrideExit(program, "emu2");
  return program;
}

const isBrokenPipe = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code === "EPIPE";

/**
 * When the reader of stdout goes away (`emu2 caption imgs | head -n 1`), the run ends at once and quietly with 141,
 * as SIGPIPE ends other Unix tools (Node ignores SIGPIPE, so the failed write arrives as an EPIPE error instead).
 * Output locks are released by their exit handlers (output-lock.ts).
 */
function exitQuietlyWhenStdoutCloses(): void {
  process.stdout.on("error", (err) => {
    if (isBrokenPipe(err)) process.exit(EXIT_BROKEN_PIPE);
    throw err;
  });
}

export async function main(argv: string[]): Promise<number> {
  exitQuietlyWhenStdoutCloses();
  const program = buildProgram();
  const verbose = argv.includes("-v") || argv.includes("--verbose");
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (isBrokenPipe(err)) return EXIT_BROKEN_PIPE;
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help")
        return EXIT_OK;
      return EXIT_USAGE;
    }
    if (err instanceof Emu2Error) {
      // A usage error points to the help of the command it belongs to.
      const command = program.commands.find((c) => c.name() === argv.slice(2).find((arg) => !arg.startsWith("-")));
      const help = err instanceof UsageError ? ` (see emu2${command ? ` ${command.name()}` : ""} --help)` : "";
      process.stderr.write(`emu2: ${err.message}${help}\n`);
      if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
      return err.exitCode;
    }
    process.stderr.write(
      `emu2: internal error: ${errorMessage(err).split("\n")[0]}${verbose ? "" : " (run with --verbose for details)"}\n`,
    );
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  }
}
