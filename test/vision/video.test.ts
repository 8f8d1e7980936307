// Frame sampling and decoding (src/vision/video.ts): the sampling rule, GIF / WebP / frames folder agreement, mp4 and
// webm through ffmpeg where it is installed, and bad input (one line naming the file).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { loadImage, type RgbImage } from "../../src/vision/image.js";
import { decodeFrames, probeVideo, sampleFrameIndices, sampleVideo, VideoError } from "../../src/vision/video.js";
import { ROOT } from "./helpers.js";

const VIDEOS = join(ROOT, "fixtures", "videos");
const CLIPS = ["red-square-right", "blue-bar-up", "green-blink"];
const HAVE_FFMPEG = spawnSync("ffmpeg", ["-version"]).status === 0 && spawnSync("ffprobe", ["-version"]).status === 0;

async function frames(path: string, count: number): Promise<{ indices: number[]; images: RgbImage[] }> {
  const probed = await probeVideo(path);
  const sampled = sampleVideo(probed, count);
  const images: RgbImage[] = [];
  for await (const image of decodeFrames(probed, sampled)) images.push(image);
  return { indices: sampled.frames.map((f) => f.index), images };
}

function oneLine(err: unknown, pattern: RegExp): boolean {
  return err instanceof VideoError && !err.message.includes("\n") && pattern.test(err.message);
}

test("sampling takes the frame shown at the middle of each of N equal segments", () => {
  // 6 equal frames, 4 samples: t = 1/8, 3/8, 5/8, 7/8 of the clip -> frames 0, 2, 3, 5.
  assert.deepEqual(sampleFrameIndices([0, 1, 2, 3, 4, 5], 6, 4), [0, 2, 3, 5]);
  assert.deepEqual(sampleFrameIndices([0, 200, 400, 600, 800, 1000], 1200, 4), [0, 2, 3, 5]);
  assert.deepEqual(sampleFrameIndices([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10, 2), [2, 7]);
  assert.deepEqual(sampleFrameIndices([0, 1, 2], 3, 1), [1]);
  // Uneven delays: a frame is picked by how long it is shown (t = 250 and 750 ms of 1000).
  assert.deepEqual(sampleFrameIndices([0, 900, 950], 1000, 2), [0, 0]);
  assert.deepEqual(sampleFrameIndices([0, 100, 200, 900], 1000, 2), [2, 2]);
  assert.deepEqual(sampleFrameIndices([0, 100, 200, 900], 1000, 3), [1, 2, 2]);
  // Fewer frames than asked: all of them.
  assert.deepEqual(sampleFrameIndices([0, 1, 2], 3, 8), [0, 1, 2]);
});

test("a GIF, a WebP and a frames folder holding the same pictures give the same frames", async () => {
  for (const clip of CLIPS) {
    for (const count of [1, 2, 4, 8]) {
      const folder = await frames(join(VIDEOS, clip), count);
      for (const file of [`${clip}.gif`, `${clip}.webp`]) {
        const other = await frames(join(VIDEOS, file), count);
        assert.deepEqual(other.indices, folder.indices, `${file} x${count}`);
        other.images.forEach((image, k) => assert.deepEqual(image, folder.images[k], `${file} x${count} frame ${k}`));
      }
    }
  }
  // And the folder's frames are its PNG files as the image loader reads them.
  const { images } = await frames(join(VIDEOS, "red-square-right"), 6);
  assert.deepEqual(images[3], await loadImage(join(VIDEOS, "red-square-right", "frame-03.png")));
});

test("probe: timestamps in seconds for GIF/WebP, frame indices for folders; a short video says how short", async () => {
  const gif = sampleVideo(await probeVideo(join(VIDEOS, "red-square-right.gif")), 4);
  assert.equal(gif.timed, true);
  assert.equal(gif.duration, 1.2);
  assert.deepEqual(
    gif.frames.map((f) => f.time),
    [0.15, 0.45, 0.75, 1.05],
  );
  const folder = sampleVideo(await probeVideo(join(VIDEOS, "green-blink")), 8);
  assert.equal(folder.timed, false);
  assert.equal(folder.shortBy, 5);
  assert.deepEqual(
    folder.frames.map((f) => f.index),
    [0, 1, 2],
  );
  assert.match(folder.frames[2].file ?? "", /frame-02\.png$/);
  // A GIF frame delay of 0 (or 10 ms) is shown for 100 ms, as browsers do: three such frames last 0.3 s.
  const strip = Buffer.concat([50, 150, 250].map((v) => Buffer.alloc(8 * 8 * 3, v)));
  const zeroDelay = join(mkdtempSync(join(tmpdir(), "emu2-gif0-")), "zero.gif");
  writeFileSync(
    zeroDelay,
    await sharp(strip, { raw: { width: 8, height: 24, channels: 3, pageHeight: 8 } })
      .gif({ delay: [0, 10, 0] })
      .toBuffer(),
  );
  const zero = sampleVideo(await probeVideo(zeroDelay), 3);
  assert.equal(zero.duration, 0.3);
  assert.deepEqual(
    zero.frames.map((f) => f.time),
    [0, 0.1, 0.2],
  );
  // Natural order: frame-10 after frame-9.
  const dir = mkdtempSync(join(tmpdir(), "emu2-frames-"));
  for (const k of [1, 2, 9, 10])
    writeFileSync(join(dir, `frame-${k}.png`), readFileSync(join(VIDEOS, "red-square-right", `frame-0${k % 6}.png`)));
  assert.deepEqual(
    (await probeVideo(dir)).frames.map((f) => f.file?.replace(`${dir}/`, "")),
    ["frame-1.png", "frame-2.png", "frame-9.png", "frame-10.png"],
  );
});

test(
  "mp4 and webm through ffmpeg give the clip's frames",
  { skip: HAVE_FFMPEG ? false : "ffmpeg is not installed" },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "emu2-mp4-"));
    const clip = join(VIDEOS, "red-square-right");
    // Lossless encodings, so the decoded pixels must equal the PNG frames exactly; 5 fps = the GIF's 200 ms frames.
    const encodings = {
      "clip.mp4": ["-c:v", "libx264rgb", "-crf", "0"],
      "clip.webm": ["-c:v", "libvpx-vp9", "-lossless", "1", "-pix_fmt", "gbrp"],
    };
    for (const [name, codec] of Object.entries(encodings)) {
      const r = spawnSync("ffmpeg", [
        "-v",
        "error",
        "-y",
        "-framerate",
        "5",
        "-i",
        join(clip, "frame-%02d.png"),
        ...codec,
        join(dir, name),
      ]);
      assert.equal(r.status, 0, r.stderr.toString());
      const video = await probeVideo(join(dir, name));
      assert.equal(video.frames.length, 6);
      for (const count of [4, 8]) {
        const expected = await frames(clip, count);
        const got = await frames(join(dir, name), count);
        assert.deepEqual(got.indices, expected.indices, `${name} x${count}`);
        got.images.forEach((image, k) => assert.deepEqual(image, expected.images[k], `${name} x${count} frame ${k}`));
      }
      assert.deepEqual(
        sampleVideo(video, 4).frames.map((f) => f.time.toFixed(6)),
        ["0.150000", "0.450000", "0.750000", "1.050000"],
      );
    }
    // A typical lossy yuv420 mp4 decodes to pictures close to the originals, in the right order.
    const lossy = join(dir, "lossy.mp4");
    assert.equal(
      spawnSync("ffmpeg", [
        "-v",
        "error",
        "-y",
        "-framerate",
        "5",
        "-i",
        join(clip, "frame-%02d.png"),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        lossy,
      ]).status,
      0,
    );
    const expected = await frames(clip, 6);
    const got = await frames(lossy, 6);
    got.images.forEach((image, k) => {
      const errors = expected.images.map(
        (e) => e.data.reduce((s, v, j) => s + Math.abs(v - image.data[j]), 0) / e.data.length,
      );
      assert.equal(
        errors.indexOf(Math.min(...errors)),
        k,
        `lossy frame ${k} is closest to frame ${errors.indexOf(Math.min(...errors))}`,
      );
    });
  },
);

