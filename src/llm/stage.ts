// The LLM stage: token embedding with image features spliced in at <image> rows, the decoder with a KV cache, text
// generation with the semantics of transformers 4.31's generate() as Emu2 calls it (inputs_embeds only, so every
// length counts generated tokens, never the prompt), image regression, and continuation scoring. The Python
// reference of the same algorithms is python/emu2ref/generation.py; the goldens it writes are the tests' oracle.
import type { InferenceSession, Tensor } from "onnxruntime-node";
import type { Manifest } from "../model/manifest.js";
import { loadOrt } from "../model/session.js";
import { SplitMix64 } from "../diffusion/noise.js";
import { fromFloat16, toFloat16 } from "../util/float16.js";
import { Emu2Error } from "../util/errors.js";

export interface LlmSessions {
  embedTokens: InferenceSession;
  projectUp: InferenceSession;
  decoder: InferenceSession;
  lmHead: InferenceSession;
  projectDown: InferenceSession;
}

/** Image features [K,Q,W] in the order their <image> rows appear across the batch. */
export interface Features {
  data: Float32Array;
  dims: [number, number, number];
}

export interface GenerationSettings {
  maxNewTokens: number;
  minNewTokens: number;
  numBeams: number;
  lengthPenalty: number;
  repetitionPenalty: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Beam search stopping rule (HF early_stopping); Emu2 uses false. */
  earlyStopping?: boolean | "never";
}

export type StopReason = "eos" | "length" | "stop" | "aborted";

export interface GenerationCallbacks {
  signal?: AbortSignal;
  /** Decodes generated ids, for stop strings. */
  decode?: (ids: number[]) => string;
  /** New ids of prompt `index` as they are accepted (one beam only). */
  onTokens?: (index: number, ids: number[]) => void;
}

export interface GeneratedSequence {
  /** Generated ids, eos excluded. */
  ids: number[];
  stopReason: StopReason;
  /** Beam search: the length-penalised score of the returned hypothesis. */
  score?: number;
}

const f = Math.fround;

/**
 * The KV cache as generation code sees it. HostKvCache keeps the present tensors in host memory; a device-resident
 * strategy (WebGPU buffers, a shared past/present buffer) implements the same four operations.
 */
export interface KvCache {
  readonly length: number;
  /** The past_key_values.* feeds for the next decoder run. */
  feeds(): Record<string, Tensor>;
  /** Takes the decoder's present.* outputs as the new past. */
  absorb(outputs: Record<string, Tensor>): void;
  /** Keeps batch rows `rows` (in that order, repeats allowed): beam reordering and expansion. */
  select(rows: readonly number[]): Promise<void>;
}

export class HostKvCache implements KvCache {
  private tensors: Record<string, Tensor> = {};
  length = 0;

  private constructor(private readonly names: string[], private readonly heads: number, private readonly headDim: number, private readonly ort: typeof import("onnxruntime-node"), private readonly dtype: "float32" | "float16") {}

  static async create(layers: number, heads: number, headDim: number, batch: number, dtype: "float32" | "float16"): Promise<HostKvCache> {
    const ort = await loadOrt();
    const names = Array.from({ length: layers }, (_, i) => [`${i}.key`, `${i}.value`]).flat();
    const cache = new HostKvCache(names, heads, headDim, ort, dtype);
    for (const name of names) {
      const data = dtype === "float16" ? new Uint16Array(0) : new Float32Array(0);
      cache.tensors[name] = new ort.Tensor(dtype, data, [batch, heads, 0, headDim]);
    }
    return cache;
  }

  feeds(): Record<string, Tensor> {
    return Object.fromEntries(this.names.map((n) => [`past_key_values.${n}`, this.tensors[n]]));
  }

  absorb(outputs: Record<string, Tensor>): void {
    for (const n of this.names) this.tensors[n] = outputs[`present.${n}`];
    this.length = Number(this.tensors[this.names[0]].dims[2]);
  }

