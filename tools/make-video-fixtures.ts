// Writes the short clips the video tests and the video-QA fixture use (fixtures/videos/): each clip as a folder of
// PNG frames, an animated GIF and an animated lossless WebP holding the same pictures (flat colours only, so the
// GIF's palette holds them exactly). Deterministic; mp4 versions are made by the tests with ffmpeg where present.
//
//   node --import tsx tools/make-video-fixtures.ts [--out DIR]     (default fixtures/videos)
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SIDE = 64;
const FRAME_DELAY_MS = 200;

type Rgb = [number, number, number];
interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
  colour: Rgb;
}

/** A clip: a background and, per frame, the rectangles drawn on it. */
interface Clip {
  name: string;
  background: Rgb;
  frames: Rect[][];
}

const RED: Rgb = [220, 30, 30];
const BLUE: Rgb = [30, 60, 220];
const GREEN: Rgb = [30, 180, 60];
const GREY: Rgb = [128, 128, 128];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

export const CLIPS: Clip[] = [
  // A red square moving from left to right: 6 frames.
  {
    name: "red-square-right",
    background: GREY,
    frames: Array.from({ length: 6 }, (_, k) => [{ x: 2 + k * 9, y: 24, w: 14, h: 14, colour: RED }]),
  },
  // A blue bar growing upwards: 5 frames.
  {
    name: "blue-bar-up",
    background: WHITE,
    frames: Array.from({ length: 5 }, (_, k) => [
      { x: 24, y: 56 - (k + 1) * 10, w: 16, h: (k + 1) * 10, colour: BLUE },
    ]),
  },
  // A green light blinking on and off: 3 frames (fewer than the default 8).
  {
    name: "green-blink",
    background: BLACK,
    frames: [[{ x: 16, y: 16, w: 32, h: 32, colour: GREEN }], [], [{ x: 16, y: 16, w: 32, h: 32, colour: GREEN }]],
  },
];

function draw(background: Rgb, rects: Rect[]): Buffer {
  const data = Buffer.alloc(SIDE * SIDE * 3);
  for (let p = 0; p < SIDE * SIDE; p++) data.set(background, p * 3);
  for (const r of rects) {
    for (let y = r.y; y < r.y + r.h; y++) for (let x = r.x; x < r.x + r.w; x++) data.set(r.colour, (y * SIDE + x) * 3);
  }
  return data;
}

export async function writeClip(clip: Clip, outDir: string): Promise<void> {
  const pages = clip.frames.map((rects) => draw(clip.background, rects));
  const folder = join(outDir, clip.name);
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  for (const [k, page] of pages.entries()) {
    const png = await sharp(page, { raw: { width: SIDE, height: SIDE, channels: 3 } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    writeFileSync(join(folder, `frame-${String(k).padStart(2, "0")}.png`), png);
  }
  const strip = () =>
    sharp(Buffer.concat(pages), { raw: { width: SIDE, height: SIDE * pages.length, channels: 3, pageHeight: SIDE } });
  const delay = pages.map(() => FRAME_DELAY_MS);
  writeFileSync(
    join(outDir, `${clip.name}.gif`),
    await strip().gif({ delay, loop: 0, dither: 0, effort: 10, reuse: false }).toBuffer(),
  );
  writeFileSync(
    join(outDir, `${clip.name}.webp`),
    await strip().webp({ delay, loop: 0, lossless: true, effort: 6 }).toBuffer(),
  );
}

async function main(): Promise<void> {
  const at = process.argv.indexOf("--out");
  const outDir = at >= 0 ? process.argv[at + 1] : join(ROOT, "fixtures", "videos");
  mkdirSync(outDir, { recursive: true });
  for (const clip of CLIPS) await writeClip(clip, outDir);
  process.stderr.write(`wrote ${CLIPS.length} clips to ${outDir}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
