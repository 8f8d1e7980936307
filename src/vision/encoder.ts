// The visual encoder stage: image slots of a rendered prompt -> pooled visual features [K,Q,W] from the package's
// visual_encoder graph. Images go through the graph one at a time so memory stays flat on long few-shot prompts
// (1025 x 1792 floats per image at Emu2 scale) and the graph always sees the same input shape.
import type { InferenceSession } from "onnxruntime-node";
import type { VisionConfig } from "../model/manifest.js";
import { loadOrt } from "../model/session.js";
import type { ImageSlot } from "../prompt/render.js";
import { describeSource } from "../prompt/types.js";
import { drawBoxMask } from "./box-mask.js";
import { loadImage, type RgbImage } from "./image.js";
import { poolVisualFeatures } from "./pool.js";
import { preprocessImage, zeroNormalizedImage } from "./preprocess.js";
import { fromFloat16, toFloat16 } from "../util/float16.js";

/** Pooled visual features: K images x Q tokens x W channels, row-major. */
export interface VisualFeatures {
  data: Float32Array;
  dims: [number, number, number];
}

export async function loadSlotImage(slot: ImageSlot): Promise<RgbImage> {
  if (slot.kind === "box-mask") return drawBoxMask(slot.box);
  const source = slot.image;
  return loadImage("path" in source ? source.path : source.bytes).catch((err: unknown) => {
    if ("path" in source) throw err;
    throw new Error(`${describeSource(source)}: ${(err as Error).message}`);
  });
}

export class VisualEncoder {
  constructor(
    private readonly session: InferenceSession,
    private readonly config: VisionConfig,
    private readonly dtype: "float32" | "float16",
  ) {}

  /** Runs the graph on normalized pixels [3,S,S] and pools to nQuery tokens. */
  async encodePixels(pixels: Float32Array, nQuery: number): Promise<VisualFeatures> {
    const ort = await loadOrt();
    const s = this.config.image_size;
    const input =
      this.dtype === "float16"
        ? new ort.Tensor("float16", toFloat16(pixels), [1, 3, s, s])
        : new ort.Tensor("float32", pixels, [1, 3, s, s]);
    const out = await this.session.run({ pixel_values: input });
    const hidden = out.last_hidden_state;
    const data = hidden.type === "float16" ? fromFloat16(hidden.data as Uint16Array) : (hidden.data as Float32Array);
    const [b, n, w] = hidden.dims as number[];
    const pooled = poolVisualFeatures(data, [b, n, w], nQuery);
    return { data: pooled.data, dims: pooled.dims as [number, number, number] };
  }

  async encodeImage(image: RgbImage, nQuery = this.config.n_query): Promise<VisualFeatures> {
    return this.encodePixels(preprocessImage(image, this.config), nQuery);
  }

  /** Every slot of a prompt, in order, stacked into [K,Q,W]. */
  async encodeSlots(slots: readonly ImageSlot[], nQuery = this.config.n_query, onImage?: (done: number) => void): Promise<VisualFeatures> {
    const parts: Float32Array[] = [];
    let width = this.config.width;
    for (const slot of slots) {
      const features = await this.encodeImage(await loadSlotImage(slot), nQuery);
      width = features.dims[2];
      parts.push(features.data);
      onImage?.(parts.length);
    }
    const data = new Float32Array(parts.length * nQuery * width);
    parts.forEach((p, i) => data.set(p, i * nQuery * width));
    return { data, dims: [parts.length, nQuery, width] };
  }

  /** Features of the all-zero normalized image: the null condition of image-only (autoencoding) generation. */
  async encodeNullImage(nQuery = this.config.n_query): Promise<VisualFeatures> {
    return this.encodePixels(zeroNormalizedImage(this.config.image_size), nQuery);
  }
}