  async select(rows: readonly number[]): Promise<void> {
    for (const n of this.names) {
      const t = this.tensors[n];
      const [, h, p, d] = t.dims.map(Number);
      const per = h * p * d;
      const src = t.data as Float32Array | Uint16Array;
      const out = this.dtype === "float16" ? new Uint16Array(rows.length * per) : new Float32Array(rows.length * per);
      rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per), i * per));
      this.tensors[n] = new this.ort.Tensor(this.dtype, out, [rows.length, h, p, d]);
    }
  }
}

/** HF generation's position ids: cumsum(mask) - 1, with padded positions set to 1. */
export function positionIds(mask: readonly number[]): number[] {
  let sum = 0;
  return mask.map((m) => {
    sum += m;
    return m === 0 ? 1 : sum - 1;
  });
}

/** log_softmax of one row in float32, as torch computes it (max subtracted, log of the sum of exps). */
export function logSoftmax(row: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const logSum = Math.log(sum);
  const out = new Float32Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = f(f(row[i] - max) - logSum);
  return out;
}

/** RepetitionPenaltyLogitsProcessor then MinNewTokens (eos at -inf), on one row of scores, in place. */
export function processScores(scores: Float32Array, generated: readonly number[], settings: Pick<GenerationSettings, "repetitionPenalty" | "minNewTokens">, eosTokenId: number): void {
  if (settings.repetitionPenalty !== 1 && generated.length > 0) {
    for (const id of new Set(generated)) {
      const s = scores[id];
      scores[id] = s < 0 ? f(s * settings.repetitionPenalty) : f(s / settings.repetitionPenalty);
    }
  }
  if (generated.length < settings.minNewTokens) scores[eosTokenId] = -Infinity;
}

/** Temperature, top-k and top-p warpers in HF's order, then a draw from the softmax with a uniform in [0,1). */
export function sampleToken(scores: Float32Array, settings: Pick<GenerationSettings, "temperature" | "topK" | "topP">, uniform: number): number {
  const v = scores.length;
  const s = new Float32Array(v);
  for (let i = 0; i < v; i++) s[i] = f(scores[i] / settings.temperature);
  if (settings.topK > 0 && settings.topK < v) {
    const kth = Float32Array.from(s).sort().reverse()[settings.topK - 1];
    for (let i = 0; i < v; i++) if (s[i] < kth) s[i] = -Infinity;
  }
  let max = -Infinity;
  for (const x of s) if (x > max) max = x;
  const probs = new Float64Array(v);
  let total = 0;
  for (let i = 0; i < v; i++) total += probs[i] = s[i] === -Infinity ? 0 : Math.exp(s[i] - max);
  for (let i = 0; i < v; i++) probs[i] /= total;
  if (settings.topP < 1) {
    // TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability stays <= 1 - top_p, keep the top one.
    const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => probs[a] - probs[b] || a - b);
    let cumulative = 0;
    for (let r = 0; r < v - 1; r++) {
      cumulative += probs[order[r]];
      if (cumulative <= 1 - settings.topP) probs[order[r]] = 0;
    }
    let kept = 0;
    for (const p of probs) kept += p;
    for (let i = 0; i < v; i++) probs[i] /= kept;
  }
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < v; i++) {
    if (probs[i] === 0) continue;
    last = i;
    cumulative += probs[i];
    if (uniform < cumulative) return i;
  }
  return last;
}

interface BeamHypothesis { score: number; tokens: number[] }

/** transformers 4.31 BeamHypotheses: the num_beams best finished sequences of one batch row. */
class BeamHypotheses {
  beams: BeamHypothesis[] = [];
  worst = 1e9;

  constructor(private readonly numBeams: number, private readonly lengthPenalty: number, private readonly earlyStopping: boolean | "never", private readonly maxNewTokens: number) {}

