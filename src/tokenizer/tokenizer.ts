// The Emu2 tokenizer: LLaMA's BPE (through @huggingface/tokenizers and the package's tokenizer.json) wrapped in the
// rules of the slow LlamaTokenizer of transformers 4.31 as Emu2 configures it (emu/lm.py):
// - the text is split on special tokens (leftmost, longest match); every chunk between them is encoded on its own,
//   so each gets sentencepiece's dummy-prefix "▁" (legacy behaviour);
// - Emu2 registers its tokens, and <s>/</s>, through add_special_tokens as plain strings, for which
//   tokenization_utils.tokenize strips the whitespace on both sides of the token; <unk> keeps its AddedToken
//   (no stripping); chunks left empty are dropped;
// - bos is prepended when asked; eos never is.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { PackageError } from "../util/errors.js";
import { BOS_TOKEN, EOS_TOKEN, IMAGE_PLACEHOLDER, imageTokenSpan, UNK_TOKEN } from "../prompt/tokens.js";

export interface TokenizerSpec {
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  add_bos: boolean;
  special_tokens: Record<string, number>;
  vocab_size: number;
}

const NO_STRIP_TOKENS = new Set([UNK_TOKEN]);

export class Emu2Tokenizer {
  private readonly bpe: Tokenizer;
  /** Special token text -> id, longest first so that the split prefers the longest match at a position. */
  private readonly specials: [string, number][];
  private readonly specialIds: Set<number>;
  private readonly idToSpecial = new Map<number, string>();

  constructor(
    tokenizerJson: object,
    readonly spec: TokenizerSpec,
    private readonly source = "tokenizer.json",
  ) {
    this.bpe = new Tokenizer(tokenizerJson, {});
    const table: Record<string, number> = {
      [UNK_TOKEN]: 0,
      [BOS_TOKEN]: spec.bos_token_id,
      [EOS_TOKEN]: spec.eos_token_id,
      ...spec.special_tokens,
    };
    for (const [text, id] of Object.entries(table)) {
      const inFile = this.bpe.token_to_id(text);
      if (inFile !== id) {
        throw new PackageError(`${source}: token ${text} has id ${inFile ?? "none"} but the manifest says ${id}`);
      }
      this.idToSpecial.set(id, text);
    }
    this.specials = Object.entries(table).sort((a, b) => b[0].length - a[0].length);
    this.specialIds = new Set(this.idToSpecial.keys());
  }

  static fromFile(path: string, spec: TokenizerSpec): Emu2Tokenizer {
    let json: object;
    try {
      json = JSON.parse(readFileSync(path, "utf8")) as object;
    } catch (err) {
      throw new PackageError(`${path}: not a readable tokenizer.json (${(err as Error).message.split("\n")[0]})`);
    }
    return new Emu2Tokenizer(json, spec, path);
  }

  /** Splits on special tokens: [text, special, text, ...] with the 4.31 whitespace stripping applied. */
  private split(text: string): { text: string; special?: number }[] {
    const pieces: { text: string; special?: number }[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const match =
        text.charCodeAt(i) === 0x3c /* < */ || text.charCodeAt(i) === 0x5b /* [ */
          ? this.specials.find(([token]) => text.startsWith(token, i))
          : undefined;
      if (!match) {
        i++;
        continue;
      }
      pieces.push({ text: text.slice(start, i) });
      pieces.push({ text: match[0], special: match[1] });
      i += match[0].length;
      start = i;
    }
    pieces.push({ text: text.slice(start) });
    for (let k = 0; k < pieces.length; k++) {
      const piece = pieces[k];
      if (piece.special === undefined || NO_STRIP_TOKENS.has(piece.text)) continue;
      const left = pieces[k - 1];
      const right = pieces[k + 1];
      if (right && right.special === undefined) right.text = right.text.trimStart();
      if (left && left.special === undefined) left.text = left.text.trimEnd();
    }
    return pieces.filter((p) => p.special !== undefined || p.text.length > 0);
  }

  encode(text: string, options: { addBos?: boolean } = {}): number[] {
    const ids: number[] = [];
    if (options.addBos ?? this.spec.add_bos) ids.push(this.spec.bos_token_id);
    for (const piece of this.split(text)) {
      if (piece.special !== undefined) ids.push(piece.special);
      else ids.push(...this.bpe.encode(piece.text, { add_special_tokens: false }).ids);
    }
    return ids;
  }

  /**
   * Decodes as the slow tokenizer does: with skipSpecialTokens the special ids are dropped and the rest is one
   * sentencepiece decode; otherwise special tokens are kept as text, separated from the text around them by a space
   * (spaces_between_special_tokens).
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (options.skipSpecialTokens ?? true) return this.decodePieces(ids.filter((id) => !this.specialIds.has(id)));
    const parts: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length > 0) parts.push(this.decodePieces(run));
      run = [];
    };
    for (const id of ids) {
      const special = this.idToSpecial.get(id);
      if (special === undefined) {
        run.push(id);
      } else {
        flush();
        parts.push(special);
      }
    }
    flush();
    return parts.join(" ");
  }

  /** sentencepiece's decode of ordinary pieces (the library refuses an empty list; the text of none is ""). */
  private decodePieces(ids: readonly number[]): string {
    if (ids.length === 0) return "";
    return this.bpe.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /** `[<IMG_PLH>]` -> `[IMG]` + n x `<image>` + `[/IMG]` (Emu2's image placeholder expansion). */
  static expandImagePlaceholders(text: string, nQuery: number, placeholder = IMAGE_PLACEHOLDER): string {
    const expansion = imageTokenSpan(nQuery);
    return text.split(placeholder).join(expansion);
  }
}

/**
 * Incremental decoding for streaming: feed ids as they are accepted; returns the text that became final. Text that
 * ends in an incomplete UTF-8 sequence (byte-fallback pieces) is held back until the rest arrives, as HF's
 * TextStreamer does.
 */
export class TextStream {
  private ids: number[] = [];
  private emitted = "";

  constructor(private readonly tokenizer: Emu2Tokenizer) {}

  push(newIds: readonly number[]): string {
    this.ids.push(...newIds);
    const text = this.tokenizer.decode(this.ids);
    if (text.endsWith("\uFFFD")) return "";
    const delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : "";
    this.emitted = text;
    return delta;
  }

  get text(): string {
    return this.emitted;
  }
}
