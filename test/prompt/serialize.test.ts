import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { promptFromFile } from "../../src/prompt/parse.js";
import { conversationToYaml } from "../../src/prompt/serialize.js";

test("a saved conversation reads back as the same conversation, image paths relative to the file", () => {
  const input = promptFromFile("fixtures/prompts/chat.yaml");
  assert.equal(input.kind, "conversation");
  if (input.kind !== "conversation") return;
  const dir = mkdtempSync(join(tmpdir(), "emu2-save-"));
  const file = join(dir, "saved.yaml");
  const yaml = conversationToYaml(input.conversation, file);
  assert.match(yaml, /^ {6}- image: \.\.\/.*fixtures\/images\/blocks\.png$/m);
  writeFileSync(file, yaml);
  const again = promptFromFile(file);
  assert.deepEqual(again, input);
  assert.equal(
    again.kind === "conversation" &&
      again.conversation.messages[0].parts[0].kind === "image" &&
      "path" in again.conversation.messages[0].parts[0].image
      ? again.conversation.messages[0].parts[0].image.path
      : "",
    resolve("fixtures/images/blocks.png"),
  );
});
