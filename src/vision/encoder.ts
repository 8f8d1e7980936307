// The visual encoder stage: image slots of a rendered prompt -> pooled visual features [K,Q,W] from the package's
// visual_encoder graph. Images go through the graph one at a time so memory stays flat on long few-shot prompts
// (1025 x 1792 floats per image at Emu2 scale) and the graph always sees the same input shape.
import type { Dtype, VisionConfig } from "../model/manifest.js";
import { fromOrt, toOrt, type Session } from "../model/ort.js";
import { concat, type Tensor } from "../model/tensor.js";
import type { ImageSlot } from "../prompt/render.js";
import { describeSource } from "../prompt/types.js";
import { drawBoxMask } from "./box-mask.js";
import { loadImage, type RgbImage } from "./image.js";
import { poolVisualFeatures } from "./pool.js";
import { preprocessImage, zeroNormalizedImage } from "./preprocess.js";

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
    private readonly session: Session,
    private readonly config: VisionConfig,
    private readonly dtype: Dtype,
  ) {}

  /** Runs the graph on normalized pixels [3,S,S] and pools to nQuery tokens: features [1,Q,W]. */
  async encodePixels(pixels: Float32Array, nQuery: number): Promise<Tensor> {
    const s = this.config.image_size;
    const out = await this.session.run({ pixel_values: await toOrt({ data: pixels, dims: [1, 3, s, s] }, this.dtype) });
    const hidden = fromOrt(out.last_hidden_state, "visual_encoder last_hidden_state");
    const [b, n, w] = hidden.dims;
    return poolVisualFeatures(hidden.data, [b, n, w], nQuery);
  }

  async encodeImage(image: RgbImage, nQuery = this.config.n_query): Promise<Tensor> {
    return this.encodePixels(preprocessImage(image, this.config), nQuery);
  }

  /** Every slot of a prompt, in order, stacked into features [K,Q,W] (K >= 1). */
  async encodeSlots(slots: readonly ImageSlot[], nQuery = this.config.n_query, onImage?: (done: number) => void): Promise<Tensor> {
    const parts: Tensor[] = [];
    for (const slot of slots) {
      parts.push(await this.encodeImage(await loadSlotImage(slot), nQuery));
      onImage?.(parts.length);
    }
    return concat(parts);
  }

  /** Features of the all-zero normalized image: the null condition of image-only (autoencoding) generation. */
  async encodeNullImage(nQuery = this.config.n_query): Promise<Tensor> {
    return this.encodePixels(zeroNormalizedImage(this.config.image_size), nQuery);
  }
}
