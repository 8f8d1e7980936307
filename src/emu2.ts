// The facade a program uses: open a package, then caption, chat, generate images or score continuations. The CLI
// is a thin layer over this object, and so are the tests and benchmarks. Stages are created lazily, so a command
// only pays for the graphs it runs.
import type { GenerateImagesOptions } from "./diffusion/pipeline.js";
import { generateImages } from "./diffusion/pipeline.js";
import { toPng } from "./diffusion/png.js";
import { decoderRoles, ModelPackage } from "./model/package.js";
import type { SessionOptions } from "./model/session.js";
import { concat, type Tensor } from "./model/tensor.js";
import { encodePrompt, videoNQuery, type EncodedPrompt } from "./prompt/encode.js";
import { FRAME_TOKEN, IMAGE_TOKEN } from "./prompt/tokens.js";
import { renderPrompt, templateTokens, videoParts } from "./prompt/render.js";
import type { ImageSlot } from "./prompt/render.js";
import { describeSource, type ImageSource, type PromptInput } from "./prompt/types.js";
import { mergeFeatureRows } from "./llm/embed.js";
import { DeviceKvCache, deviceCacheOutputs, deviceCacheSessions } from "./llm/device-kv-cache.js";
import { HostKvCache, PartCaches, type KvCacheShape } from "./llm/kv-cache.js";
import { LlmStage, type GenerationSettings, type KvCacheFactory, type StopReason } from "./llm/stage.js";
import { StopStrings } from "./llm/stop-strings.js";
import { Emu2Tokenizer, TextStream } from "./tokenizer/tokenizer.js";
import { Emu2Error, PackageError, PromptError } from "./util/errors.js";
import { VisualEncoder } from "./vision/encoder.js";
import { drawBoxMask } from "./vision/box-mask.js";
import { ImageLoadError, loadImage, type RgbImage } from "./vision/image.js";
import {
  decodeFrames,
  DEFAULT_VIDEO_FRAMES,
  probeVideo,
  sampleVideo,
  VideoError,
  type ProbedVideo,
  type SampledVideo,
} from "./vision/video.js";

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
  /** Frames sampled uniformly from each video (default 8; all of them when a video has fewer). */
  frames?: number;
  /** Told when a video has fewer frames than asked (a notice for a person; the prompt still runs). */
  onNotice?: (message: string) => void;
}

/**
 * A prompt ready for the LLM: its token ids and the visual features of its images and video frames. Without videos,
 * features are [K,Q,W], one row of Q per image in order; with videos, [1,R,W]: one row per <image> or [gIMG] token,
 * in the order those tokens appear (mergeFeatureRows).
 */
export interface PreparedPrompt {
  encoded: EncodedPrompt;
  features: Tensor | null;
  /** Each video of the prompt, in order, with the frames sampled from it. */
  videos: SampledVideo[];
}

function allFeatures(prepared: readonly PreparedPrompt[]): Tensor | null {
  const present = prepared.flatMap((p) => (p.features ? [p.features] : []));
  if (present.length === 0) return null;
  if (present.every((f) => f.dims[1] === present[0].dims[1])) return concat(present);
  // Prompts with videos carry rows [1,R,W] (PreparedPrompt): the batch's features are joined as rows.
  return concat(
    present.map((f) => ({ data: f.data, dims: [1, f.dims[0] * f.dims[1], f.dims[2]] })),
    1,
  );
}

/**
 * Decodes one image slot of a prompt: a user's image (a file, or bytes in memory) or a box mask. An in-memory image
 * that does not decode stays an ImageLoadError, named as the prompt names it, so a batch reports it for that prompt.
 */
async function loadSlotImage(slot: ImageSlot): Promise<RgbImage> {
  if (slot.kind === "box-mask") return drawBoxMask(slot.box);
  const source = slot.image;
  if ("path" in source) return loadImage(source.path);
  return loadImage(source.bytes).catch((err: unknown) => {
    throw err instanceof ImageLoadError ? new ImageLoadError(describeSource(source), err.problem) : err;
  });
}

