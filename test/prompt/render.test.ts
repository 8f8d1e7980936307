import assert from "node:assert/strict";
import { resolve } from "node:path";
import { test } from "node:test";
import { parsePromptYaml, promptFromFile, sequenceFromText } from "../../src/prompt/parse.js";
import { renderPrompt } from "../../src/prompt/render.js";
import { PromptError } from "../../src/util/errors.js";

const PLH = "[<IMG_PLH>]";
const SYSTEM = "You are a helpful assistant, dedicated to delivering comprehensive and meticulous responses.";

test("base template: images become placeholders in order, text is concatenated as the official code does", () => {
  const input = promptFromFile("fixtures/prompts/fewshot.yaml");
  const r = renderPrompt(input, "base", { placeholder: PLH });
  assert.equal(r.text, `${PLH}[day, green, a mountain].${PLH}[night, grey, a red peak].${PLH}`);
  assert.deepEqual(
    r.images.map((s) => (s.kind === "image" && "path" in s.image ? s.image.path : "")),
    [
      resolve("fixtures/images/landscape.png"),
      resolve("fixtures/images/night.jpg"),
      resolve("fixtures/images/blocks.png"),
    ],
  );
});

test("chat template follows the demo's format_chat for multi-turn conversations", () => {
  const input = promptFromFile("fixtures/prompts/chat.yaml");
  const r = renderPrompt(input, "chat", { placeholder: PLH, systemMessage: SYSTEM });
  assert.equal(
    r.text,
    "You are a helpful assistant, dedicated to provide concise and efficient answers. [USER]: " +
      `${PLH}How many blocks are there? [ASSISTANT]: There are four blocks.</s>[USER]: Which one is the highest? [ASSISTANT]:`,
  );
  const single = renderPrompt({ kind: "sequence", parts: sequenceFromText("What is this?", ["a.png"]) }, "chat", {
    placeholder: PLH,
    systemMessage: SYSTEM,
  });
  assert.equal(single.text, `${SYSTEM} [USER]: ${PLH}What is this? [ASSISTANT]:`);
  const grounded = renderPrompt(
    {
      kind: "conversation",
      conversation: {
        grounding: true,
        messages: [{ role: "user", parts: [{ kind: "text", text: "Where is the cat?" }] }],
      },
    },
    "chat",
    { placeholder: PLH, systemMessage: SYSTEM },
  );
  assert.ok(grounded.text.endsWith(" [ASSISTANT]:<grounding>"));
});

test("gen template: grounded objects render phrase, box mask and subject image, with <grounding> first", () => {
  const r = renderPrompt(promptFromFile("fixtures/prompts/grounded.yaml"), "gen", { placeholder: PLH });
  assert.equal(
    r.text,
    `<grounding>An oil painting of<phrase>a red mountain</phrase><object>${PLH}</object>${PLH} and<phrase>the sun</phrase><object>${PLH}</object>`,
  );
  assert.deepEqual(
    r.images.map((s) => s.kind),
    ["box-mask", "image", "box-mask"],
  );
  assert.deepEqual(r.images[0], { kind: "box-mask", box: [40, 60, 220, 300] });
});

test("-p text with --image: markers are filled in order, a count mismatch is named", () => {
  const parts = sequenceFromText("first <image> then [<IMG_PLH>] end", ["a.png", "b.png"], "/x");
  assert.deepEqual(
    parts.map((p) => p.kind),
    ["text", "image", "text", "image", "text"],
  );
  assert.deepEqual(
    sequenceFromText("Describe:", ["a.png"], "/x").map((p) => p.kind),
    ["image", "text"],
  );
  assert.throws(
    () => sequenceFromText("a <image> b <image>", ["a.png"]),
    /the prompt has 2 image placeholders but 1 image was given with --image/,
  );
});

test("bad prompt files give one line with file, position and what was expected", () => {
  const cases: [string, RegExp][] = [
    ["prompt:\n  - image: [a, b]\n", /^p\.yaml: line 2, column 12: prompt\[0\]\.image: expected text$/],
    ["prompt:\n  - {img: a.png}\n", /^p\.yaml: line 2, column 5: prompt\[0\]: expected text, \{text: \.\.\.\}/],
    ["messages:\n  - robot: hi\n", /^p\.yaml: line 2, column 5: messages\[0\]: expected user or assistant, not robot$/],
    ["prompt: [unclosed\n", /^p\.yaml: YAML error at line \d+, column \d+: /],
    ["promt:\n  - hi\n", /^p\.yaml: line 1, column 1: promt: expected one of prompt, messages, system, grounding$/],
    ["prompt:\n  - phrase: x\n    box: [1, 2, 3]\n", /box: expected a box of 4 numbers/],
  ];
  for (const [yaml, pattern] of cases) {
    assert.throws(
      () => parsePromptYaml(yaml, "p.yaml", "/x"),
      (err: unknown) => err instanceof PromptError && pattern.test(err.message) && !err.message.includes("\n"),
      yaml,
    );
  }
  assert.throws(() => promptFromFile("fixtures/prompts/nope.yaml"), /fixtures\/prompts\/nope\.yaml: no such file/);
});

test("templates reject what they cannot express", () => {
  const chat = promptFromFile("fixtures/prompts/chat.yaml");
  assert.throws(
    () => renderPrompt(chat, "base", { placeholder: PLH }),
    /takes one interleaved prompt, not a conversation/,
  );
  assert.throws(
    () =>
      renderPrompt(promptFromFile("fixtures/prompts/grounded.yaml"), "chat", {
        placeholder: PLH,
        systemMessage: SYSTEM,
      }),
    /grounded objects/,
  );
});
