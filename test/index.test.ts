import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import * as api from "../src/index.js";
import { GREEDY } from "./helpers/settings.js";

test("the package exports the facade the CLI is built on", async () => {
  assert.equal(typeof api.Emu2.open, "function");
  const model = api.Emu2.open("fixtures/models/emu2-chat-tiny");
  const [answer] = await model.generateText(
    [
      {
        kind: "sequence",
        parts: [
          { kind: "image", image: { path: "fixtures/images/blocks.png" } },
          { kind: "text", text: "How many blocks?" },
        ],
      },
    ],
    {
      ...GREEDY,
      maxNewTokens: 4,
      minNewTokens: 1,
    },
  );
  assert.equal(answer.ids.length, 4);
  assert.equal(answer.stopReason, "length");
  assert.equal(answer.text, model.tokenizer().decode(answer.ids));
  await model.release();
});

test("VERSION is package.json's version (also what emu2 --version prints)", () => {
  const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
  assert.equal(api.VERSION, pkg.version);
});