  add(tokens: number[], sumLogprobs: number): void {
    if (tokens.length === 0) throw new Emu2Error("eos as the first generated token: use min-new-tokens >= 1 with beam search");
    const score = sumLogprobs / tokens.length ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worst) {
      this.beams.push({ score, tokens });
      if (this.beams.length > this.numBeams) {
        const ranked = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice(ranked[0][1], 1);
        this.worst = ranked[1][0];
      } else {
        this.worst = Math.min(score, this.worst);
      }
    }
  }

  isDone(bestSumLogprobs: number, curLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    if (this.earlyStopping === "never" && this.lengthPenalty > 0) return this.worst >= bestSumLogprobs / this.maxNewTokens ** this.lengthPenalty;
    return this.worst >= bestSumLogprobs / curLen ** this.lengthPenalty;
  }

  /** The last of a stable sort by score, as finalize pops it. */
  best(): BeamHypothesis {
    return this.beams.map((b, i) => ({ b, i })).sort((x, y) => x.b.score - y.b.score || x.i - y.i)[this.beams.length - 1].b;
  }
}

export class LlmStage {
  private readonly hidden: number;
  private readonly layers: number;
  private readonly heads: number;
  private readonly headDim: number;
  private readonly dtype: "float32" | "float16";
  private readonly imageTokenId: number;
  private readonly imgTokenId: number;
  private readonly eos: number;
  private readonly pad: number;

  constructor(private readonly sessions: LlmSessions, manifest: Manifest) {
    this.hidden = manifest.llm.hidden_size;
    this.layers = manifest.llm.num_layers;
    this.heads = manifest.llm.num_heads;
    this.headDim = manifest.llm.head_dim;
    this.dtype = manifest.dtype;
    this.imageTokenId = manifest.tokenizer.special_tokens["<image>"];
    this.imgTokenId = manifest.tokenizer.special_tokens["[IMG]"];
    this.eos = manifest.tokenizer.eos_token_id;
    this.pad = manifest.tokenizer.pad_token_id;
  }

  private async tensor(data: Float32Array, dims: number[]): Promise<Tensor> {
    const ort = await loadOrt();
    return this.dtype === "float16" ? new ort.Tensor("float16", toFloat16(data), dims) : new ort.Tensor("float32", data, dims);
  }

  private static floats(t: Tensor): Float32Array {
    return t.type === "float16" ? fromFloat16(t.data as Uint16Array) : (t.data as Float32Array);
  }

  private static async int64(data: readonly number[], dims: number[]): Promise<Tensor> {
    const ort = await loadOrt();
    return new ort.Tensor("int64", BigInt64Array.from(data, (x) => BigInt(x)), dims);
  }

  /** Embeddings [B,T,H] of rectangular ids, with project_up(features) on the <image> rows in order. */
  async embed(ids: number[][], features: Features | null): Promise<Float32Array> {
    const b = ids.length;
    const t = ids[0].length;
    const out = await this.sessions.embedTokens.run({ input_ids: await LlmStage.int64(ids.flat(), [b, t]) });
    const embeds = Float32Array.from(LlmStage.floats(out.inputs_embeds));
    const rows: number[] = [];
    ids.flat().forEach((id, i) => {
      if (id === this.imageTokenId) rows.push(i);
    });
    const available = features ? features.dims[0] * features.dims[1] : 0;
    if (rows.length !== available) {
      throw new Emu2Error(`the prompt has ${rows.length} <image> tokens but ${features ? `${features.dims[0]} image(s) x ${features.dims[1]} tokens = ${available}` : "no image"} features`);
    }
    if (features && rows.length > 0) {
      const up = await this.sessions.projectUp.run({ image_features: await this.tensor(features.data, features.dims) });
      const projected = LlmStage.floats(up.image_embeds);
      rows.forEach((row, k) => embeds.set(projected.subarray(k * this.hidden, (k + 1) * this.hidden), row * this.hidden));
    }
    return embeds;
  }

