// The exit codes of every emu2 command (README "Exit codes").
export const EXIT_OK = 0;
/** Anything that is not a usage error: a bad file, a broken package, an image that could not be captioned. */
export const EXIT_FAILURE = 1;
/** Bad flags or arguments. */
export const EXIT_USAGE = 2;
/** Stopped by Ctrl-C (128 + SIGINT), what a shell reports for a process killed by it. */
export const EXIT_INTERRUPTED = 130;
/** The reader of standard output went away (128 + SIGPIPE), what a shell reports for `yes | head -n 1`. */
export const EXIT_BROKEN_PIPE = 141;
