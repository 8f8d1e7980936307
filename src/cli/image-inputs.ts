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

function listFolder(dir: string): string[] {
  // Sorted, non-recursive: the order of a run is the order of its output, and resuming relies on it.
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && isImageFile(entry.name))
    .map((entry) => join(dir, entry.name))
    .sort();
}

export async function expandImageInputs(args: string[], readStdin: () => string = () => readFileSync(0, "utf8")): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    if (arg === "-") {
      const lines = readStdin().split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
      files.push(...lines);
      continue;
    }
    if (isDynamicPattern(arg)) {
      const matches = (await glob(arg, { onlyFiles: true, absolute: isAbsolute(arg), expandDirectories: false })).filter(isImageFile).sort();
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
      const found = listFolder(arg);
      if (found.length === 0) throw new Emu2Error(`${arg}: the folder has no images (${[...IMAGE_EXTENSIONS].join(" ")})`);
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
