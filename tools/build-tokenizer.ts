// Writes a package's tokenizer.json (Hugging Face tokenizers format): the LLaMA vocabulary and merges that the
// llama-tokenizer-js package carries, the LLaMA sentencepiece settings, and the Emu2 added
// tokens at their ids, read from the manifest of the real model the package mirrors (configs/models/*.yaml).
//
//   node --import tsx tools/build-tokenizer.ts --variant base|chat --out tokenizer.json
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import llamaTokenizer from "llama-tokenizer-js";
import { readManifest } from "../src/model/manifest.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SPIECE_UNDERLINE = "\u2581";

interface LlamaTokenizerData {
  vocabById: string[];
  merges: Map<string, number>;
}

export function buildTokenizerJson(variant: "base" | "chat"): object {
  const manifest = readManifest(join(ROOT, "configs", "models", variant === "chat" ? "emu2-chat.yaml" : "emu2.yaml"));
  const data = llamaTokenizer as unknown as LlamaTokenizerData;
  const vocab: Record<string, number> = {};
  data.vocabById.forEach((piece, id) => {
    vocab[piece] = id;
  });
  const merges = [...data.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const addedTokens = [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")];
  for (const [content, id] of Object.entries(manifest.tokenizer.special_tokens).sort((a, b) => a[1] - b[1])) {
    addedTokens.push(special(id, content));
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: SPIECE_UNDERLINE },
        { type: "Replace", pattern: { String: " " }, content: SPIECE_UNDERLINE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPIECE_UNDERLINE }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

function main(): void {
  const args = process.argv.slice(2);
  const variant = args[args.indexOf("--variant") + 1];
  const out = args[args.indexOf("--out") + 1];
  if (!args.includes("--variant") || (variant !== "base" && variant !== "chat") || !args.includes("--out") || !out) {
    process.stderr.write("usage: build-tokenizer.ts --variant base|chat --out tokenizer.json\n");
    process.exit(2);
  }
  writeFileSync(out, `${JSON.stringify(buildTokenizerJson(variant))}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
