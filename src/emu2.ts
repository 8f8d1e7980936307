// The facade a program uses: open a package, then caption, chat, generate images or score continuations. The CLI
// is a thin layer over this object, and so are the tests and benchmarks. Stages are created lazily, so a command
// only pays for the graphs it runs.
import type { GenerateImagesOptions } from "./diffusion/pipeline.js";
import { generateImages } from "./diffusion/pipeline.js";
import { toPng } from "./diffusion/png.js";
import { decoderRoles, ModelPackage } from "./model/package.js";
import type { SessionOptions } from "./model/session.js";
import { concat, type Tensor } from "./model/tensor.js";
import { encodePrompt, type EncodedPrompt } from "./prompt/encode.js";
import { renderPrompt, templateTokens } from "./prompt/render.js";
import type { ImageSource, PromptInput } from "./prompt/types.js";
import { LlmStage, type GenerationSettings, type StopReason } from "./llm/stage.js";
import { Emu2Tokenizer, TextStream } from "./tokenizer/tokenizer.js";
import { Emu2Error, PackageError, PromptError } from "./util/errors.js";
import { VisualEncoder } from "./vision/encoder.js";
import { ImageLoadError } from "./vision/image.js";

export interface TextResult {
  text: string;
  /** Generated ids (eos and padding removed). */
  ids: number[];
  stopReason: StopReason;
}

export interface TextOptions extends PromptOptions {
  signal?: AbortSignal;
  /** Streamed text of prompt `index` as it is accepted (one beam only; beam search reports its result at the end). */
  onText?: (index: number, delta: string) => void;
}

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
  /**
   * Where a prompt's image features come from (default: the visual encoder, every time): a caller that meets the
   * same images again and again (few-shot evaluation) passes a cache. Returns [1,Q,W] for one image.
   */
  imageFeatures?: (image: ImageSource, nQuery: number) => Promise<Tensor>;
}

/** A prompt ready for the LLM: its token ids and the visual features of its images, in order. */
export interface PreparedPrompt {
  encoded: EncodedPrompt;
  /** Image features [K,Q,W] of the prompt's images, in order. */
  features: Tensor | null;
}

/** Visual embeddings Emu2-Gen regresses per image (emu2-facts.md). */
const REGRESSION_TOKENS = 64;

function allFeatures(prepared: readonly PreparedPrompt[]): Tensor | null {
  const present = prepared.flatMap((p) => (p.features ? [p.features] : []));
  return present.length > 0 ? concat(present) : null;
}

/** Text up to the first stop string (the stop string itself is not part of the answer). */
export function trimAtStop(text: string, stops: readonly string[]): string {
  let end = text.length;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (stop.length > 0 && at >= 0) end = Math.min(end, at);
  }
  return text.slice(0, end);
}

