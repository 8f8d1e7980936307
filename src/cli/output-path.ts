// Output paths are checked before any model work, so a typo in -o costs one line and not minutes of generation.
import { closeSync, existsSync, openSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { Emu2Error } from "../util/errors.js";

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** The nearest existing ancestor folder of `path`'s parent that is a file, if one is (e.g. out.txt/x.png). */
function fileInTheWay(path: string): string | undefined {
  let dir = dirname(path);
  while (!existsSync(dir)) {
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
  return statSync(dir).isDirectory() ? undefined : dir;
}

export interface OutputCheck {
  /** Whether the file is there already. */
  exists: boolean;
}

/**
 * Fails with one line naming `path` unless a file can be written there: its folder exists (missing folders are not
 * created), it is not a folder itself, and opening it for writing works. An existing file is opened for appending
 * and left as it is; a probe file that did not exist is removed again.
 */
export function checkOutputFile(path: string, flag = "-o"): OutputCheck {
  const blocker = fileInTheWay(path);
  if (blocker !== undefined) throw new Emu2Error(`${flag} ${path}: ${blocker} is a file, not a folder`);
  const dir = dirname(path);
  if (!existsSync(dir))
    throw new Emu2Error(
      `${flag} ${path}: the folder ${dir} does not exist (emu2 does not create folders; make it first)`,
    );
  const exists = existsSync(path);
  if (exists && statSync(path).isDirectory()) throw new Emu2Error(`${flag} ${path}: is a folder; give a file name`);
  let fd: number;
  try {
    fd = openSync(path, "a");
  } catch (err) {
    const reason =
      code(err) === "EACCES" || code(err) === "EPERM"
        ? "no permission to write"
        : code(err) === "EROFS"
          ? "read-only file system"
          : `cannot write (${code(err)})`;
    throw new Emu2Error(`${flag} ${path}: ${reason}`);
  }
  closeSync(fd);
  if (!exists) unlinkSync(path);
  return { exists };
}
