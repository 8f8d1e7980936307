// The official Emu2 image transform, bit for bit: Resize((S, S), BICUBIC) on a PIL image (aspect not kept, no crop),
// ToTensor, Normalize(mean, std) -> float32 [3,S,S].
//
// torchvision hands a PIL image to PIL's own resize, so the resampling to match is Pillow's ImagingResample for
// 8-bit images (libImaging/Resample.c), re-implemented here rather than using sharp's cubic kernels, whose
// results differ by several uint8 levels: two separable passes, horizontal first, each a convolution with the
// a = -0.5 cubic kernel stretched by the scale factor when downscaling (support 2 * scale), weights normalized
// to sum to 1 and turned into 22-bit fixed point, and the horizontal result rounded to 8 bits before the
// vertical pass. A pass whose size does not change is skipped, as PIL skips it.
import type { RgbImage } from "./image.js";

/** The fields of the manifest's `vision` section that preprocessing needs (the section itself can be passed). */
export interface PreprocessConfig {
  image_size: number;
  mean: readonly number[];
  std: readonly number[];
}

const PRECISION_BITS = 32 - 8 - 2;
const FIXED_ONE = 2 ** PRECISION_BITS;
const FIXED_HALF = 2 ** (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;
const BICUBIC_A = -0.5;

function bicubic(x: number): number {
  const t = Math.abs(x);
  if (t < 1) return ((BICUBIC_A + 2) * t - (BICUBIC_A + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * BICUBIC_A;
  return 0;
}

/** Per output pixel: the first input pixel, how many input pixels, and their fixed-point weights (ksize apart). */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  ksize: number;
}

function computeTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const row = new Float64Array(ksize);
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      row[x] = bicubic((x + xmin - center + 0.5) / filterScale);
      total += row[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? row[x] / total : row[x];
      // Round half away from zero, as PIL's (int)(w * ONE +- 0.5).
      weights[out * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * FIXED_ONE) : Math.trunc(0.5 + w * FIXED_ONE);
    }
    first[out] = xmin;
    count[out] = xmax;
  }
  return { first, count, weights, ksize };
}

function clip8(acc: number): number {
  if (acc <= 0) return 0;
  if (acc >= 256 * FIXED_ONE) return 255;
  return Math.floor(acc / FIXED_ONE);
}

/** Pillow's BICUBIC resize of an 8-bit RGB image to width x height (Image.resize((w, h), Image.BICUBIC)). */
export function resizeBicubic(image: RgbImage, width: number, height: number): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize target must be positive integers, got ${width}x${height}`);
  }
  const horizontal = computeTaps(image.width, width);
  const vertical = computeTaps(image.height, height);

  let src = image.data;
  let srcWidth = image.width;
  // Rows the vertical pass reads; the horizontal pass only produces these.
  let rowOffset = 0;
  if (width !== image.width) {
    // Same-size vertical taps are the identity over all rows, so this is every row when the height is kept.
    const rowStart = vertical.first[0];
    const rows = vertical.first[height - 1] + vertical.count[height - 1] - rowStart;
    const tmp = new Uint8Array(width * rows * 3);
    const { first, count, weights, ksize } = horizontal;
    for (let y = 0; y < rows; y++) {
      const inRow = (y + rowStart) * image.width * 3;
      const outRow = y * width * 3;
      for (let x = 0; x < width; x++) {
        let r = FIXED_HALF,
          g = FIXED_HALF,
          b = FIXED_HALF;
        const k = x * ksize;
        let p = inRow + first[x] * 3;
        for (let i = 0; i < count[x]; i++, p += 3) {
          const w = weights[k + i];
          r += src[p] * w;
          g += src[p + 1] * w;
          b += src[p + 2] * w;
        }
        const o = outRow + x * 3;
        tmp[o] = clip8(r);
        tmp[o + 1] = clip8(g);
        tmp[o + 2] = clip8(b);
      }
    }
    src = tmp;
    srcWidth = width;
    rowOffset = rowStart;
  }
  if (height === image.height) return { width, height, data: src === image.data ? src.slice() : src };

  const out = new Uint8Array(width * height * 3);
  const { first, count, weights, ksize } = vertical;
  const stride = srcWidth * 3;
  for (let y = 0; y < height; y++) {
    const k = y * ksize;
    const top = (first[y] - rowOffset) * stride;
    const outRow = y * width * 3;
    for (let x = 0; x < width * 3; x += 3) {
      let r = FIXED_HALF,
        g = FIXED_HALF,
        b = FIXED_HALF;
      let p = top + x;
      for (let i = 0; i < count[y]; i++, p += stride) {
        const w = weights[k + i];
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
      }
      out[outRow + x] = clip8(r);
      out[outRow + x + 1] = clip8(g);
      out[outRow + x + 2] = clip8(b);
    }
  }
  return { width, height, data: out };
}

/**
 * ToTensor + Normalize of an RGB image: float32 [3,H,W] (CHW), (v / 255 - mean[c]) / std[c], each step rounded to
 * float32 as torch does, so the values equal the reference's exactly.
 */
export function normalizeImage(image: RgbImage, mean: readonly number[], std: readonly number[]): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const lut = new Float32Array(256);
    const m = Math.fround(mean[c]);
    const s = Math.fround(std[c]);
    for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = lut[image.data[i * 3 + c]];
  }
  return out;
}

/** One image -> the encoder's input for it: float32 [3,S,S]. */
export function preprocessImage(image: RgbImage, config: PreprocessConfig): Float32Array {
  const size = config.image_size;
  const resized = image.width === size && image.height === size ? image : resizeBicubic(image, size, size);
  return normalizeImage(resized, config.mean, config.std);
}

/** Images -> `pixel_values` float32 [B,3,S,S]. */
export function preprocessBatch(
  images: readonly RgbImage[],
  config: PreprocessConfig,
): { data: Float32Array; dims: [number, number, number, number] } {
  const size = config.image_size;
  const each = 3 * size * size;
  const data = new Float32Array(images.length * each);
  images.forEach((image, i) => data.set(preprocessImage(image, config), i * each));
  return { data, dims: [images.length, 3, size, size] };
}

/**
 * The all-zero normalized image [3,S,S]: Emu2-Gen's classifier-free-guidance null for image-only prompts
 * (autoencoding) is the encoding of torch.zeros_like(pixel_values), i.e. zeros AFTER normalization.
 */
export function zeroNormalizedImage(size: number): Float32Array {
  return new Float32Array(3 * size * size);
}