export class Emu2 {
  private encoder?: Promise<VisualEncoder>;
  private llmStage?: Promise<LlmStage>;
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
    const source = options.imageFeatures;
    if (source === undefined || encoded.images.some((slot) => slot.kind !== "image")) {
      const encoder = await this.visualEncoder();
      return { encoded, features: await encoder.encodeSlots(encoded.images, encoded.nQuery) };
    }
    const parts: Tensor[] = [];
    for (const slot of encoded.images) if (slot.kind === "image") parts.push(await source(slot.image, encoded.nQuery));
    return { encoded, features: concat(parts) };
  }

  /** Pooled visual features [1,Q,W] of one image (Q: the package's n_query unless given). */
  async imageFeatures(image: ImageSource, nQuery = this.manifest.vision.n_query): Promise<Tensor> {
    const encoder = await this.visualEncoder();
    return encoder.encodeSlots([{ kind: "image", image }], nQuery);
  }

  llm(): Promise<LlmStage> {
    this.llmStage ??= Promise.all([
      Promise.all((["embed_tokens", "project_up", "lm_head", "project_down"] as const).map((role) => this.pkg.session(role))),
      Promise.all(decoderRoles(this.manifest).map((role) => this.pkg.session(role))),
    ]).then(([[embedTokens, projectUp, lmHead, projectDown], parts]) =>
      new LlmStage({ embedTokens, projectUp, decoder: parts.length === 1 ? parts[0] : parts, lmHead, projectDown }, this.manifest));
    return this.llmStage;
  }

  /** Generates text for a batch of prompts (left-padded into one batch). */
  async generateText(inputs: PromptInput[], settings: GenerationSettings, options: TextOptions = {}): Promise<TextResult[]> {
    const prepared = [];
    for (const input of inputs) prepared.push(await this.prepare(input, { ...options, reserveTokens: settings.maxNewTokens }));
    return this.generateFromPrepared(prepared, settings, options);
  }

  /**
   * The same, but a prompt whose preparation fails (an unreadable image, a prompt too long for the context) gets its
   * own error and the rest still run: what a batch job over many files needs. A failure of the package itself (its
   * tokenizer, a graph that does not load) is thrown, since every other prompt would fail the same way.
   */
  async generateTextEach(inputs: PromptInput[], settings: GenerationSettings, options: TextOptions = {}): Promise<(TextResult | { error: unknown })[]> {
    const results: (TextResult | { error: unknown })[] = new Array(inputs.length);
    const ready: PreparedPrompt[] = [];
    const readyIndex: number[] = [];
    for (const [i, input] of inputs.entries()) {
      try {
        ready.push(await this.prepare(input, { ...options, reserveTokens: settings.maxNewTokens }));
        readyIndex.push(i);
      } catch (error) {
        if (!(error instanceof ImageLoadError || error instanceof PromptError)) throw error;
        results[i] = { error };
      }
    }
    if (ready.length > 0) {
      const generated = await this.generateFromPrepared(ready, settings, options);
      generated.forEach((r, k) => (results[readyIndex[k]] = r));
    }
    return results;
  }

  private async generateFromPrepared(prepared: PreparedPrompt[], settings: GenerationSettings, options: TextOptions): Promise<TextResult[]> {
    const llm = await this.llm();
    const tokenizer = this.tokenizer();
    const streams = prepared.map(() => new TextStream(tokenizer));
    const outputs = await llm.generateText(
      prepared.map((p) => p.encoded.ids),
      // The batch's image features in the order their <image> rows appear (row-major over the batch).
      allFeatures(prepared),
      settings,
      {
        signal: options.signal,
        decode: (ids) => tokenizer.decode(ids),
        onTokens: options.onText ? (index, ids) => {
          const delta = streams[index].push(ids);
          if (delta) options.onText?.(index, delta);
        } : undefined,
      },
    );
    const results = outputs.map((out) => ({ text: trimAtStop(tokenizer.decode(out.ids), settings.stop), ids: out.ids, stopReason: out.stopReason }));
    // Beam search knows its answer only at the end: a caller that streams gets it then, whole.
    if (settings.numBeams > 1 && options.onText) results.forEach((r, i) => options.onText?.(i, r.text));
    return results;
  }

  /**
   * Classification by ranking (eval-facts.md): log-probabilities of each candidate continuation after the prompt,
   * summed and averaged over its tokens; the prompt's KV cache is computed once and reused for every candidate.
   */
  async scoreContinuations(input: PromptInput, candidates: string[], options: PromptOptions = {}): Promise<{ candidate: string; sum: number; mean: number }[]> {
    const prepared = await this.prepare(input, options);
    const tokenizer = this.tokenizer();
    const ids = candidates.map((c) => tokenizer.encode(c, { addBos: false }));
    const empty = candidates.findIndex((_, i) => ids[i].length === 0);
    if (empty >= 0) throw new Emu2Error(`candidate ${empty + 1} is empty`);
    const scores = await (await this.llm()).scoreContinuations(prepared.encoded.ids, prepared.features, ids);
    return scores.map((s, i) => ({ candidate: candidates[i], ...s }));
  }

  /** Text (and reference images) -> images: Emu2-Gen regresses 64 visual embeddings, the visual decoder draws them. */
  async generateImages(input: PromptInput, options: ImageGenerationOptions): Promise<GeneratedImage[]> {
    this.requireVisualDecoder();
    const prepared = await this.prepare(input, { reserveTokens: REGRESSION_TOKENS });
    const llm = await this.llm();
    const cond = await llm.regress([prepared.encoded.ids], prepared.features, REGRESSION_TOKENS);
    // The classifier-free guidance null condition: the regression of the empty prompt, <s>[IMG]...
    const uncond = await llm.regress([this.tokenizer().encode("")], null, REGRESSION_TOKENS);
    return this.decodeEmbeddings(cond, uncond, options);
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
  async decodeEmbeddings(cond: Tensor, uncond: Tensor, options: ImageGenerationOptions): Promise<GeneratedImage[]> {
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
