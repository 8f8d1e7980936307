// Draws images of the toy world's held-out scenes (fixtures/toy-eval/caption.jsonl) with emu2-toy's visual decoder
// through the Emu2 facade, in one process (what `emu2 generate` does per image, without reloading the package):
//
//   node --import tsx tools/toy-images.ts --out DIR [-m fixtures/models/emu2-toy] [--data fixtures/toy-eval]
//                                          [--mode autoencode|text] [--limit N] [--seed 0] [--cfg-scale X]
//
// - autoencode: the image alone as the prompt (Emu2.autoencode: its encoder features condition the UNet, the null
//   condition is an all-zero normalized image), as `emu2 generate --image scene.png` does.
// - text: the scene's reference caption as the prompt (Emu2.generateImages: the LLM regresses the visual
//   embeddings), as `emu2 generate "two red circles"` does.
// Writes DIR/<id>.png and prints one JSON line per image ({"id", "source", "image", "caption"}) on stdout, which
// python/judge_toy_images.py judges against the scene records.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Emu2, imageToPng } from "../src/emu2.js";
import { readJsonl, TOY_EVAL, TOY_PACKAGE } from "./toy-eval.js";

interface CaptionRow {
  id: string;
  image: string;
  captions: string[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string", short: "m", default: TOY_PACKAGE },
      data: { type: "string", default: TOY_EVAL },
      out: { type: "string" },
      mode: { type: "string", default: "autoencode" },
      limit: { type: "string" },
      seed: { type: "string", default: "0" },
      "cfg-scale": { type: "string" },
    },
  });
  if (!values.out) throw new Error("--out: expected the folder for the images");
  if (values.mode !== "autoencode" && values.mode !== "text")
    throw new Error(`--mode ${values.mode}: expected autoencode or text`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed ${values.seed}: expected a whole number`);
  const cfgScale = values["cfg-scale"] === undefined ? undefined : Number(values["cfg-scale"]);
  if (cfgScale !== undefined && !(cfgScale >= 1))
    throw new Error(`--cfg-scale ${values["cfg-scale"]}: expected a number >= 1 (default: the package's)`);
  const dataDir = resolve(values.data!);
  let rows = readJsonl<CaptionRow>(join(dataDir, "caption.jsonl"));
  if (values.limit !== undefined) {
    const limit = Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new Error(`--limit ${values.limit}: expected a whole number >= 1`);
    rows = rows.slice(0, limit);
  }
  mkdirSync(values.out, { recursive: true });
  const model = Emu2.open(resolve(values.model!));
  try {
    for (const [i, row] of rows.entries()) {
      const source = join(dataDir, row.image);
      const caption = row.captions[0];
      const [image] =
        values.mode === "autoencode"
          ? await model.autoencode(
              { kind: "sequence", parts: [{ kind: "image", image: { path: source } }] },
              { seed, cfgScale },
            )
          : await model.generateImages(
              { kind: "sequence", parts: [{ kind: "text", text: caption }] },
              { seed, cfgScale },
            );
      const file = join(values.out, `${row.id}.png`);
      writeFileSync(file, await imageToPng(image, { mode: values.mode!, seed: String(seed), software: "emu2" }));
      process.stdout.write(JSON.stringify({ id: row.id, source, image: file, caption }) + "\n");
      if (process.stderr.isTTY) process.stderr.write(`\r${i + 1}/${rows.length}`);
    }
  } finally {
    await model.release();
  }
  if (process.stderr.isTTY) process.stderr.write("\n");
}

main().catch((error: unknown) => {
  process.stderr.write(`toy-images: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
