// Decoding images into 8-bit RGB the way the official Emu2 code sees them: Image.open(path).convert("RGB").
//
// What that means, and how sharp is told to do the same:
// - alpha is dropped, not composited over a background (PIL's RGBA -> RGB keeps the colour of transparent pixels):
//   removeAlpha() drops the band;
// - grayscale is replicated into three channels and palettes are expanded: toColourspace("srgb");
// - embedded ICC profiles are ignored (PIL does not colour-manage): ignoreIcc;
// - animated GIF/WebP/TIFF pages: the first frame (sharp's default page 0, one page);
// - BMP, which libvips cannot read, goes through a small decoder of our own (bmp.ts);
// - CMYK (JPEG, TIFF) uses PIL's profile-free formula on the stored CMYK values, not sharp's CMYK profile.
// One deliberate difference: EXIF orientation IS applied (autoOrient), because a photo shown upright to the user
// should reach the model upright; PIL leaves the stored pixel order, so on rotated JPEGs the official code sees
// the image sideways. Known remaining differences (rare inputs): transparent pixels of GIFs come out black where PIL
// gives the colour their palette index happens to have; 16-bit grayscale is scaled to 8 bits (v >> 8) where PIL
// opens it as mode I and clips every value above 255 to white.
import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { Emu2Error } from "../util/errors.js";
import { decodeBmp, isBmp } from "./bmp.js";

/** 8-bit RGB pixels, row-major, interleaved (HWC): data.length === width * height * 3. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** An image file (or buffer) that cannot be decoded. The message is one line that names the file. */
export class ImageLoadError extends Emu2Error {
  constructor(
    readonly source: string,
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`, 1);
    this.name = "ImageLoadError";
  }
}

/** sharp's format ids this loader accepts (heif is AVIF in sharp's prebuilt libvips). */
const SUPPORTED_FORMATS: ReadonlyMap<string, string> = new Map([
  ["jpeg", "JPEG"],
  ["png", "PNG"],
  ["webp", "WebP"],
  ["gif", "GIF"],
  ["tiff", "TIFF"],
  ["heif", "AVIF"],
]);

export const SUPPORTED_FORMAT_NAMES = [...SUPPORTED_FORMATS.values(), "BMP"];

function oneLine(message: string): string {
  return message.replace(/\s+/g, " ").trim();
}

/**
 * Decodes a file path or an encoded image in memory into RGB. Throws ImageLoadError naming the source. `page` picks
 * one frame of an animated GIF or WebP, composited as it is shown (video.ts samples frames this way).
 */
export async function loadImage(
  input: string | Buffer,
  options: { page?: number; label?: string } = {},
): Promise<RgbImage> {
  const source = options.label ?? (typeof input === "string" ? input : "image data in memory");
  let bytes: Buffer;
  if (typeof input === "string") {
    try {
      bytes = await readFile(input);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new ImageLoadError(source, "no such file");
      if (code === "EISDIR") throw new ImageLoadError(source, "is a folder, not an image file");
      throw new ImageLoadError(source, `cannot read the file (${code ?? oneLine(String(err))})`);
    }
    if (bytes.length === 0) throw new ImageLoadError(source, "the file is empty");
  } else {
    bytes = input;
    if (bytes.length === 0) throw new ImageLoadError(source, "the image data is empty");
  }
  if (isBmp(bytes)) {
    try {
      return decodeBmp(bytes);
    } catch (err) {
      throw new ImageLoadError(source, `unreadable BMP image (${oneLine((err as Error).message)})`);
    }
  }

  let format: string | undefined;
  let cmyk = false;
  try {
    const metadata = await sharp(bytes).metadata();
    format = metadata.format;
    cmyk = metadata.space === "cmyk";
  } catch (err) {
    const message = oneLine((err as Error).message);
    if (/unsupported image format/i.test(message)) {
      throw new ImageLoadError(source, `not an image in a supported format (${SUPPORTED_FORMAT_NAMES.join(", ")})`);
    }
    throw new ImageLoadError(source, `corrupt or unreadable image (${message})`);
  }
  if (format === undefined || !SUPPORTED_FORMATS.has(format)) {
    throw new ImageLoadError(
      source,
      `${format ?? "unknown"} images are not supported (${SUPPORTED_FORMAT_NAMES.join(", ")})`,
    );
  }

  try {
    const decoder = sharp(bytes, { ignoreIcc: true, failOn: "truncated", page: options.page ?? 0 }).autoOrient();
    if (cmyk) {
      const { data, info } = await decoder
        .pipelineColourspace("cmyk")
        .toColourspace("cmyk")
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true });
      if (info.channels !== 4) throw new Error(`decoded CMYK to ${info.channels} channels, expected 4`);
      return { width: info.width, height: info.height, data: cmykToRgb(data) };
    }
    const { data, info } = await decoder
      .toColourspace("srgb")
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw new ImageLoadError(
      source,
      `corrupt or unreadable ${SUPPORTED_FORMATS.get(format)} image (${oneLine((err as Error).message)})`,
    );
  }
}

/** PIL's CMYK -> RGB (Convert.c cmyk2rgb): v = (255 - k) - round(c * (255 - k) / 255), in its integer arithmetic. */
function cmykToRgb(cmyk: Uint8Array): Uint8Array {
  const pixels = cmyk.length / 4;
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const notBlack = 255 - cmyk[p * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const t = cmyk[p * 4 + c] * notBlack + 128;
      rgb[p * 3 + c] = notBlack - ((t + (t >> 8)) >> 8);
    }
  }
  return rgb;
}