  /** One decoder run: embeddings [B,T,H] for the new tokens, the full mask [B,P+T]; returns the final hidden states. */
  private async decode(embeds: Float32Array, batch: number, mask: number[][], cache: KvCache): Promise<Float32Array> {
    const t = embeds.length / (batch * this.hidden);
    const positions = mask.map((m) => positionIds(m).slice(-t));
    const out = await this.sessions.decoder.run({
      inputs_embeds: await this.tensor(embeds, [batch, t, this.hidden]),
      attention_mask: await LlmStage.int64(mask.flat(), [batch, mask[0].length]),
      position_ids: await LlmStage.int64(positions.flat(), [batch, t]),
      ...cache.feeds(),
    });
    cache.absorb(out);
    return LlmStage.floats(out.last_hidden_state);
  }

  private lastRows(hidden: Float32Array, batch: number): Float32Array {
    const t = hidden.length / (batch * this.hidden);
    const out = new Float32Array(batch * this.hidden);
    for (let b = 0; b < batch; b++) out.set(hidden.subarray(((b + 1) * t - 1) * this.hidden, (b + 1) * t * this.hidden), b * this.hidden);
    return out;
  }

  private async logits(lastHidden: Float32Array, batch: number): Promise<Float32Array[]> {
    const out = await this.sessions.lmHead.run({ hidden_states: await this.tensor(lastHidden, [batch, 1, this.hidden]) });
    const all = LlmStage.floats(out.logits);
    const v = all.length / batch;
    return Array.from({ length: batch }, (_, b) => all.slice(b * v, (b + 1) * v));
  }

  private leftPad(prompts: number[][]): { ids: number[][]; mask: number[][] } {
    const t = Math.max(...prompts.map((p) => p.length));
    return {
      ids: prompts.map((p) => [...Array<number>(t - p.length).fill(this.pad), ...p]),
      mask: prompts.map((p) => [...Array<number>(t - p.length).fill(0), ...Array<number>(p.length).fill(1)]),
    };
  }

  /** Prefill: the left-padded batch through the decoder; returns the cache, the mask and the last hidden rows. */
  private async prefill(prompts: number[][], features: Features | null) {
    const { ids, mask } = this.leftPad(prompts);
    const cache = await HostKvCache.create(this.layers, this.heads, this.headDim, prompts.length, this.dtype);
    const hidden = await this.decode(await this.embed(ids, features), prompts.length, mask, cache);
    return { cache, mask, last: this.lastRows(hidden, prompts.length) };
  }

  async generateText(prompts: number[][], features: Features | null, settings: GenerationSettings, callbacks: GenerationCallbacks = {}): Promise<GeneratedSequence[]> {
    if (settings.numBeams > 1) {
      if (settings.doSample) throw new Emu2Error("beam sampling (several beams with sampling) is not supported: use one beam to sample");
      return this.beamSearch(prompts, features, settings, callbacks);
    }
    return this.sampleOrGreedy(prompts, features, settings, callbacks);
  }

  private async sampleOrGreedy(prompts: number[][], features: Features | null, settings: GenerationSettings, callbacks: GenerationCallbacks): Promise<GeneratedSequence[]> {
    const batch = prompts.length;
    const rng = new SplitMix64(settings.seed);
    let { cache, mask, last } = await this.prefill(prompts, features);
    const generated: number[][] = prompts.map(() => []);
    const reasons: (StopReason | undefined)[] = prompts.map(() => undefined);
    for (let step = 0; step < settings.maxNewTokens; step++) {
      const rows = await this.logits(last, batch);
      const next: number[] = [];
      for (let b = 0; b < batch; b++) {
        if (reasons[b]) {
          next.push(this.pad);
          continue;
        }
        processScores(rows[b], generated[b], settings, this.eos);
        const token = settings.doSample ? sampleToken(rows[b], settings, rng.uniform()) : argmax(rows[b]);
        next.push(token);
        if (token === this.eos) {
          reasons[b] = "eos";
          continue;
        }
        generated[b].push(token);
        callbacks.onTokens?.(b, [token]);
        if (settings.stop.length > 0 && callbacks.decode) {
          const text = callbacks.decode(generated[b]);
          if (settings.stop.some((s) => s.length > 0 && text.includes(s))) reasons[b] = "stop";
        }
      }
      if (reasons.every(Boolean)) break;
      if (callbacks.signal?.aborted) {
        reasons.forEach((r, b) => (reasons[b] = r ?? "aborted"));
        break;
      }
      if (step + 1 === settings.maxNewTokens) break;
      mask = mask.map((m) => [...m, 1]);
      const hidden = await this.decode(await this.embed(next.map((id) => [id]), null), batch, mask, cache);
      last = this.lastRows(hidden, batch);
    }
    return generated.map((ids, b) => ({ ids, stopReason: reasons[b] ?? "length" }));
  }

