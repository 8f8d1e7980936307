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

export interface DiffusionJob extends CommonJob {
  kind: "diffusion";
  unet: string;
  vae_decoder: string;
  /** The torch modules are rebuilt from this seed (the one python/build_tiny_packages.py exported). */
  weights_seed: number;
  cross_attention_dim: number;
  /** The manifest's visual_decoder section. */
  section: Record<string, unknown>;
  /** Raw float32 file: cond [1,Q,W] then uncond [1,Q,W]. */
  embeddings: string;
  queries: number;
  steps: number;
  guidance_scale: number;
  noise_seed: number;
}

export type WorkerJob = PreprocessJob | DiffusionJob;

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