/** Every slot of a prompt, decoded and encoded one at a time, in order: features [K,Q,W]. */
async function encodeSlots(encoder: VisualEncoder, slots: readonly ImageSlot[], nQuery?: number): Promise<Tensor> {
  const parts: Tensor[] = [];
  for (const slot of slots) parts.push(await encoder.encodeImage(await loadSlotImage(slot), nQuery));
  return concat(parts);
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
    this.tokenizerInstance ??= Emu2Tokenizer.fromFile(
      this.pkg.path(this.manifest.tokenizer.file),
      this.manifest.tokenizer,
    );
    return this.tokenizerInstance;
  }

  /**
   * Probes the prompt's videos and samples their frames (no pixels decoded yet): what rendering needs to know how
   * many frame slots each video takes. A video named twice is probed once.
   */
  async sampleVideos(
    input: PromptInput,
    options: Pick<PromptOptions, "frames" | "onNotice"> = {},
  ): Promise<Map<string, { probed: ProbedVideo; sampled: SampledVideo }>> {
    const videos = new Map<string, { probed: ProbedVideo; sampled: SampledVideo }>();
    const sources = videoParts(input);
    if (sources.length === 0) return videos;
    videoNQuery(this.manifest);
    for (const source of sources) {
      if (videos.has(source.path)) continue;
      const probed = await probeVideo(source.path);
      const sampled = sampleVideo(probed, options.frames ?? DEFAULT_VIDEO_FRAMES);
      if (sampled.shortBy !== undefined) {
        options.onNotice?.(
          `emu2: ${source.path}: ${sampled.totalFrames} frame${sampled.totalFrames === 1 ? "" : "s"}, fewer than the ${sampled.requested} asked for: using all of them`,
        );
      }
      videos.set(source.path, { probed, sampled });
    }
    return videos;
  }

  /** Template, tokens and image features of one prompt; `reserveTokens` is checked against the context too. */
  async prepare(input: PromptInput, options: PromptOptions & { reserveTokens?: number } = {}): Promise<PreparedPrompt> {
    const videos = await this.sampleVideos(input, options);
    const tokens = templateTokens(this.manifest, {
      system: options.system,
      shortAnswers: options.shortAnswers,
      videoFrames: (video) => (videos.get(video.path) as { sampled: SampledVideo }).sampled.frames.length,
    });
    const rendered = renderPrompt(input, this.manifest.prompt.template, tokens);
    const encoded = encodePrompt(rendered, this.tokenizer(), this.manifest, { reserveTokens: options.reserveTokens });
    const sampled = encoded.videos.map((slot) => (videos.get(slot.video.path) as { sampled: SampledVideo }).sampled);
    if (encoded.images.length === 0 && encoded.videos.length === 0) return { encoded, features: null, videos: sampled };
    const images = encoded.images.length > 0 ? await this.slotFeatures(encoded, options.imageFeatures) : null;
    if (encoded.videos.length === 0) return { encoded, features: images, videos: sampled };
    const encoder = await this.visualEncoder();
    const vQuery = encoded.videoNQuery as number;
    const frameFeatures: Tensor[] = [];
    for (const slot of encoded.videos) {
      const video = videos.get(slot.video.path) as { probed: ProbedVideo; sampled: SampledVideo };
      for await (const frame of decodeFrames(video.probed, video.sampled))
        frameFeatures.push(await encoder.encodeImage(frame, vQuery));
    }
    const tokenIds = this.manifest.tokenizer.special_tokens;
    const frames = concat(frameFeatures);
    const features = mergeFeatureRows(encoded.ids, tokenIds[IMAGE_TOKEN], images, tokenIds[FRAME_TOKEN], frames);
    return { encoded, features, videos: sampled };
  }

  /** Features [K,Q,W] of the prompt's image slots, from `source` where given (images only), else the encoder. */
  private async slotFeatures(encoded: EncodedPrompt, source: PromptOptions["imageFeatures"]): Promise<Tensor> {
    if (source === undefined || encoded.images.some((slot) => slot.kind !== "image")) {
      const encoder = await this.visualEncoder();
      return encodeSlots(encoder, encoded.images, encoded.nQuery);
    }
    const parts: Tensor[] = [];
    for (const slot of encoded.images) if (slot.kind === "image") parts.push(await source(slot.image, encoded.nQuery));
    return concat(parts);
  }

  /** Pooled visual features [1,Q,W] of one image (Q: the package's n_query unless given). */
  async imageFeatures(image: ImageSource, nQuery = this.manifest.vision.n_query): Promise<Tensor> {
    const encoder = await this.visualEncoder();
    return encodeSlots(encoder, [{ kind: "image", image }], nQuery);
  }

  llm(): Promise<LlmStage> {
    this.llmStage ??= this.openLlm();
    return this.llmStage;
  }

  /**
   * The LLM graphs and the KV cache strategy that fits where the decoder runs: a decoder graph on WebGPU keeps its
   * cache on the device (DeviceKvCache), one on the CPU in host memory (HostKvCache). A decoder split across
   * devices has one cache per part (PartCaches), each on its part's device.
   */
  private async openLlm(): Promise<LlmStage> {
    const { num_layers: layers, num_heads: heads, head_dim: headDim, decoder_parts: split } = this.manifest.llm;
    const roles = decoderRoles(this.manifest);
    const decoders = [];
    // Each part's device cache, or the shape of its host cache, made once every part is placed.
    const caches: (KvCacheFactory | KvCacheShape)[] = [];
    let first = 0;
    for (const [k, role] of roles.entries()) {
      const count = split ? split[k].layers : layers;
      const shape = { layers: count, firstLayer: first, heads, headDim, dtype: this.manifest.dtype };
      const onGpu = this.pkg.placement(role) === "webgpu";
      // On WebGPU the cache's outputs stay on the device: this run's rows, or a decoder's presents (older export).
      const deviceOutputs = onGpu ? deviceCacheOutputs(this.pkg.graphOutputs(role), count, first) : [];
      const decoder = await this.pkg.placedSession(role, onGpu ? { deviceOutputs } : {});
      decoders.push(decoder);
      // With --cpu-fallback, WebGPU may have failed on an earlier graph: then this part runs on the CPU.
      if (decoder.device === "webgpu") {
        const built = async (name: string, graph: Uint8Array, outputs: string[]) => {
          const placed = await this.pkg.builtSession(`${name}_${role}`, graph, { deviceOutputs: outputs }, role);
          if (placed.device !== "webgpu")
            throw new Emu2Error(
              `WebGPU failed for the KV cache of ${role} after the graph started on it: run with --device cpu`,
            );
          return placed.session;
        };
        caches.push(DeviceKvCache.factory(shape, await deviceCacheSessions(shape, deviceOutputs, built)));
      } else caches.push(shape);
      first += count;
    }
    // Host caches leave beams in the batch rows they lie in (HostKvCache.feedOrder); a device cache moves its rows,
    // so beside one, a host part's rows move too: every part feeds its rows in one order.
    const rankOrder = caches.some((c) => typeof c === "function");
    const factories = caches.map((c) => (typeof c === "function" ? c : HostKvCache.factory(c, 0, rankOrder)));
    const [projectUp, lmHead, projectDown] = await Promise.all(
      (["project_up", "lm_head", "project_down"] as const).map((role) => this.pkg.session(role)),
    );
    // The embedding graph is one lookup: its rows are read from the file when it is a plain one.
    const embedTokens = this.pkg.lookupTable("embed_tokens") ?? (await this.pkg.session("embed_tokens"));
    const sessions = decoders.map((d) => d.session);
    return new LlmStage(
      {
        embedTokens,
        projectUp,
        decoder: sessions.length === 1 ? sessions[0] : sessions,
        lmHead,
        projectDown,
      },
      this.manifest,
      factories.length === 1 ? factories[0] : PartCaches.factory(factories),
    );
  }

  /** Generates text for a batch of prompts (left-padded into one batch). */
  async generateText(
    inputs: PromptInput[],
    settings: GenerationSettings,
    options: TextOptions = {},
  ): Promise<TextResult[]> {
    const prepared = [];
    for (const input of inputs)
      prepared.push(await this.prepare(input, { ...options, reserveTokens: settings.maxNewTokens }));
    return this.generateFromPrepared(prepared, settings, options);
  }

  /**
   * The same, but a prompt whose preparation fails (an unreadable image or video, a prompt too long for the context) gets its
   * own error and the rest still run: what a batch job over many files needs. A failure of the package itself (its
   * tokenizer, a graph that does not load) is thrown, since every other prompt would fail the same way.
   */
  async generateTextEach(
    inputs: PromptInput[],
    settings: GenerationSettings,
    options: TextOptions = {},
  ): Promise<(TextResult | { error: unknown })[]> {
    const results: (TextResult | { error: unknown })[] = new Array(inputs.length);
    const ready: PreparedPrompt[] = [];
    const readyIndex: number[] = [];
    for (const [i, input] of inputs.entries()) {
      try {
        ready.push(await this.prepare(input, { ...options, reserveTokens: settings.maxNewTokens }));
        readyIndex.push(i);
      } catch (error) {
        if (!(error instanceof ImageLoadError || error instanceof VideoError || error instanceof PromptError))
          throw error;
        results[i] = { error };
      }
    }
    if (ready.length > 0) {
      const generated = await this.generateFromPrepared(ready, settings, options);
      generated.forEach((r, k) => (results[readyIndex[k]] = r));
    }
    return results;
  }

  private async generateFromPrepared(
    prepared: PreparedPrompt[],
    settings: GenerationSettings,
    options: TextOptions,
  ): Promise<TextResult[]> {
    const llm = await this.llm();
    const tokenizer = this.tokenizer();
    const stops = new StopStrings(settings.stop);
    const streams = prepared.map(() => new TextStream(tokenizer));
    // Characters of each answer handed to onText so far: never a stop text, nor what may still become one.
    const shown = prepared.map(() => 0);
    const show = (index: number, text: string, upTo: number) => {
      if (upTo <= shown[index]) return;
      options.onText?.(index, text.slice(shown[index], upTo));
      shown[index] = upTo;
    };
    const outputs = await llm.generateText(
      prepared.map((p) => p.encoded.ids),
      // The batch's image features in the order their <image> rows appear (row-major over the batch).
      allFeatures(prepared),
      settings,
      {
        signal: options.signal,
        decode: (ids) => tokenizer.decode(ids),
        onTokens: options.onText
          ? (index, ids) => {
              streams[index].push(ids);
              const text = streams[index].text;
              show(index, text, stops.settledLength(text));
            }
          : undefined,
      },
    );
    const results = outputs.map((out) => ({
      text: stops.trim(tokenizer.decode(out.ids)),
      ids: out.ids,
      stopReason: out.stopReason,
    }));
    // The rest of each answer: text held back for a stop that never completed, or beam search's whole answer (it
    // knows its result only at the end).
    if (options.onText) results.forEach((r, i) => show(i, r.text, r.text.length));
    return results;
  }

  /**
   * Classification by ranking: log-probabilities of each candidate continuation after the prompt,
   * summed and averaged over its tokens; the prompt's KV cache is computed once and reused for every candidate.
   */
  async scoreContinuations(
    input: PromptInput,
    candidates: string[],
    options: PromptOptions = {},
  ): Promise<{ candidate: string; sum: number; mean: number }[]> {
    const prepared = await this.prepare(input, options);
    const tokenizer = this.tokenizer();
    const ids = candidates.map((c) => tokenizer.encode(c, { addBos: false }));
    const empty = candidates.findIndex((_, i) => ids[i].length === 0);
    if (empty >= 0) throw new Emu2Error(`candidate ${empty + 1} is empty`);
    const scores = await (await this.llm()).scoreContinuations(prepared.encoded.ids, prepared.features, ids);
    return scores.map((s, i) => ({ candidate: candidates[i], ...s }));
  }

  /** Text (and reference images) -> images: the LLM regresses n_query visual embeddings, the decoder draws them. */
  async generateImages(input: PromptInput, options: ImageGenerationOptions): Promise<GeneratedImage[]> {
    this.requireVisualDecoder();
    if (videoParts(input).length > 0)
      throw new Emu2Error("video input is for text answers (chat, caption); image generation takes images and text");
    // Emu2-Gen regresses as many visual embeddings as its encoder pools an image into (n_query: 64 for Emu2-Gen,
    // emu/emu.py; 4 for emu2-toy): the embeddings its visual decoder was trained on.
    const queries = this.manifest.vision.n_query;
    const prepared = await this.prepare(input, { reserveTokens: queries });
    const llm = await this.llm();
    const cond = await llm.regress([prepared.encoded.ids], prepared.features, queries);
    // The classifier-free guidance null condition: the regression of the empty prompt, <s>[IMG]...
    const uncond = await llm.regress([this.tokenizer().encode("")], null, queries);
    return this.decodeEmbeddings(cond, uncond, options);
  }

  private requireVisualDecoder() {
    const decoder = this.manifest.visual_decoder;
    if (!decoder) {
      throw new PackageError(
        `package ${this.pkg.name} (${this.manifest.variant}) has no visual decoder and cannot generate images: use an Emu2-Gen package`,
      );
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
    const cond = await encodeSlots(encoder, [{ kind: "image", image: input.parts[0].image }]);
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
