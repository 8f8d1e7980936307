// Video input: a folder of frames, an animated GIF or WebP (sharp reads their pages), or an mp4/webm/mov file read
// with ffmpeg when it is installed. A video is probed once (its frames and when each is shown), N frames are
// sampled uniformly over its duration, and only those are decoded, as 8-bit RGB like any image (image.ts).
//
// Sampling (docs/prompt-format.md, "Video"): the duration D is cut into N equal segments and the frame shown at the
// middle of segment i, t_i = (i + 1/2) * D / N, is taken. With frames of equal length this picks frame
// floor((i + 1/2) * n / N) of n, whatever the source, so a GIF, a WebP and a folder holding the same pictures give
// the same frames. A video with fewer frames than asked gives all of its frames.
import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { extname, join } from "node:path";
import sharp from "sharp";
import { Emu2Error } from "../util/errors.js";
import { loadImage, type RgbImage } from "./image.js";

export const DEFAULT_VIDEO_FRAMES = 8;

/** Extensions of the images a frames folder may hold (the same as caption's folder inputs). */
const FRAME_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".avif", ".bmp"]);

/** Browsers show GIF frames with a delay of 0 or 10 ms for 100 ms; so does this sampler (python/emu2ref/video.py too). */
const MIN_FRAME_DELAY_MS = 20;
const SHORT_DELAY_AS_MS = 100;

export const VIDEO_FORMATS_HELP = "a folder of frames, an animated GIF or WebP, or an mp4, webm or mov file";

/** A video that cannot be read: one line naming the file. */
export class VideoError extends Emu2Error {
  constructor(
    readonly source: string,
    problem: string,
  ) {
    super(`${source}: ${problem}`, 1);
    this.name = "VideoError";
  }
}

type VideoKind = "frames" | "animated" | "ffmpeg";

/** Where a frame is and when it is shown; `start` counts from the first frame (seconds; frames of a folder: index). */
interface FrameEntry {
  start: number;
  /** A folder's frame file. */
  file?: string;
}

export interface ProbedVideo {
  path: string;
  kind: VideoKind;
  /** GIF, WebP, mp4/mov, webm, or "frames". */
  format: string;
  frames: FrameEntry[];
  /** Total duration in the unit of `start` (a folder's frames last 1 each). */
  duration: number;
  /** Whether `start` is in seconds (GIF, WebP, video files) or a frame index (folders). */
  timed: boolean;
}

export interface SampledFrame {
  /** Index of the frame in the video. */
  index: number;
  /** The sampling time t_i in seconds (timed sources) or in frames (folders). */
  time: number;
  /** The frame's file for a folder. */
  file?: string;
}

export interface SampledVideo {
  path: string;
  format: string;
  timed: boolean;
  duration: number;
  totalFrames: number;
  requested: number;
  frames: SampledFrame[];
  /** Set when the video has fewer frames than requested (all of them are used). */
  shortBy?: number;
}

function oneLine(message: string): string {
  return message.replace(/\s+/g, " ").trim();
}

/**
 * The indices of the frames shown at t_i = (2i + 1) * D / (2N), i = 0..N-1, for frames starting at `starts`
 * (ascending, first 0) of a video lasting `duration`. Compared as s_k * 2N <= (2i + 1) * D so integer inputs are exact.
 */
export function sampleFrameIndices(starts: readonly number[], duration: number, count: number): number[] {
  if (starts.length === 0) return [];
  if (count >= starts.length) return starts.map((_, k) => k);
  const picked: number[] = [];
  let k = 0;
  for (let i = 0; i < count; i++) {
    const target = (2 * i + 1) * duration;
    while (k + 1 < starts.length && starts[k + 1] * 2 * count <= target) k++;
    picked.push(k);
  }
  return picked;
}