  /** Beam search as transformers 4.31's beam_search + BeamSearchScorer (see python/emu2ref/generation.py). */
  private async beamSearch(prompts: number[][], features: Features | null, settings: GenerationSettings, callbacks: GenerationCallbacks): Promise<GeneratedSequence[]> {
    const batch = prompts.length;
    const k = settings.numBeams;
    const earlyStopping = settings.earlyStopping ?? false;
    const { cache, mask: promptMask, last: promptLast } = await this.prefill(prompts, features);
    // Every beam starts from its prompt's prefill: rows b*k .. b*k+k-1 copy row b.
    const expand = Array.from({ length: batch * k }, (_, i) => Math.floor(i / k));
    await cache.select(expand);
    let mask = expand.map((b) => [...promptMask[b]]);
    let last: Float32Array = new Float32Array(batch * k * this.hidden);
    expand.forEach((b, i) => last.set(promptLast.subarray(b * this.hidden, (b + 1) * this.hidden), i * this.hidden));
    let beamScores = new Float32Array(batch * k);
    for (let i = 0; i < batch * k; i++) beamScores[i] = i % k === 0 ? 0 : -1e9;
    let generated: number[][] = Array.from({ length: batch * k }, () => []);
    const hyps = prompts.map(() => new BeamHypotheses(k, settings.lengthPenalty, earlyStopping, settings.maxNewTokens));
    const done = prompts.map(() => false);
    let aborted = false;
    for (;;) {
      const rows = await this.logits(last, batch * k);
      const nextScores = new Float32Array(batch * k);
      const nextTokens = new Array<number>(batch * k).fill(this.pad);
      const nextRows = new Array<number>(batch * k).fill(0);
      const curLen = generated[0].length + 1;
      for (let b = 0; b < batch; b++) {
        if (done[b]) continue;
        // Candidates over the row's k beams: log_softmax, processors, plus the beam's score; the best 2k, sorted.
        const candidates: { score: number; row: number; token: number; flat: number }[] = [];
        for (let beam = 0; beam < k; beam++) {
          const row = b * k + beam;
          const scores = logSoftmax(rows[row]);
          processScores(scores, generated[row], settings, this.eos);
          const base = beamScores[row];
          for (let v = 0; v < scores.length; v++) {
            const score = f(scores[v] + base);
            if (candidates.length < 2 * k || score > candidates[candidates.length - 1].score) {
              insertSorted(candidates, { score, row, token: v, flat: beam * scores.length + v }, 2 * k);
            }
          }
        }
        let filled = 0;
        for (let rank = 0; rank < candidates.length && filled < k; rank++) {
          const c = candidates[rank];
          if (c.token === this.eos) {
            if (rank < k) hyps[b].add([...generated[c.row]], c.score);
          } else {
            const slot = b * k + filled++;
            nextScores[slot] = c.score;
            nextTokens[slot] = c.token;
            nextRows[slot] = c.row;
          }
        }
        done[b] = done[b] || hyps[b].isDone(candidates[0].score, curLen);
      }
      generated = nextRows.map((row, i) => [...generated[row], nextTokens[i]]);
      beamScores = nextScores;
      if (done.every(Boolean) || generated[0].length >= settings.maxNewTokens) break;
      if (callbacks.signal?.aborted) {
        aborted = true;
        break;
      }
      await cache.select(nextRows);
      mask = nextRows.map((row) => [...mask[row], 1]);
      const hidden = await this.decode(await this.embed(nextTokens.map((id) => [id]), null), batch * k, mask, cache);
      last = this.lastRows(hidden, batch * k);
    }
    return prompts.map((_, b) => {
      if (!done[b]) for (let beam = 0; beam < k; beam++) hyps[b].add([...generated[b * k + beam]], beamScores[b * k + beam]);
      const best = hyps[b].best();
      const ended = best.tokens.length < settings.maxNewTokens;
      const stopReason: StopReason = aborted ? "aborted" : ended ? "eos" : "length";
      return { ids: best.tokens, stopReason, score: best.score };
    });
  }

