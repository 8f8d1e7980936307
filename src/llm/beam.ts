// Beam search bookkeeping with transformers 4.31 semantics (BeamSearchScorer / BeamHypotheses) for Emu2's calls:
// the prompt goes in as inputs_embeds, so a hypothesis' length (length penalty) and cur_len (stopping rule) count
// generated tokens only.
import { Emu2Error } from "../util/errors.js";

const f = Math.fround;

export type EarlyStopping = boolean | "never";

export interface Hypothesis {
  /** sum of log-probs / length ** length_penalty */
  score: number;
  /** Generated ids, eos excluded. */
  tokens: number[];
  /** Finished by eos (otherwise a beam still running when generation ended). */
  eos: boolean;
}

/** The num_beams best finished hypotheses of one prompt. */
export class BeamHypotheses {
  readonly beams: Hypothesis[] = [];
  private worst = 1e9;

  constructor(
    private readonly numBeams: number,
    private readonly lengthPenalty: number,
    private readonly earlyStopping: EarlyStopping,
    private readonly maxNewTokens: number,
  ) {}

  get size(): number {
    return this.beams.length;
  }

  add(tokens: number[], sumLogprobs: number, eos: boolean): void {
    // HF divides by 0 ** length_penalty here and raises; so does this.
    if (tokens.length === 0) throw new Emu2Error("beam search met end-of-sequence as the first token: use a minimum of at least 1 new token");
    const score = sumLogprobs / tokens.length ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worst) {
      this.beams.push({ score, tokens, eos });
      if (this.beams.length > this.numBeams) {
        const ranked = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.beams.splice(ranked[0][1], 1);
        this.worst = ranked[1][0];
      } else {
        this.worst = Math.min(score, this.worst);
      }
    }
  }

  /** Whether no running beam can beat the worst kept hypothesis any more; `curLen` counts this step's token. */
  isDone(bestSumLogprobs: number, curLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    if (this.earlyStopping === "never" && this.lengthPenalty > 0) return this.worst >= bestSumLogprobs / this.maxNewTokens ** this.lengthPenalty;
    return this.worst >= bestSumLogprobs / curLen ** this.lengthPenalty;
  }

  /** The `n` best, best first: finalize pops the end of a stable ascending sort by score. */
  best(n: number): Hypothesis[] {
    const sorted = this.beams.map((b, i) => ({ b, i })).sort((x, y) => x.b.score - y.b.score || x.i - y.i);
    return sorted.slice(-n).reverse().map((x) => x.b);
  }
}

export interface BeamCandidate {
  /** Beam score + processed log-prob of the token (float32). */
  score: number;
  /** Beam within the prompt's group (0..k-1). */
  beam: number;
  token: number;
}

/**
 * The `count` best candidates over a group's beams, sorted by score descending; ties go to the lower flat index
 * (beam * V + token), as torch.topk on CPU returns them. `rows[beam]` holds the processed log-probs of that beam.
 */
export function topCandidates(rows: readonly Float32Array[], beamScores: readonly number[], count: number): BeamCandidate[] {
  const list: (BeamCandidate & { flat: number })[] = [];
  rows.forEach((row, beam) => {
    const base = beamScores[beam];
    for (let token = 0; token < row.length; token++) {
      const score = f(row[token] + base);
      if (list.length === count && !(score > list[count - 1].score)) continue;
      const item = { score, beam, token, flat: beam * row.length + token };
      let i = list.length;
      while (i > 0 && (list[i - 1].score < score || (list[i - 1].score === score && list[i - 1].flat > item.flat))) i--;
      list.splice(i, 0, item);
      if (list.length > count) list.pop();
    }
  });
  return list.map(({ score, beam, token }) => ({ score, beam, token }));
}

export interface NextBeam {
  score: number;
  /** The beam (within the group) this one continues. */
  parent: number;
  token: number;
}

/**
 * BeamSearchScorer.process for one prompt: walking the 2k sorted candidates, eos among the first k finishes its
 * beam's sequence as a hypothesis (eos below rank k is skipped); the first k other candidates become the next beams.
 * Returns them and whether the prompt is done.
 */
export function advanceGroup(candidates: readonly BeamCandidate[], generated: readonly (readonly number[])[], hyps: BeamHypotheses, numBeams: number, eosTokenId: number, curLen: number): { next: NextBeam[]; done: boolean } {
  const next: NextBeam[] = [];
  for (const [rank, c] of candidates.entries()) {
    if (next.length === numBeams) break;
    if (c.token === eosTokenId) {
      if (rank < numBeams) hyps.add([...generated[c.beam]], c.score, true);
    } else {
      next.push({ score: c.score, parent: c.beam, token: c.token });
    }
  }
  if (next.length < numBeams) throw new Error(`beam search found ${next.length} continuations for ${numBeams} beams`);
  return { next, done: hyps.isDone(candidates[0].score, curLen) };
}
