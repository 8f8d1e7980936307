// Shared access to the generation reference's goldens (fixtures/golden/<package>/llm/) for the LLM tests.
import type { Emu2 } from "../../src/emu2.js";
import { concat, type Tensor } from "../../src/model/tensor.js";
import { LlmStage } from "../../src/llm/stage.js";
import { Golden } from "../helpers/golden.js";
import { goldenDir } from "../helpers/fixtures.js";

export interface LlmMeta {
  prompts: { images: string[] }[];
  greedy: { max_new_tokens: number; min_new_tokens: number };
  beam: {
    num_beams: number;
    length_penalty: number;
    max_new_tokens: number;
    min_new_tokens: number;
    early_stopping: boolean;
  };
  frequent_eos: number;
  eos_token_id: number;
  image_token_id: number;
  pad_token_id: number;
  repetition_penalty: number;
  regress: { cond_prompt: number; uncond_ids: number[]; n_query: number };
  score: { candidate_ids: number[][]; context_prompt: number };
  beam_cases: Record<string, BeamCase & { early_stopping: boolean; eos: "frequent" }>;
  beam_modes: BeamCase & { eos: number; distinct: number };
  sampling: Record<
    string,
    { temperature: number; top_k: number; top_p: number; repetition_penalty?: number; min_new_tokens?: number }
  >;
  sampling_new_tokens: number;
  sampling_seeds: Record<string, number>;
  warp: Record<string, { temperature: number; top_k: number; top_p: number }>;
}

export interface BeamCase {
  prompt: number;
  num_beams: number;
  max_new_tokens: number;
  length_penalty: number;
  min_new_tokens: number;
  repetition_penalty: number;
  num_return_sequences: number;
}

export class LlmGoldens {
  readonly golden: Golden;
  readonly meta: LlmMeta;

  constructor(name: string) {
    this.golden = new Golden(goldenDir(name, "llm"));
    this.meta = this.golden.meta as unknown as LlmMeta;
  }

  /** Stacked features of these images, in order (null for none). */
  features(images: string[]): Tensor | null {
    if (images.length === 0) return null;
    return concat(
      images.map((img) => {
        const { data, shape } = this.golden.float32(`features.${img}`);
        return { data, dims: shape };
      }),
    );
  }

  prompt(i: number): { ids: number[]; features: Tensor | null } {
    return { ids: this.golden.ints(`p${i}.ids`), features: this.features(this.meta.prompts[i].images) };
  }

  /** A continuation row without its padding and eos (the runtime returns generated tokens only). */
  generated(row: number[], eos = this.meta.eos_token_id): number[] {
    const end = row.findIndex((id) => id === eos || id === this.meta.pad_token_id);
    return end < 0 ? row : row.slice(0, end);
  }

  rows(name: string): number[][] {
    const shape = this.golden.get(name).shape;
    const flat = this.golden.ints(name);
    const width = shape[shape.length - 1];
    return Array.from({ length: flat.length / width }, (_, r) => flat.slice(r * width, (r + 1) * width));
  }
}

/** A stage on the package's graphs whose tokenizer says eos is `eosTokenId` (the reference's frequent-eos runs). */
export async function stageWithEos(model: Emu2, eosTokenId: number): Promise<LlmStage> {
  const [embedTokens, projectUp, decoder, lmHead, projectDown] = await Promise.all(
    (["embed_tokens", "project_up", "decoder", "lm_head", "project_down"] as const).map((r) => model.pkg.session(r)),
  );
  const manifest = model.manifest;
  return new LlmStage(
    { embedTokens, projectUp, decoder, lmHead, projectDown },
    { ...manifest, tokenizer: { ...manifest.tokenizer, eos_token_id: eosTokenId } },
  );
}