  /** Image regression (emu/emu.py generate_image): `[IMG]` appended, n steps of project_down/project_up -> [B,n,W]. */
  async regress(prompts: number[][], features: Features | null, n: number): Promise<Features> {
    const batch = prompts.length;
    let { cache, mask, last } = await this.prefill(prompts.map((p) => [...p, this.imgTokenId]), features);
    let width = 0;
    const steps: Float32Array[] = [];
    for (let i = 0; i < n; i++) {
      const down = await this.sessions.projectDown.run({ hidden_states: await this.tensor(last, [batch, 1, this.hidden]) });
      const visual = LlmStage.floats(down.visual_embeds);
      width = visual.length / batch;
      steps.push(Float32Array.from(visual));
      if (i + 1 === n) break;
      const up = await this.sessions.projectUp.run({ image_features: await this.tensor(visual, [batch, 1, width]) });
      mask = mask.map((m) => [...m, 1]);
      const hidden = await this.decode(Float32Array.from(LlmStage.floats(up.image_embeds)), batch, mask, cache);
      last = this.lastRows(hidden, batch);
    }
    const data = new Float32Array(batch * n * width);
    for (let b = 0; b < batch; b++) for (let i = 0; i < n; i++) data.set(steps[i].subarray(b * width, (b + 1) * width), (b * n + i) * width);
    return { data, dims: [batch, n, width] };
  }

  /** Sum and mean log-prob of each candidate's tokens after one context, reusing the context's KV cache. */
  async scoreContinuations(context: number[], features: Features | null, candidates: number[][]): Promise<{ sum: number; mean: number }[]> {
    const { cache, mask, last } = await this.prefill([context], features);
    const results: { sum: number; mean: number }[] = [];
    const saved = cache.feeds();
    for (const candidate of candidates) {
      const branch = await HostKvCache.create(this.layers, this.heads, this.headDim, 1, this.dtype);
      branch.absorb(Object.fromEntries(Object.entries(saved).map(([name, t]) => [name.replace("past_key_values.", "present."), t])));
      let lastRow: Float32Array = last;
      let rowMask = mask[0];
      let sum = 0;
      for (const [i, token] of candidate.entries()) {
        const [logits] = await this.logits(lastRow, 1);
        sum += logSoftmax(logits)[token];
        if (i + 1 === candidate.length) break;
        rowMask = [...rowMask, 1];
        const hidden = await this.decode(await this.embed([[token]], null), 1, [rowMask], branch);
        lastRow = this.lastRows(hidden, 1);
      }
      results.push({ sum, mean: sum / candidate.length });
    }
    return results;
  }
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Keeps `list` sorted by score descending (ties: lower flat index first, as torch.topk on CPU), at most `limit`. */
function insertSorted<T extends { score: number; flat: number }>(list: T[], item: T, limit: number): void {
  let i = list.length;
  while (i > 0 && (list[i - 1].score < item.score || (list[i - 1].score === item.score && list[i - 1].flat > item.flat))) i--;
  list.splice(i, 0, item);
  if (list.length > limit) list.pop();
}
