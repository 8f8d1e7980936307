// PNG output of generated images with their settings as text chunks (prompt, seed, steps, scale, model). sharp
// encodes the pixels; it cannot write arbitrary text chunks, so they are spliced in after IHDR here: tEXt for Latin-1
// values, iTXt (UTF-8) for anything else, each with its CRC-32.
import sharp from "sharp";

/** One RGB image, planar [3,H,W] floats in [0,1] (a slice of the pipeline's output). */
export interface RgbImage {
  data: Float32Array;
  height: number;
  width: number;
}

/** Interleaved RGB bytes: round(x * 255) in float32 with ties to even, as numpy's round in the official pipeline. */
export function toRgbBytes(image: RgbImage): Uint8Array {
  const { data, height, width } = image;
  const plane = height * width;
  if (data.length !== 3 * plane) throw new RangeError(`${data.length} values for a 3x${height}x${width} image`);
  const out = new Uint8Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(data[c * plane + p] * 255);
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r -= 1;
      out[p * 3 + c] = Math.min(255, Math.max(0, r));
    }
  }
  return out;
}

export async function toPng(image: RgbImage, metadata: Record<string, string> = {}): Promise<Buffer> {
  const png = await sharp(toRgbBytes(image), { raw: { width: image.width, height: image.height, channels: 3 } })
    .png()
    .toBuffer();
  return insertTextChunks(png, metadata);
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Buffer): Buffer {
  const typeAndBody = Buffer.concat([Buffer.from(type, "latin1"), body]);
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  typeAndBody.copy(out, 4);
  out.writeUInt32BE(crc32(typeAndBody), 8 + body.length);
  return out;
}

function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || keyword !== keyword.trim()) {
    throw new RangeError(
      `PNG text keyword ${JSON.stringify(keyword)}: 1-79 printable Latin-1 characters, no edge spaces`,
    );
  }
  if (/^[\x00-\xff]*$/.test(text) && !text.includes("\0")) {
    return chunk(
      "tEXt",
      Buffer.concat([Buffer.from(keyword, "latin1"), Buffer.from([0]), Buffer.from(text, "latin1")]),
    );
  }
  // iTXt: keyword, NUL, compression flag 0, method 0, empty language tag, NUL, empty translated keyword, NUL, UTF-8.
  return chunk(
    "iTXt",
    Buffer.concat([Buffer.from(keyword, "latin1"), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, "utf8")]),
  );
}

export function insertTextChunks(png: Buffer, metadata: Record<string, string>): Buffer {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error("not a PNG file");
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  const chunks = Object.entries(metadata).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** The tEXt and uncompressed iTXt entries of a PNG, keyword -> text; chunks whose CRC is wrong are an error. */
export function readPngText(png: Buffer): Record<string, string> {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error("not a PNG file");
  const out: Record<string, string> = {};
  for (let at = 8; at + 12 <= png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (png.readUInt32BE(at + 8 + length) !== crc32(png.subarray(at + 4, at + 8 + length))) {
      throw new Error(`PNG chunk ${type} at byte ${at}: CRC mismatch`);
    }
    const nul = body.indexOf(0);
    if (type === "tEXt" && nul > 0) {
      out[body.toString("latin1", 0, nul)] = body.toString("latin1", nul + 1);
    } else if (type === "iTXt" && nul > 0 && body[nul + 1] === 0) {
      const lang = body.indexOf(0, nul + 3);
      const translated = body.indexOf(0, lang + 1);
      out[body.toString("latin1", 0, nul)] = body.toString("utf8", translated + 1);
    }
    if (type === "IEND") break;
    at += 12 + length;
  }
  return out;
}
