import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelPackage } from "../../src/model/package.js";
import { encodePrompt } from "../../src/prompt/encode.js";
import { renderPrompt, templateTokens } from "../../src/prompt/render.js";
import { sequenceFromText } from "../../src/prompt/parse.js";
import { Emu2Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { PromptError } from "../../src/util/errors.js";
import { packageDir } from "../helpers/fixtures.js";

const pkg = ModelPackage.open(packageDir("emu2-tiny"));
const tokenizer = Emu2Tokenizer.fromFile(pkg.path("tokenizer.json"), pkg.manifest.tokenizer);
const render = (text: string, images: string[] = []) =>
  renderPrompt({ kind: "sequence", parts: sequenceFromText(text, images, "/x") }, "gen", templateTokens(pkg.manifest));

test("images expand to [IMG] + 64 <image> + [/IMG] after bos", () => {
  const e = encodePrompt(render("Describe:", ["a.png"]), tokenizer, pkg.manifest);
  assert.deepEqual(e.ids.slice(0, 3), [1, 32001, 32003]);
  assert.equal(e.ids[66], 32002);
  assert.equal(e.ids.filter((id) => id === 32003).length, 64);
});

test("a prompt longer than the context names both lengths", () => {
  const long = render("word ".repeat(2100));
  assert.throws(
    () => encodePrompt(long, tokenizer, pkg.manifest),
    (err: unknown) =>
      err instanceof PromptError &&
      /the prompt is \d+ tokens, more than the model's context of 2048 tokens/.test(err.message),
  );
  const fits = render("word ".repeat(2000));
  assert.throws(
    () => encodePrompt(fits, tokenizer, pkg.manifest, { reserveTokens: 100 }),
    /tokens \+ 100 to generate, more than the model's context/,
  );
});

test("<image> typed in the text is refused rather than spliced with nothing", () => {
  const rendered = { template: "gen" as const, text: "see <image> here", images: [], videos: [] };
  assert.throws(() => encodePrompt(rendered, tokenizer, pkg.manifest), /contains 1 stray <image> token/);
});
