// The facade a program uses: open a package, then caption, chat, generate images or score continuations. The CLI
// is a thin layer over this object, and so are the tests and benchmarks. Stages are created lazily, so a command
// only pays for the graphs it runs.
import type { GenerateImagesOptions } from "./diffusion/pipeline.js";
import { generateImages } from "./diffusion/pipeline.js";
import { toPng } from "./diffusion/png.js";
import { ModelPackage } from "./model/package.js";
import type { SessionOptions } from "./model/session.js";
import { encodePrompt, type EncodedPrompt } from "./prompt/encode.js";
import { renderPrompt, templateTokens } from "./prompt/render.js";
import type { PromptInput } from "./prompt/types.js";
import { Emu2Tokenizer } from "./tokenizer/tokenizer.js";
import { Emu2Error, PackageError } from "./util/errors.js";
import { VisualEncoder, type VisualFeatures } from "./vision/encoder.js";

export interface ImageGenerationOptions {
  numImages?: number;
  steps?: number;
  cfgScale?: number;
  seed?: number;
  onStep?: (step: number, steps: number) => void;
}

export interface GeneratedImage {
  /** Planar RGB [3,H,W] in [0,1]. */
  data: Float32Array;
  width: number;
  height: number;
  seed: number;
}

export interface PromptOptions {
  /** Chat: the system message (default: the package's). */
  system?: string;
  /** Chat: the short-answer system message. */
  shortAnswers?: boolean;
}

/** A prompt ready for the LLM: its token ids and the visual features of its images, in order. */
export interface PreparedPrompt {
  encoded: EncodedPrompt;
  features: VisualFeatures | null;
}

export class Emu2 {
  private encoder?: Promise<VisualEncoder>;
  private tokenizerInstance?: Emu2Tokenizer;

  constructor(readonly pkg: ModelPackage) {}

  static open(dir: string, sessionOptions: Partial<SessionOptions> = {}): Emu2 {
    return new Emu2(ModelPackage.open(dir, sessionOptions));
  }

  get manifest() {
    return this.pkg.manifest;
  }

  visualEncoder(): Promise<VisualEncoder> {
    this.encoder ??= this.pkg
      .session("visual_encoder")
      .then((session) => new VisualEncoder(session, this.manifest.vision, this.manifest.dtype));
    return this.encoder;
  }

  tokenizer(): Emu2Tokenizer {
    this.tokenizerInstance ??= Emu2Tokenizer.fromFile(this.pkg.path(this.manifest.tokenizer.file), this.manifest.tokenizer);
    return this.tokenizerInstance;
  }

  /** Template, tokens and image features of one prompt; `reserveTokens` is checked against the context too. */
  async prepare(input: PromptInput, options: PromptOptions & { reserveTokens?: number } = {}): Promise<PreparedPrompt> {
    const rendered = renderPrompt(input, this.manifest.prompt.template, templateTokens(this.manifest, { system: options.system, shortAnswers: options.shortAnswers }));
    const encoded = encodePrompt(rendered, this.tokenizer(), this.manifest, { reserveTokens: options.reserveTokens });
    if (encoded.images.length === 0) return { encoded, features: null };
    const encoder = await this.visualEncoder();
    return { encoded, features: await encoder.encodeSlots(encoded.images, encoded.nQuery) };
  }

  private requireVisualDecoder() {
    const decoder = this.manifest.visual_decoder;
    if (!decoder) {
      throw new PackageError(`package ${this.pkg.name} (${this.manifest.variant}) has no visual decoder and cannot generate images: use an Emu2-Gen package`);
    }
    return decoder;
  }

  /**
   * Runs the visual decoder on conditioning embeddings [1,Q,W]. Image i of a batch uses seed + i, so a batch equals
   * its images made one by one (docs/package-format.md, seeded noise).
   */
  async decodeEmbeddings(cond: VisualFeatures, uncond: VisualFeatures, options: ImageGenerationOptions): Promise<GeneratedImage[]> {
    const decoder = this.requireVisualDecoder();
    const [unet, vae] = await Promise.all([this.pkg.session("unet"), this.pkg.session("vae_decoder")]);
    const numImages = options.numImages ?? 1;
    const seed = options.seed ?? 0;
    const images: GeneratedImage[] = [];
    for (let i = 0; i < numImages; i++) {
      const request: GenerateImagesOptions = {
        cond,
        uncond,
        steps: options.steps,
        guidanceScale: options.cfgScale,
        seed: seed + i,
        dtype: this.manifest.dtype,
        onStep: (p) => options.onStep?.(i * p.steps + p.step, numImages * p.steps),
      };
      const out = await generateImages({ unet, vae }, decoder, request);
      const [, , height, width] = out.dims;
      images.push({ data: out.images, width, height, seed: seed + i });
    }
    return images;
  }

  /** Image-only prompt (autoencoding): the encoder features go straight to the UNet; null = an all-zero image. */
  async autoencode(input: PromptInput, options: ImageGenerationOptions): Promise<GeneratedImage[]> {
    this.requireVisualDecoder();
    if (input.kind !== "sequence" || input.parts.length !== 1 || input.parts[0].kind !== "image") {
      throw new Emu2Error("autoencoding takes exactly one image and no text");
    }
    const encoder = await this.visualEncoder();
    const cond = await encoder.encodeSlots([{ kind: "image", image: input.parts[0].image }]);
    const uncond = await encoder.encodeNullImage();
    return this.decodeEmbeddings(cond, uncond, options);
  }

  async release(): Promise<void> {
    await this.pkg.release();
  }
}

export async function imageToPng(image: GeneratedImage, metadata: Record<string, string>): Promise<Buffer> {
  return toPng({ data: image.data, width: image.width, height: image.height }, metadata);
}
