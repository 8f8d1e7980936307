// The TypeScript tokenizer against the official Emu2 tokenizer files (baaivision/Emu, Emu2/emu/conf/llama_config),
// which cannot be committed here: fixtures/tokenizer/official.json holds what real sentencepiece gives on the official
// tokenizer.model (LLaMA-1's, sha256 recorded) for every text of fixtures/tokenizer/parity.json, the official
// tokenizer.json's added tokens and a digest of its vocabulary and merges, and Emu2's added tokens with the ids
// emu/lm.py gives them; python/emu2ref/official_tokenizer.py writes it from a checkout of the official repository.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { parse } from "yaml";
import { Emu2Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { buildTokenizerJson } from "../../tools/build-tokenizer.js";

interface Official {
  tokenizer_model_sha256: string;
  vocabulary_digest: string;
  official_added_tokens: Record<string, number>;
  emu2_added_tokens: { chat: Record<string, number>; base: Record<string, number> };
  cases: { chat: number[]; base: number[]; decoded: string }[];
}
const official = JSON.parse(readFileSync("fixtures/tokenizer/official.json", "utf8")) as Official;
const texts = (
  JSON.parse(readFileSync("fixtures/tokenizer/parity.json", "utf8")) as { cases: { text: string }[] }
).cases.map((c) => c.text);
const manifests = {
  chat: parse(readFileSync("configs/models/emu2-chat.yaml", "utf8")),
  base: parse(readFileSync("configs/models/emu2.yaml", "utf8")),
};

function tokenizer(variant: "base" | "chat"): Emu2Tokenizer {
  return new Emu2Tokenizer(buildTokenizerJson(variant), manifests[variant].tokenizer);
}

test("the official tokenizer.model is LLaMA-1's, and the vocabulary and merges this project writes equal the official tokenizer.json's", () => {
  assert.equal(official.tokenizer_model_sha256, "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347");
  const json = buildTokenizerJson("chat") as {
    model: { vocab: Record<string, number>; merges: (string | string[])[] };
  };
  const pieces = Object.entries(json.model.vocab)
    .sort((a, b) => a[1] - b[1])
    .map(([p]) => p);
  const merges = json.model.merges.map((m) => (typeof m === "string" ? m : m.join(" ")));
  const digest = createHash("sha256").update(JSON.stringify({ pieces, merges })).digest("hex");
  assert.equal(digest, official.vocabulary_digest);
});

test("added tokens and ids: <unk> <s> </s> as the official tokenizer.json, Emu2's as emu/lm.py adds them (manifests and written tokenizer.json)", () => {
  for (const variant of ["chat", "base"] as const) {
    const expected = { ...official.official_added_tokens, ...official.emu2_added_tokens[variant] };
    const written = buildTokenizerJson(variant) as { added_tokens: { content: string; id: number }[] };
    assert.deepEqual(
      Object.fromEntries(written.added_tokens.map((t) => [t.content, t.id])),
      expected,
      `${variant} tokenizer.json`,
    );
    const manifest = manifests[variant].tokenizer;
    assert.deepEqual(
      { ...manifest.special_tokens },
      official.emu2_added_tokens[variant],
      `${variant} manifest special_tokens`,
    );
    assert.equal(manifest.pad_token_id, official.emu2_added_tokens[variant]["[PAD]"]);
    assert.equal(manifest.eos_token_id, official.official_added_tokens["</s>"]);
  }
});

test(`ids and decoded text equal real sentencepiece on the official tokenizer.model for all ${texts.length} corpus strings`, () => {
  assert.equal(official.cases.length, texts.length);
  const chat = tokenizer("chat");
  const base = tokenizer("base");
  const mismatches: string[] = [];
  official.cases.forEach((c, i) => {
    const text = texts[i];
    const gotChat = chat.encode(text);
    if (JSON.stringify(gotChat) !== JSON.stringify(c.chat))
      mismatches.push(`chat ${JSON.stringify(text)}: ${JSON.stringify(gotChat)} != ${JSON.stringify(c.chat)}`);
    const baseText = text.replaceAll("[USER]", "").replaceAll("[ASSISTANT]", "");
    const gotBase = base.encode(baseText);
    if (JSON.stringify(gotBase) !== JSON.stringify(c.base))
      mismatches.push(`base ${JSON.stringify(baseText)}: ${JSON.stringify(gotBase)} != ${JSON.stringify(c.base)}`);
    if (chat.decode(c.chat) !== c.decoded)
      mismatches.push(
        `decode ${JSON.stringify(text)}: ${JSON.stringify(chat.decode(c.chat))} != ${JSON.stringify(c.decoded)}`,
      );
  });
  assert.deepEqual(mismatches.slice(0, 5), [], `${mismatches.length} mismatches`);
});
