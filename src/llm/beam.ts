// Beam search bookkeeping with transformers 4.31 semantics (BeamSearchScorer / BeamHypotheses) for Emu2's calls:
// the prompt goes in as inputs_embeds, so a hypothesis' length (length penalty) and cur_len (stopping rule) count
// generated tokens only. BeamSearchScorer holds the whole state of a batch's search (running beams, finished
// hypotheses, which prompts are done); generation (src/llm/generate.ts) only runs the graphs and the cache.
import { Emu2Error } from "../util/errors.js";
import { firstAbove, loadRow } from "./scores.js";
import type { EarlyStopping } from "./settings.js";

const f = Math.fround;

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
    if (tokens.length === 0)
      throw new Emu2Error("beam search met end-of-sequence as the first token: use a minimum of at least 1 new token");
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
    if (this.earlyStopping === "never" && this.lengthPenalty > 0)
      return this.worst >= bestSumLogprobs / this.maxNewTokens ** this.lengthPenalty;
    return this.worst >= bestSumLogprobs / curLen ** this.lengthPenalty;
  }

  /** The `n` best, best first: finalize pops the end of a stable ascending sort by score. */
  best(n: number): Hypothesis[] {
    const sorted = this.beams.map((b, i) => ({ b, i })).sort((x, y) => x.b.score - y.b.score || x.i - y.i);
    return sorted
      .slice(-n)
      .reverse()
      .map((x) => x.b);
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
export function topCandidates(
  rows: readonly Float32Array[],
  beamScores: readonly number[],
  count: number,
): BeamCandidate[] {
  const list: (BeamCandidate & { flat: number })[] = [];
  let worst = -Infinity;
  let full = false;
  const enter = (score: number, beam: number, token: number, flat: number) => {
    let i = list.length;
    while (i > 0 && (list[i - 1].score < score || (list[i - 1].score === score && list[i - 1].flat > flat))) i--;
    list.splice(i, 0, { score, beam, token, flat });
    if (list.length > count) list.pop();
    full = list.length === count;
    if (full) worst = list[count - 1].score;
  };
  for (let beam = 0; beam < rows.length; beam++) {
    const row = rows[beam];
    const base = beamScores[beam];
    const n = row.length;
    let token = 0;
    // Until the list is full every score enters it (-Infinity too: torch.topk returns count candidates whatever
    // they score).
    for (; token < n && !full; token++) enter(f(row[token] + base), beam, token, beam * n + token);
    if (token === n) continue;
    // Then only a score above the list's last enters (an equal one comes later in flat order and loses the tie):
    // the module skips, four scores at a time, the long runs between those (scores.wat's first_above; a JS loop
    // over 5 x 32k scores took 0.47-0.6 ms of a 3.8 ms tiny beam step).
    loadRow(row);
    while ((token = firstAbove(token, n, base, worst)) < n) {
      enter(f(row[token] + base), beam, token, beam * n + token);
      token++;
    }
  }
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
export function advanceGroup(
  candidates: readonly BeamCandidate[],
  generated: readonly (readonly number[])[],
  hyps: BeamHypotheses,
  numBeams: number,
  eosTokenId: number,
  curLen: number,
): { next: NextBeam[]; done: boolean } {
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

/** A running beam: its tokens so far and its score (the float32 sum of its processed log-probs). */
export interface RunningBeam {
  tokens: number[];
  score: number;
}

export interface BeamScorerSettings {
  numBeams: number;
  lengthPenalty: number;
  earlyStopping: EarlyStopping;
  maxNewTokens: number;
}

/** The n best hypotheses of one prompt and how it ended. */
export interface ScoredHypothesis extends Hypothesis {
  /** The prompt finished its search (false: generation ended while it still had running beams). */
  done: boolean;
}

/**
 * BeamSearchScorer for a batch of prompts with numBeams beams each. The batch tensor holds prompt b's beams at rows
 * b*k .. b*k+k-1; `beam(row)` and `process` speak in those rows so that the caller can reorder its KV cache with
 * the returned sources.
 */
export class BeamSearchScorer {
  private readonly groups: RunningBeam[][];
  private readonly hyps: BeamHypotheses[];
  private readonly done: boolean[];

  constructor(
    batch: number,
    private readonly settings: BeamScorerSettings,
    private readonly eosTokenId: number,
    private readonly padTokenId: number,
  ) {
    const k = settings.numBeams;
    // Only the first beam of a prompt is live at first, so the first step's 2k candidates come from distinct tokens.
    this.groups = Array.from({ length: batch }, () =>
      Array.from({ length: k }, (_, beam) => ({ tokens: [], score: beam === 0 ? 0 : -1e9 })),
    );
    this.hyps = this.groups.map(
      () => new BeamHypotheses(k, settings.lengthPenalty, settings.earlyStopping, settings.maxNewTokens),
    );
    this.done = this.groups.map(() => false);
  }

  /** Rows of the batch tensor: prompts x beams. */
  get rows(): number {
    return this.groups.length * this.settings.numBeams;
  }

  /** Tokens generated so far by each running beam (all of one length). */
  get length(): number {
    return this.groups[0][0].tokens.length;
  }

  get isDone(): boolean {
    return this.done.every(Boolean);
  }

  /** The running beam at a batch row. */
  beam(row: number): RunningBeam {
    const k = this.settings.numBeams;
    return this.groups[Math.floor(row / k)][row % k];
  }

  /** Whether the prompt that batch row belongs to needs no more tokens (its processed scores are not needed). */
  rowDone(row: number): boolean {
    return this.done[Math.floor(row / this.settings.numBeams)];
  }

  /**
   * One step: `scores[row]` holds the processed log-probs of every row's next token (ignored for done prompts).
   * Returns each row's next token and the row it continues (the cache's selection); a done prompt's rows continue
   * row 0 with pad tokens, as in HF, and are never read.
   */
  process(scores: readonly (Float32Array | null)[]): { tokens: number[]; sources: number[] } {
    const k = this.settings.numBeams;
    const curLen = this.length + 1;
    const tokens = new Array<number>(this.rows).fill(this.padTokenId);
    const sources = new Array<number>(this.rows).fill(0);
    this.groups.forEach((group, b) => {
      if (this.done[b]) return;
      const rows = group.map((_, beam) => scores[b * k + beam] as Float32Array);
      const candidates = topCandidates(
        rows,
        group.map((g) => g.score),
        2 * k,
      );
      const { next, done } = advanceGroup(
        candidates,
        group.map((g) => g.tokens),
        this.hyps[b],
        k,
        this.eosTokenId,
        curLen,
      );
      this.groups[b] = next.map((n) => ({ tokens: [...group[n.parent].tokens, n.token], score: n.score }));
      next.forEach((n, j) => {
        tokens[b * k + j] = n.token;
        sources[b * k + j] = b * k + n.parent;
      });
      this.done[b] = done;
    });
    // Done prompts' rows keep their (unused) length so that every beam has the same length.
    this.groups.forEach((group, b) => {
      if (this.done[b]) for (const g of group) if (g.tokens.length < curLen) g.tokens.push(this.padTokenId);
    });
    return { tokens, sources };
  }

  /**
   * BeamSearchScorer.finalize: the running beams of a prompt that is not done compete with its finished hypotheses;
   * each prompt's n best, best first.
   */
  finalize(n: number): ScoredHypothesis[][] {
    return this.groups.map((group, b) => {
      if (!this.done[b]) for (const g of group) this.hyps[b].add([...g.tokens], g.score, false);
      return this.hyps[b].best(n).map((h) => ({ ...h, done: this.done[b] }));
    });
  }
}
