// Turns caption's arguments (files, folders, globs, `-` for a list of paths on stdin) into an ordered list of
// image files, failing early with one line for what cannot be an input.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, isAbsolute, join, resolve } from "node:path";
import { glob, isDynamicPattern } from "tinyglobby";
import { Emu2Error } from "../util/errors.js";

export const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".avif", ".bmp"]);

export function isImageFile(path: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(path).toLowerCase());
}

/** Image files of a folder, sorted by path: its own, or with `recursive` those of every subfolder too. */
function listFolder(dir: string, recursive: boolean): string[] {
  const found: string[] = [];
  // Sorted: the order of a run is the order of its output. Symlinked folders are not followed (no cycles).
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isFile() && isImageFile(entry.name)) found.push(path);
    else if (recursive && entry.isDirectory()) found.push(...listFolder(path, true));
  }
  return found.sort();
}

/** Folders are read without their subfolders unless `recursive` is set. */
export async function expandImageInputs(
  args: string[],
  readStdin: () => string = () => readFileSync(0, "utf8"),
  options: { recursive?: boolean } = {},
): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    if (arg === "-") {
      const lines = readStdin()
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l.length > 0);
      files.push(...lines);
      continue;
    }
    if (isDynamicPattern(arg)) {
      const matches = (await glob(arg, { onlyFiles: true, absolute: isAbsolute(arg), expandDirectories: false }))
        .filter(isImageFile)
        .sort();
      if (matches.length === 0) throw new Emu2Error(`${arg}: the pattern matches no image files`);
      files.push(...matches);
      continue;
    }
    let stat;
    try {
      stat = statSync(arg);
    } catch {
      throw new Emu2Error(`${arg}: no such file or folder`);
    }
    if (stat.isDirectory()) {
      const found = listFolder(arg, options.recursive ?? false);
      if (found.length === 0) {
        const where = options.recursive ? "the folder and its subfolders have" : "the folder has";
        throw new Emu2Error(
          `${arg}: ${where} no images (${[...IMAGE_EXTENSIONS].join(" ")})${options.recursive ? "" : "; -r reads subfolders too"}`,
        );
      }
      files.push(...found);
    } else {
      files.push(arg);
    }
  }
  // The same image named twice (a folder and a file in it) is captioned once.
  const seen = new Set<string>();
  return files.filter((f) => {
    const key = resolve(f);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
