// Windows bitmaps, which sharp's libvips cannot read but PIL (and so the official code) can. Decoded to what
// PIL's BmpImagePlugin + convert("RGB") gives: palette colours for 1/4/8-bit images, B,G,R bytes for 24-bit,
// the colour bytes of 32-bit (the fourth byte, padding or alpha, dropped). Rows are bottom-up unless the height is
// negative. RLE-compressed and 16-bit bitmaps are refused with a message saying so.
import type { RgbImage } from "./image.js";

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d; // "BM"
}

const BI_RGB = 0;
const BI_BITFIELDS = 3;

/** Decodes a BMP file's bytes; throws an Error whose message is the problem (the caller names the file). */
export function decodeBmp(bytes: Uint8Array): RgbImage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (end: number) => {
    if (end > bytes.length) throw new Error("truncated BMP file");
  };
  need(26);
  const pixelOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  let width: number,
    height: number,
    bpp: number,
    compression = BI_RGB,
    colorsUsed = 0;
  let paletteEntrySize = 4;
  if (headerSize === 12) {
    width = view.getUint16(18, true);
    height = view.getInt16(20, true);
    bpp = view.getUint16(24, true);
    paletteEntrySize = 3;
  } else if (headerSize >= 40) {
    need(14 + 40);
    width = view.getInt32(18, true);
    height = view.getInt32(22, true);
    bpp = view.getUint16(28, true);
    compression = view.getUint32(30, true);
    colorsUsed = view.getUint32(46, true);
  } else {
    throw new Error(`unknown BMP header size ${headerSize}`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height === 0) throw new Error(`invalid BMP size ${width}x${height}`);

  // Channel masks: fixed for BI_RGB, read after (or inside) the header for BI_BITFIELDS.
  let masks = [0xff0000, 0xff00, 0xff];
  if (compression === BI_BITFIELDS && bpp === 32) {
    const at = 14 + 40;
    need(at + 12);
    masks = [view.getUint32(at, true), view.getUint32(at + 4, true), view.getUint32(at + 8, true)];
    if (!masks.every((m) => m !== 0 && m >>> maskShift(m) === 0xff)) {
      throw new Error(`BMP bit masks ${masks.map((m) => "0x" + m.toString(16)).join(", ")} are not supported`);
    }
  } else if (compression !== BI_RGB) {
    throw new Error(`BMP compression ${compression} (RLE or other) is not supported`);
  }
  if (![1, 4, 8, 24, 32].includes(bpp)) throw new Error(`${bpp}-bit BMP images are not supported`);

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const entries = colorsUsed > 0 ? colorsUsed : 1 << bpp;
    const at = 14 + headerSize;
    need(at + entries * paletteEntrySize);
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < Math.min(entries, 256); i++) {
      const e = at + i * paletteEntrySize;
      palette[i * 3] = bytes[e + 2];
      palette[i * 3 + 1] = bytes[e + 1];
      palette[i * 3 + 2] = bytes[e];
    }
  }

  const stride = Math.ceil((width * bpp) / 32) * 4;
  need(pixelOffset + stride * height);
  const data = new Uint8Array(width * height * 3);
  const shifts = masks.map(maskShift);
  for (let y = 0; y < height; y++) {
    const row = pixelOffset + (topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (palette) {
        const bit = x * bpp;
        const index = (bytes[row + (bit >> 3)] >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        data[o] = palette[index * 3];
        data[o + 1] = palette[index * 3 + 1];
        data[o + 2] = palette[index * 3 + 2];
      } else if (bpp === 24) {
        const p = row + x * 3;
        data[o] = bytes[p + 2];
        data[o + 1] = bytes[p + 1];
        data[o + 2] = bytes[p];
      } else {
        const v = view.getUint32(row + x * 4, true);
        for (let c = 0; c < 3; c++) data[o + c] = (v & masks[c]) >>> shifts[c];
      }
    }
  }
  return { width, height, data };
}

function maskShift(mask: number): number {
  let shift = 0;
  while (shift < 32 && ((mask >>> shift) & 1) === 0) shift++;
  return shift;
}
