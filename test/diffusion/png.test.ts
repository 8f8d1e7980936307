import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import { crc32, readPngText, toPng, toRgbBytes } from "../../src/diffusion/png.js";
import { Golden } from "../helpers/golden.js";
import { goldenDir } from "../helpers/fixtures.js";

const golden = new Golden(goldenDir("emu2-tiny", "diffusion"));

test("pixels round like the official pipeline's numpy_to_pil", () => {
  const image = golden.float32("run.image");
  const [, height, width] = image.shape;
  const bytes = toRgbBytes({ data: image.data, height, width });
  assert.deepEqual(bytes, golden.get("run.pixels").data);
  // Exact ties (2.5 and 3.5 after the float32 product) go to the even neighbour, as numpy rounds.
  assert.deepEqual(
    toRgbBytes({ data: Float32Array.from([2.5 / 255, 3.5 / 255, 1]), height: 1, width: 1 }),
    Uint8Array.from([2, 4, 255]),
  );
});

test("PNG carries the pixels and the text metadata, Latin-1 and UTF-8 alike", async () => {
  const image = golden.float32("run.image");
  const [, height, width] = image.shape;
  const metadata = { prompt: "a café at night, 夜のカフェ", seed: "1234", steps: "4", scale: "3", model: "emu2-tiny" };
  const png = await toPng({ data: image.data, height, width }, metadata);
  assert.deepEqual(readPngText(png), metadata);
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [width, height, 3]);
  assert.deepEqual(new Uint8Array(data), golden.get("run.pixels").data);
  const sharpView = await sharp(png).metadata();
  assert.equal(sharpView.format, "png");
});

test("CRC-32 of the PNG check string and a corrupted chunk is refused", async () => {
  assert.equal(crc32(Buffer.from("IEND")), 0xae426082);
  const png = await toPng({ data: new Float32Array(3 * 4), height: 2, width: 2 }, { seed: "7" });
  const at = png.indexOf("tEXt") + 4;
  png[at] ^= 1;
  assert.throws(() => readPngText(png), /CRC mismatch/);
});
