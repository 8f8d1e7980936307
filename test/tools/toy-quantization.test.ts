// Issue 12's quality gate on a model that has learned something: emu2-toy's eval accuracy at int8 stays within 1 point
// of float32, at int4 within 3 points. The committed checkpoint is exported three times at test time with the
// project's exporter (python/export_toy.py: float32; int8 and int4 with the heads and the visual encoder quantized
// too, the most the exporter quantizes), and each export runs the held-out captions and VQA questions
// (fixtures/toy-eval) through the TypeScript runtime. Measured (float32 / int8 / int4): captions naming color and
// shape 99 / 99 / 99 %, exact captions 90 / 90 / 88 %, VQA 88.5 / 88.5 / 91.0 % (on the previous checkpoint, whose
// LLM had learned no in-context binding: 99 / 99 / 99, 98 / 98 / 99 and 81.0 / 80.0 / 80.5). Broken quantizers fail
// it: int8 scales stored a fifth too large gave captions at 94 % on the previous checkpoint; int4 nibbles packed
// high-first gave 4 %.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Emu2 } from "../../src/emu2.js";
import { TOY_EVAL, generativeAccuracy } from "../../tools/toy-eval.js";

const PYTHON = "/usr/bin/python3";
const torch = spawnSync(PYTHON, ["-c", "import torch, onnx"], { encoding: "utf8" });
const NO_TORCH =
  torch.status === 0 ? false : `skipped: ${PYTHON} cannot import torch and onnx, which python/export_toy.py needs`;

const EXPORTS: Record<string, string[]> = {
  float32: ["--dtype", "float32"],
  int8: ["--quantize", "int8", "--quantize-heads", "--quantize-vision"],
  int4: ["--quantize", "int4", "--quantize-heads", "--quantize-vision"],
};
// Points (of 100) each quantization may lose or gain on every metric (the gate).
const TOLERANCE: Record<string, number> = { int8: 1, int4: 3 };
// float32 itself must work, or equal figures would mean nothing (measured: 99, 90, 88.5).
const FLOOR: Record<string, number> = { "caption.color_and_shape": 90, "caption.exact": 85, "vqa.accuracy": 75 };

const scratch = mkdtempSync(join(tmpdir(), "emu2-toy-quantized-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

async function evaluate(name: string): Promise<Record<string, number>> {
  const out = join(scratch, name);
  const done = spawnSync(PYTHON, ["python/export_toy.py", "--out", out, ...EXPORTS[name]], { encoding: "utf8" });
  assert.equal(done.status, 0, `export_toy.py ${EXPORTS[name].join(" ")}: ${done.stderr}`);
  const model = Emu2.open(out);
  try {
    const { results } = await generativeAccuracy(model, TOY_EVAL);
    return Object.fromEntries(Object.entries(results).map(([k, v]) => [k, 100 * v]));
  } finally {
    await model.release();
  }
}

test("emu2-toy's eval accuracy: int8 within 1 point of float32, int4 within 3", { skip: NO_TORCH }, async () => {
  const reference = await evaluate("float32");
  for (const [metric, floor] of Object.entries(FLOOR))
    assert.ok(reference[metric] >= floor, `float32 ${metric} ${reference[metric]}% < ${floor}%`);
  for (const [name, tolerance] of Object.entries(TOLERANCE)) {
    const quantized = await evaluate(name);
    for (const metric of Object.keys(FLOOR)) {
      const drift = Math.abs(quantized[metric] - reference[metric]);
      assert.ok(
        drift <= tolerance + 1e-9,
        `${name} ${metric}: ${quantized[metric]}% vs float32 ${reference[metric]}% (allowed ${tolerance} points)`,
      );
    }
  }
});