function naturalOrder(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

function probeFolder(path: string): ProbedVideo {
  let names: string[];
  try {
    names = readdirSync(path, { withFileTypes: true })
      .filter((e) => e.isFile() && FRAME_EXTENSIONS.has(extname(e.name).toLowerCase()))
      .map((e) => e.name)
      .sort(naturalOrder);
  } catch (err) {
    throw new VideoError(
      path,
      `cannot read the folder (${(err as NodeJS.ErrnoException).code ?? oneLine(String(err))})`,
    );
  }
  if (names.length === 0) throw new VideoError(path, `the folder holds no frames (${[...FRAME_EXTENSIONS].join(" ")})`);
  return {
    path,
    kind: "frames",
    format: "frames",
    frames: names.map((name, k) => ({ start: k, file: join(path, name) })),
    duration: names.length,
    timed: false,
  };
}

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function probeAnimated(path: string, format: "gif" | "webp"): Promise<ProbedVideo> {
  const name = format === "gif" ? "GIF" : "WebP";
  let metadata;
  try {
    metadata = await sharp(path, { pages: -1 }).metadata();
  } catch (err) {
    throw new VideoError(path, `corrupt or unreadable ${name} (${oneLine((err as Error).message)})`);
  }
  const pages = metadata.pages ?? 1;
  const delays = Array.from({ length: pages }, (_, k) => {
    const d = metadata.delay?.[k] ?? 0;
    return d < MIN_FRAME_DELAY_MS ? SHORT_DELAY_AS_MS : d;
  });
  const frames: FrameEntry[] = [];
  let at = 0;
  for (const d of delays) {
    frames.push({ start: at });
    at += d;
  }
  // Starts and duration in milliseconds (integers: exact sampling); reported in seconds.
  return { path, kind: "animated", format: name, frames, duration: at, timed: true };
}

const FFMPEG_MISSING =
  "install ffmpeg to read video files (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg), or pass a folder of frames, a GIF or a WebP";

function run(command: string, args: string[], path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: "buffer", maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return reject(
          new VideoError(
            path,
            `reading ${extname(path) || "video"} files needs ${command}, which is not installed: ${FFMPEG_MISSING}`,
          ),
        );
      const detail = oneLine(stderr.toString("utf8")).replace(`${path}: `, "").slice(0, 200) || oneLine(err.message);
      reject(new VideoError(path, `corrupt or unreadable video (${command}: ${detail})`));
    });
  });
}

async function probeWithFfmpeg(path: string, format: string): Promise<ProbedVideo> {
  // Packet timestamps need no decoding (fast even for long videos); sorted, they are the frames' display times.
  const out = (
    await run(
      "ffprobe",
      [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,duration_time",
        "-of",
        "csv=p=0",
        path,
      ],
      path,
    )
  ).toString("utf8");
  const packets = out
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => line.split(",").map(Number))
    .filter(([pts]) => Number.isFinite(pts));
  if (packets.length === 0) throw new VideoError(path, "corrupt or unreadable video (no video frames found)");
  packets.sort((a, b) => a[0] - b[0]);
  const first = packets[0][0];
  const last = packets[packets.length - 1];
  const gaps = packets
    .slice(1)
    .map((p, k) => p[0] - packets[k][0])
    .sort((a, b) => a - b);
  const lastLength = Number.isFinite(last[1]) && last[1] > 0 ? last[1] : gaps.length > 0 ? gaps[gaps.length >> 1] : 0;
  return {
    path,
    kind: "ffmpeg",
    format,
    frames: packets.map(([pts]) => ({ start: pts - first })),
    duration: last[0] - first + lastLength,
    timed: true,
  };
}

