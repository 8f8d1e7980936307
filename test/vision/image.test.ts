import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { Emu2Error } from "../../src/util/errors.js";
import { ImageLoadError, loadImage } from "../../src/vision/image.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { golden, IMAGES, meta, uint8 } from "./helpers.js";

test("decoded pixels equal PIL's Image.open(path).convert('RGB') (alpha dropped, gray replicated, palettes expanded, CMYK by PIL's formula)", async () => {
  const checked = meta.images.filter((name) => name !== meta.exif_rotated && golden.names().includes(`${name}.rgb`));
  assert.ok(checked.length >= 8, `only ${checked.length} images have decoded-pixel goldens`);
  for (const name of checked) {
    const image = await loadImage(join(IMAGES, name));
    const [h, w] = golden.get(`${name}.rgb`).shape;
    assert.deepEqual([image.height, image.width], [h, w], name);
    assert.equal(maxAbsDiff(image.data, uint8(`${name}.rgb`)), 0, name);
  }
});

test("EXIF orientation is applied, unlike PIL: the rotated JPEG loads as PIL's exif_transpose of it", async () => {
  const name = meta.exif_rotated;
  const image = await loadImage(join(IMAGES, name));
  const upright = golden.get(`${name}.upright.rgb`);
  const stored = golden.get(`${name}.rgb`);
  assert.deepEqual([image.height, image.width], upright.shape.slice(0, 2));
  assert.notDeepEqual(upright.shape, stored.shape, "the fixture must be stored sideways");
  assert.equal(maxAbsDiff(image.data, uint8(`${name}.upright.rgb`)), 0);
});

test("a buffer decodes like its file", async () => {
  const path = join(IMAGES, "night.jpg");
  const fromBuffer = await loadImage(readFileSync(path));
  assert.equal(maxAbsDiff(fromBuffer.data, uint8("night.jpg.rgb")), 0);
});

test("AVIF decodes (sharp's libheif) close to the image it encodes", async () => {
  const source = await loadImage(join(IMAGES, "blocks.png"));
  const avif = await sharp(Buffer.from(source.data), {
    raw: { width: source.width, height: source.height, channels: 3 },
  })
    .avif({ lossless: true })
    .toBuffer();
  const decoded = await loadImage(avif);
  assert.deepEqual([decoded.width, decoded.height], [source.width, source.height]);
  assert.ok(
    maxAbsDiff(decoded.data, source.data) <= 2,
    `AVIF round trip differs by ${maxAbsDiff(decoded.data, source.data)}`,
  );
});

test("the first frame of an animated GIF is the image", async () => {
  const image = await loadImage(join(IMAGES, "extra", "palette.gif"));
  assert.equal(maxAbsDiff(image.data, uint8("extra/palette.gif.rgb")), 0);
});

test("a top-down BMP (negative height) decodes like its bottom-up twin", async () => {
  const bottomUp = readFileSync(join(IMAGES, "extra", "rgb24.bmp"));
  const width = bottomUp.readInt32LE(18);
  const height = bottomUp.readInt32LE(22);
  const offset = bottomUp.readUInt32LE(10);
  const stride = Math.ceil((width * 24) / 32) * 4;
  const topDown = Buffer.from(bottomUp);
  topDown.writeInt32LE(-height, 22);
  for (let y = 0; y < height; y++) {
    bottomUp.copy(topDown, offset + y * stride, offset + (height - 1 - y) * stride, offset + (height - y) * stride);
  }
  const image = await loadImage(topDown);
  assert.equal(maxAbsDiff(image.data, uint8("extra/rgb24.bmp.rgb")), 0);
});

test("a 32-bit BI_BITFIELDS BMP reads its channels through the masks", async () => {
  // Rewrite the fixture's BGRA pixels as RGBA with masks saying so; the colours must not change.
  const source = readFileSync(join(IMAGES, "extra", "rgba32.bmp"));
  const offset = source.readUInt32LE(10);
  const masks = Buffer.alloc(12);
  [0xff, 0xff00, 0xff0000].forEach((m, i) => masks.writeUInt32LE(m, i * 4));
  const pixels = Buffer.from(source.subarray(offset));
  for (let p = 0; p < pixels.length; p += 4) [pixels[p], pixels[p + 2]] = [pixels[p + 2], pixels[p]];
  const bitfields = Buffer.concat([source.subarray(0, 14 + 40), masks, pixels]);
  bitfields.writeUInt32LE(3, 30); // BI_BITFIELDS
  bitfields.writeUInt32LE(14 + 40 + 12, 10);
  const image = await loadImage(bitfields);
  assert.equal(maxAbsDiff(image.data, uint8("extra/rgba32.bmp.rgb")), 0);
});

function expectLoadError(path: string | Buffer, pattern: RegExp) {
  return assert.rejects(loadImage(path), (err: unknown) => {
    assert.ok(err instanceof ImageLoadError, `expected ImageLoadError, got ${String(err)}`);
    assert.ok(err instanceof Emu2Error);
    assert.ok(!err.message.includes("\n"), `message is not one line: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test("errors are one line naming the file and the problem", async () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-vision-"));
  const missing = join(dir, "missing.jpg");
  await expectLoadError(missing, new RegExp(`^${missing}: no such file$`));
  await expectLoadError(dir, /is a folder, not an image file$/);

  const empty = join(dir, "empty.png");
  writeFileSync(empty, "");
  await expectLoadError(empty, new RegExp(`^${empty}: the file is empty$`));

  const text = join(dir, "notes.jpg");
  writeFileSync(text, "these are not the pixels you are looking for\n");
  await expectLoadError(
    text,
    new RegExp(`^${text}: not an image in a supported format \\(JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP\\)$`),
  );

  const truncated = join(dir, "truncated.jpg");
  const jpeg = readFileSync(join(IMAGES, "night.jpg"));
  writeFileSync(truncated, jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  await expectLoadError(truncated, new RegExp(`^${truncated}: corrupt or unreadable JPEG image \\(.+\\)$`));

  const svg = join(dir, "drawing.svg");
  writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
  await expectLoadError(svg, new RegExp(`^${svg}: svg images are not supported`));

  const bmp = readFileSync(join(IMAGES, "extra", "rgb24.bmp"));
  const truncatedBmp = join(dir, "truncated.bmp");
  writeFileSync(truncatedBmp, bmp.subarray(0, bmp.length - 10));
  await expectLoadError(truncatedBmp, new RegExp(`^${truncatedBmp}: unreadable BMP image \\(truncated BMP file\\)$`));
  const rle = Buffer.from(bmp);
  rle.writeUInt32LE(1, 30); // BI_RLE8
  await expectLoadError(
    rle,
    /^image data in memory: unreadable BMP image \(BMP compression 1 \(RLE or other\) is not supported\)$/,
  );

  await expectLoadError(Buffer.alloc(0), /^image data in memory: the image data is empty$/);
  await expectLoadError(Buffer.from("garbage"), /^image data in memory: not an image in a supported format/);
});
