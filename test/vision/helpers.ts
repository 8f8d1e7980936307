// Shared by the vision tests: the PIL goldens (python/emu2ref/golden_vision.py) and the fixture paths.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Golden } from "../helpers/golden.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const IMAGES = join(ROOT, "fixtures", "images");
export const golden = new Golden(join(ROOT, "fixtures", "golden", "vision"));
export const meta = golden.meta as {
  images: string[];
  exif_rotated: string;
  sizes: number[];
  full_size_images: string[];
  normalized_image: [string, number];
  box_masks: [number, number, number, number][];
  box_canvas: number;
  pool_queries: number[];
};

export function uint8(name: string): Uint8Array {
  const a = golden.get(name);
  if (a.dtype !== "uint8") throw new Error(`golden ${name} is ${a.dtype}, not uint8`);
  return a.data;
}
