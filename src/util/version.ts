// The program's version, read once from package.json (the only place it is written): this file sits two folders
// below the package root both as src/util/version.ts and as dist/util/version.js.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const VERSION: string = (
  JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string }
).version;
