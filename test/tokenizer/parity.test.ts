// The TypeScript tokenizer against the reference (real sentencepiece + the transformers 4.31 rules, python/emu2ref/
// tokenizer.py) on the corpus of fixtures/tokenizer/parity.json; when Debian's python3-sentencepiece is here, the
// reference is also re-run now on the tokenizer.json this checkout builds.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { Emu2Tokenizer, TextStream } from "../../src/tokenizer/tokenizer.js";
import { buildTokenizerJson } from "../../tools/build-tokenizer.js";

interface Case {
  text: string;
  chat: number[];
  base: number[];
  decoded: string;
}
const corpus = (JSON.parse(readFileSync("fixtures/tokenizer/parity.json", "utf8")) as { cases: Case[] }).cases;

function tokenizer(variant: "base" | "chat", json: object = buildTokenizerJson(variant)): Emu2Tokenizer {
  const manifest = parse(readFileSync(`configs/models/${variant === "chat" ? "emu2-chat" : "emu2"}.yaml`, "utf8"));
  return new Emu2Tokenizer(json, manifest.tokenizer);
}

test(`ids equal the reference tokenizer's on all ${corpus.length} corpus strings (chat and base vocabularies)`, () => {
  assert.ok(corpus.length >= 1000);
  const chat = tokenizer("chat");
  const base = tokenizer("base");
  const mismatches: string[] = [];
  for (const c of corpus) {
    const gotChat = chat.encode(c.text);
    if (JSON.stringify(gotChat) !== JSON.stringify(c.chat))
      mismatches.push(`chat ${JSON.stringify(c.text)}: ${JSON.stringify(gotChat)} != ${JSON.stringify(c.chat)}`);
    const baseText = c.text.replaceAll("[USER]", "").replaceAll("[ASSISTANT]", "");
    const gotBase = base.encode(baseText);
    if (JSON.stringify(gotBase) !== JSON.stringify(c.base))
      mismatches.push(`base ${JSON.stringify(baseText)}: ${JSON.stringify(gotBase)} != ${JSON.stringify(c.base)}`);
  }
  assert.deepEqual(mismatches.slice(0, 5), [], `${mismatches.length} mismatches`);
});

test("decoding (special tokens skipped) equals the reference's", () => {
  const chat = tokenizer("chat");
  const wrong = corpus.filter((c) => chat.decode(c.chat) !== c.decoded).map((c) => c.text);
  assert.deepEqual(wrong.slice(0, 5), []);
});

test("known ids: LLaMA's Hello world, Emu2's added tokens, placeholder expansion", () => {
  const chat = tokenizer("chat");
  assert.deepEqual(chat.encode("Hello world"), [1, 15043, 3186]);
  assert.deepEqual(
    chat.encode("[USER]: hi [ASSISTANT]:", { addBos: false }).filter((id) => id >= 32000),
    [32272, 32273],
  );
  const expanded = Emu2Tokenizer.expandImagePlaceholders("[<IMG_PLH>]x", 3);
  assert.equal(expanded, "[IMG]<image><image><image>[/IMG]x");
  assert.deepEqual(chat.encode(expanded).slice(0, 6), [1, 32001, 32003, 32003, 32003, 32002]);
  assert.equal(chat.decode([1, 15043, 32001, 3186, 2], { skipSpecialTokens: false }), "<s> Hello [IMG] world </s>");
});

test("a tokenizer.json whose added tokens disagree with the manifest is refused, naming the token", () => {
  const json = buildTokenizerJson("chat") as { added_tokens: { content: string; id: number }[] };
  const manifest = parse(readFileSync("configs/models/emu2-chat.yaml", "utf8"));
  manifest.tokenizer.special_tokens["[IMG]"] = 32005;
  assert.throws(
    () => new Emu2Tokenizer(json, manifest.tokenizer, "pkg/tokenizer.json"),
    /^PackageError: pkg\/tokenizer\.json: token \[IMG\] has id 32001 but the manifest says 32005$/,
  );
});

test("streaming decode emits whole characters only and adds up to the full decode", () => {
  const chat = tokenizer("chat");
  const ids = chat.encode("Streaming 🦙 llamas über 日本", { addBos: false });
  const stream = new TextStream(chat);
  let out = "";
  for (const id of ids) {
    const delta = stream.push([id]);
    assert.ok(!delta.includes("\uFFFD"));
    out += delta;
  }
  assert.equal(out, chat.decode(ids));
});

test("the Python reference, re-run now, agrees with the stored ids", (t) => {
  const python = "/usr/bin/python3";
  const probe = spawnSync(python, ["-c", "import sentencepiece"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip("python3-sentencepiece is not installed (apt-get install python3-sentencepiece)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "emu2-tok-"));
  writeFileSync(join(dir, "chat.json"), JSON.stringify(buildTokenizerJson("chat")));
  writeFileSync(join(dir, "base.json"), JSON.stringify(buildTokenizerJson("base")));
  execFileSync(
    python,
    ["-m", "emu2ref.tokenizer_parity", join(dir, "chat.json"), join(dir, "base.json"), join(dir, "parity.json")],
    { cwd: "python", stdio: "pipe" },
  );
  const fresh = (JSON.parse(readFileSync(join(dir, "parity.json"), "utf8")) as { cases: Case[] }).cases;
  assert.deepEqual(fresh, corpus);
});