/** What a path holds, by content: a folder, a GIF/WebP (animated or not), an ISO-BMFF (mp4/mov) or Matroska (webm). */
export async function probeVideo(path: string): Promise<ProbedVideo> {
  let stat;
  try {
    stat = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VideoError(path, code === "ENOENT" ? "no such file or folder" : `cannot read (${code})`);
  }
  if (stat.isDirectory()) return probeFolder(path);
  if (stat.size === 0) throw new VideoError(path, "the file is empty");
  const head = await readHead(path, 16);
  if (head.subarray(0, 6).toString("latin1").startsWith("GIF8")) return probeAnimated(path, "gif");
  if (head.subarray(0, 4).toString("latin1") === "RIFF" && head.subarray(8, 12).toString("latin1") === "WEBP")
    return probeAnimated(path, "webp");
  if (head.subarray(4, 8).toString("latin1") === "ftyp") return probeWithFfmpeg(path, "mp4/mov");
  if (head.readUInt32BE(0) === 0x1a45dfa3) return probeWithFfmpeg(path, "webm");
  const still = await sharp(path)
    .metadata()
    .then(
      (m) => m.format,
      () => undefined,
    );
  if (still !== undefined)
    throw new VideoError(
      path,
      `a still ${still} image, not a video (pass it with --image, or give ${VIDEO_FORMATS_HELP})`,
    );
  throw new VideoError(path, `not a video in a supported format (expected ${VIDEO_FORMATS_HELP})`);
}

/** N frames sampled uniformly over the video's duration (all of them when it has fewer). */
export function sampleVideo(video: ProbedVideo, count: number): SampledVideo {
  if (!Number.isInteger(count) || count < 1)
    throw new Emu2Error(`the number of video frames must be a whole number >= 1 (got ${count})`);
  const starts = video.frames.map((f) => f.start);
  const indices = sampleFrameIndices(starts, video.duration, count);
  const scale = video.kind === "animated" ? 1000 : 1;
  const all = count >= video.frames.length;
  const frames = indices.map((index, i) => ({
    index,
    // All frames: each frame's own start; otherwise the middle of segment i.
    time: (all ? starts[index] : ((2 * i + 1) * video.duration) / (2 * count)) / scale,
    ...(video.frames[index].file ? { file: video.frames[index].file } : {}),
  }));
  const sampled: SampledVideo = {
    path: video.path,
    format: video.format,
    timed: video.timed,
    duration: video.duration / scale,
    totalFrames: video.frames.length,
    requested: count,
    frames,
  };
  if (video.frames.length < count) sampled.shortBy = count - video.frames.length;
  return sampled;
}

/** Decodes the sampled frames of a probed video, in order, one at a time. */
export async function* decodeFrames(video: ProbedVideo, sampled: SampledVideo): AsyncGenerator<RgbImage> {
  for (const frame of sampled.frames) {
    const entry = video.frames[frame.index];
    const label = `${video.path} (frame ${frame.index})`;
    if (video.kind === "frames") {
      yield await loadImage(entry.file as string);
    } else if (video.kind === "animated") {
      yield await loadImage(video.path, { page: frame.index, label });
    } else {
      // Seek (relative to the stream's start, as -ss counts) to halfway between this frame and the previous one:
      // ffmpeg drops the frames before the seek point, so this frame comes out first.
      const seek = frame.index > 0 ? (entry.start + video.frames[frame.index - 1].start) / 2 : 0;
      const png = await run(
        "ffmpeg",
        [
          "-v",
          "error",
          "-nostdin",
          "-ss",
          seek.toFixed(6),
          "-i",
          video.path,
          "-frames:v",
          "1",
          "-f",
          "image2pipe",
          "-c:v",
          "png",
          "-",
        ],
        video.path,
      );
      if (png.length === 0)
        throw new VideoError(
          video.path,
          `corrupt or unreadable video (ffmpeg gave no picture for frame ${frame.index})`,
        );
      yield await loadImage(png, { label });
    }
  }
}

/** "t=0.25s" or "frame 3 (f03.png)" for what `emu2 prompt` shows. */
export function describeFrame(video: SampledVideo, frame: SampledFrame): string {
  if (!video.timed)
    return `frame ${frame.index}${frame.file ? ` (${frame.file.slice(frame.file.lastIndexOf("/") + 1)})` : ""}`;
  return `frame ${frame.index} at ${frame.time.toFixed(3)}s`;
}