test("bad input: one line naming the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-badvideo-"));
  await assert.rejects(probeVideo(join(dir, "missing.mp4")), (e) =>
    oneLine(e, /missing\.mp4: no such file or folder$/),
  );
  writeFileSync(join(dir, "notes.txt"), "not a video at all\n");
  await assert.rejects(probeVideo(join(dir, "notes.txt")), (e) =>
    oneLine(
      e,
      /notes\.txt: not a video in a supported format \(expected a folder of frames, an animated GIF or WebP, or an mp4, webm or mov file\)/,
    ),
  );
  await assert.rejects(probeVideo(join(ROOT, "fixtures", "images", "blocks.png")), (e) =>
    oneLine(e, /blocks\.png: a still png image, not a video \(pass it with --image/),
  );
  mkdirSync(join(dir, "empty"));
  await assert.rejects(probeVideo(join(dir, "empty")), (e) => oneLine(e, /empty: the folder holds no frames/));
  writeFileSync(join(dir, "empty.gif"), "");
  await assert.rejects(probeVideo(join(dir, "empty.gif")), (e) => oneLine(e, /empty\.gif: the file is empty/));
  // A truncated GIF: corrupt, named as such.
  const gif = readFileSync(join(VIDEOS, "red-square-right.gif"));
  writeFileSync(join(dir, "cut.gif"), gif.subarray(0, 40));
  await assert.rejects(frames(join(dir, "cut.gif"), 4), (e) =>
    oneLine(e, /cut\.gif: corrupt or unreadable (GIF|GIF image)/),
  );
  if (HAVE_FFMPEG) {
    writeFileSync(
      join(dir, "broken.mp4"),
      Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from("ftypmp42"), Buffer.alloc(64, 7)]),
    );
    await assert.rejects(probeVideo(join(dir, "broken.mp4")), (e) =>
      oneLine(e, /broken\.mp4: corrupt or unreadable video \(ffprobe: /),
    );
  }
});
