// The jobs bench/run.ts hands to each side: bench/ts_worker.ts (TypeScript) and bench/peer_torch.py (PyTorch)
// read the same JSON, so both run the same inputs and settings.

interface CommonJob {
  /** Intra-op threads: ONNX Runtime's intraOpNumThreads and torch.set_num_threads (one inter-op thread each). */
  threads: number;
  warmup: number;
  repeats: number;
  /** Where each side writes its outputs for the bench to compare. */
  out_dir: string;
}

export interface PreprocessJob extends CommonJob {
  kind: "preprocess";
  images: string[];
  size: number;
  mean: number[];
  std: number[];
}

/** The torch side rebuilds the weights of this package as python/build_tiny_packages.py builds it. */
interface PackageJob extends CommonJob {
  package: string;
}

export interface VisualEncoderJob extends PackageJob {
  kind: "visual_encoder";
  visual_encoder: string;
  /** The manifest's vision section and dtype. */
  vision: Record<string, unknown>;
  dtype: "float32" | "float16";
  /** The LLM's vocabulary size: the builder draws the vision and LLM weights from one generator. */
  vocab_size: number;
  /** Raw float32 file: normalized pixels [1,3,S,S]. */
  pixels: string;
  n_query: number;
}

export interface DiffusionJob extends PackageJob {
  kind: "diffusion";
  unet: string;
  vae_decoder: string;
  /** Width of the embeddings (the UNet's cross_attention_dim). */
  width: number;
  /** The manifest's visual_decoder section. */
  section: Record<string, unknown>;
  /** Raw float32 file: cond [1,Q,W] then uncond [1,Q,W]. */
  embeddings: string;
  queries: number;
  steps: number;
  guidance_scale: number;
  noise_seed: number;
}

export interface LlmJob extends PackageJob {
  kind: "llm";
  /** The package folder the TypeScript side opens with Emu2.open. */
  package_dir: string;
  /** The LLM's vocabulary size (the manifest's tokenizer.vocab_size): the torch side rebuilds the weights with it. */
  vocab_size: number;
  eos_token_id: number;
  pad_token_id: number;
  /** One text prompt (bos included, no images). */
  ids: number[];
  greedy_new_tokens: number;
  num_beams: number;
  beam_new_tokens: number;
  length_penalty: number;
}

/** A few-shot evaluation run (TypeScript only: the reference has no evaluation harness to compare with). */
export interface FewshotJob extends CommonJob {
  kind: "fewshot";
  package_dir: string;
  data_dir: string;
  /** Task config (name or path) and the shot count. */
  task: string;
  shots: number;
  /** Evaluate the first N samples. */
  limit: number;
}

export type WorkerJob = PreprocessJob | VisualEncoderJob | DiffusionJob | LlmJob | FewshotJob;

/** What every side reports besides its stage's own figures. */
export interface ProcessFigures {
  /** Resident set after imports, before the stage's work. */
  rss_baseline_kb: number;
  /** Peak resident set of the whole process (getrusage maxrss). */
  rss_peak_kb: number;
}

export interface PreprocessFigures extends ProcessFigures {
  images: { image: string; load_ms: number; total_ms: number; total_samples_ms: number[]; output: string }[];
}

export interface VisualEncoderFigures extends ProcessFigures {
  encode_ms: number;
  features: string;
}

export interface TsVisualEncoderFigures extends VisualEncoderFigures {
  session_ms: number;
}

export interface TorchVisualEncoderFigures extends VisualEncoderFigures {
  build_ms: number;
}

export interface DiffusionFigures extends ProcessFigures {
  total_ms: number;
  total_samples_ms: number[];
  step_ms: number;
  vae_decode_ms: number;
  image: string;
  image_dims: number[];
}

export interface TsDiffusionFigures extends DiffusionFigures {
  session_ms: number;
}

export interface TorchDiffusionFigures extends DiffusionFigures {
  build_ms: number;
}

export interface FewshotFigures extends ProcessFigures {
  samples: number;
  /** Wall time of the whole run (prompts, image features, generation, records), median over repeats. */
  cached_ms: number;
  uncached_ms: number;
  /** Visual encoder runs per evaluation run. */
  cached_encodes: number;
  uncached_encodes: number;
}

export interface LlmFigures extends ProcessFigures {
  /** Embedding, prefill of the prompt, lm_head and the first token's choice: a generation of one new token. */
  first_token_ms: number;
  first_token: number;
  greedy_ms: number;
  greedy_ids: number[];
  beam_ms: number;
  /** The best hypothesis, without eos or padding. */
  beam_ids: number[];
}

export interface TsLlmFigures extends LlmFigures {
  session_ms: number;
  /** Median ms per greedy token: emu2's whole step, and a bare loop of its three session runs (ts_worker.ts). */
  emu2_token_ms: number;
  bare_token_ms: number;
  /** The median over rounds of emu2's median step / the bare loop's, the two taking turns (ts_worker.ts). */
  emu2_bare_ratio: number;
  /** The process's first greedy generations, in order, run before any timed row (ts_worker.ts). */
  greedy_warmup_ms: number[];
}

export interface TorchLlmFigures extends LlmFigures {
  build_ms: number;
}
