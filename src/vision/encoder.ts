// The visual encoder stage: a decoded image -> pooled visual features [1,Q,W] from the package's visual_encoder
// graph. The facade (src/emu2.ts) decodes a prompt's images and feeds them one at a time, so memory stays flat on
// long few-shot prompts (1025 x 1792 floats per image at Emu2 scale) and the graph always sees the same input shape.
import type { Dtype, VisionConfig } from "../model/manifest.js";
import { fromOrt, toOrt, type Session } from "../model/ort.js";
import type { Tensor } from "../model/tensor.js";
import type { RgbImage } from "./image.js";
import { poolVisualFeatures } from "./pool.js";
import { preprocessImage, zeroNormalizedImage } from "./preprocess.js";

export class VisualEncoder {
  constructor(
    private readonly session: Session,
    private readonly config: VisionConfig,
    private readonly dtype: Dtype,
  ) {}

  /** Runs the graph on normalized pixels [3,S,S] and pools to nQuery tokens: features [1,Q,W]. */
  async encodePixels(pixels: Float32Array, nQuery: number): Promise<Tensor> {
    const s = this.config.image_size;
    const out = await this.session.run({ pixel_values: toOrt({ data: pixels, dims: [1, 3, s, s] }, this.dtype) });
    const hidden = fromOrt(out.last_hidden_state, "visual_encoder last_hidden_state");
    const [b, n, w] = hidden.dims;
    return poolVisualFeatures(hidden.data, [b, n, w], nQuery);
  }

  async encodeImage(image: RgbImage, nQuery = this.config.n_query): Promise<Tensor> {
    return this.encodePixels(preprocessImage(image, this.config), nQuery);
  }

  /** Features of the all-zero normalized image: the null condition of image-only (autoencoding) generation. */
  async encodeNullImage(nQuery = this.config.n_query): Promise<Tensor> {
    return this.encodePixels(zeroNormalizedImage(this.config.image_size), nQuery);
  }
}
