// A decoder exported as two graphs of consecutive layers (emu2-chat-tiny-split, --decoder-parts 2), chained by the
// runtime with each part placed by a device map: it must compute what the whole decoder computes.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import type { GenerationSettings } from "../../src/llm/stage.js";
import { maxAbsDiff } from "../helpers/golden.js";
import { packageDir } from "../helpers/fixtures.js";
import { LlmGoldens } from "./goldens.js";
import { GREEDY } from "../helpers/settings.js";

const SPLIT = "emu2-chat-tiny-split";
const WHOLE = "emu2-chat-tiny";

if (existsSync(packageDir(SPLIT))) {
  const ref = new LlmGoldens(WHOLE);
  const whole = Emu2.open(packageDir(WHOLE));
  const split = Emu2.open(packageDir(SPLIT), {
    deviceMap: { part0: { device: "cpu", deviceId: 0 }, part1: { device: "cpu", deviceId: 0 } },
  });
  const settings: GenerationSettings = {
    ...GREEDY,
    maxNewTokens: ref.meta.greedy.max_new_tokens,
    minNewTokens: ref.meta.greedy.min_new_tokens,
  };

  test(`${SPLIT} (part0 and part1 on the CPU): prompt logits at every position are identical to the whole decoder's`, async () => {
    const [a, b] = [await split.llm(), await whole.llm()];
    for (let i = 0; i < ref.meta.prompts.length; i++) {
      const p = ref.prompt(i);
      const diff = maxAbsDiff(await a.promptLogits(p.ids, p.features), await b.promptLogits(p.ids, p.features));
      assert.equal(diff, 0, `prompt ${i}`);
    }
  });

  test(`${SPLIT}: greedy and beam search (KV cache in each part, beams reordered) return the reference's sequences`, async () => {
    const llm = await split.llm();
    const beam = {
      ...settings,
      numBeams: ref.meta.beam.num_beams,
      lengthPenalty: ref.meta.beam.length_penalty,
      maxNewTokens: ref.meta.beam.max_new_tokens,
      minNewTokens: ref.meta.beam.min_new_tokens,
    };
    for (let i = 0; i < ref.meta.prompts.length; i++) {
      const p = ref.prompt(i);
      const [greedy] = await llm.generateText([p.ids], p.features, settings);
      assert.deepEqual(greedy.ids, ref.generated(ref.golden.ints(`p${i}.greedy`)), `greedy ${i}`);
      const [beams] = await llm.generateText([p.ids], p.features, beam);
      assert.deepEqual(beams.ids, ref.generated(ref.golden.ints(`p${i}.beam`)), `beam ${i}`);
    }
  });
}
