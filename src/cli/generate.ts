// emu2 generate: text-to-image, interleaved prompts with reference images, image-only autoencoding and grounded
// generation with Emu2-Gen packages. Writes PNGs that carry their settings; stdout lists what was written.
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { Emu2, imageToPng } from "../emu2.js";
import { Emu2Error, UsageError } from "../util/errors.js";
import { makeReporter, writeJson } from "./io.js";
import { addPromptSourceOptions, readPromptInput, type PromptSourceFlags } from "./prompt-options.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";
import { wholeNumber } from "./flags.js";
import { checkOutputFile } from "./output-path.js";
import { progressBar } from "./progress.js";

interface GenerateFlags extends ModelOptions, Omit<PromptSourceFlags, "prompt"> {
  output?: string;
  overwrite?: boolean;
  numImages: string;
  steps?: string;
  cfgScale?: string;
  seed: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** Output paths: `{i}` in the pattern is the image index; several images without `{i}` get -1, -2... before the extension. */
export function outputPaths(pattern: string, count: number): string[] {
  if (pattern === "-") {
    if (count > 1)
      throw new UsageError("-o -: only one image can go to standard output (use --num-images 1 or a file pattern)");
    return ["-"];
  }
  if (!/\.png$/i.test(pattern.replace(/\{i\}/g, "")))
    throw new UsageError(`-o ${pattern}: expected a .png file name or pattern`);
  if (pattern.includes("{i}")) return Array.from({ length: count }, (_, i) => pattern.replace(/\{i\}/g, String(i)));
  if (count === 1) return [pattern];
  return Array.from({ length: count }, (_, i) => pattern.replace(/(\.png)$/i, `-${i}$1`));
}

/** Without -o: emu2-N.png with the first numbers not taken in the current folder, so a rerun never replaces an image. */
export function freeNumberedPaths(count: number, exists: (path: string) => boolean = existsSync): string[] {
  const paths: string[] = [];
  for (let n = 0; paths.length < count; n++) if (!exists(`emu2-${n}.png`)) paths.push(`emu2-${n}.png`);
  return paths;
}

/** Writes beside the target and renames, so an existing image is replaced whole or not at all. */
function writeWhole(path: string, bytes: Buffer): void {
  const partial = `${path}.partial-${process.pid}`;
  try {
    writeFileSync(partial, bytes);
    renameSync(partial, path);
  } finally {
    rmSync(partial, { force: true });
  }
}

export function registerGenerate(program: Command): void {
  const command = program
    .command("generate")
    .description("generate images from text, interleaved image-text prompts, an image alone, or grounded prompts")
    .argument("[prompt]", "the text prompt (images: --image or a YAML file)")
    .option(
      "-o, --output <path>",
      "PNG path or pattern with {i}; - writes one PNG to stdout (not to a terminal). Default: emu2-N.png with the first free numbers N, never replacing a file",
    )
    .option("--overwrite", "replace -o files that exist (without it an existing file stops the run before any work)")
    .option("--num-images <n>", "how many images (seeds seed, seed+1, ...)", "1")
    .option("--steps <n>", "denoising steps (default: the package's)")
    .option("--cfg-scale <x>", "classifier-free guidance scale (default: the package's)")
    .option("--seed <n>", "noise seed", "0")
    .option("--json", "print a JSON list of the written files")
    .option("-q, --quiet", "no notices or progress on stderr")
    .option("-v, --verbose", "details on stderr");
  addModelOptions(addPromptSourceOptions(command, { textOption: false })).action(
    async (text: string | undefined, flags: GenerateFlags) => {
      const reporter = makeReporter(flags);
      const numImages = wholeNumber("--num-images", flags.numImages, { min: 1 });
      const steps = flags.steps === undefined ? undefined : wholeNumber("--steps", flags.steps, { min: 1 });
      // Image i uses seed + i, and every seed must stay an exact integer (docs/package-format.md, seeded noise).
      const maxSeed = Number.MAX_SAFE_INTEGER - (numImages - 1);
      const seed = wholeNumber("--seed", flags.seed, {
        max: maxSeed,
        expected: `a whole number from 0 to ${maxSeed}${numImages > 1 ? ` (2^53-1 less the ${numImages - 1} extra images)` : " (2^53-1)"}`,
      });
      const cfgScale = flags.cfgScale === undefined ? undefined : Number(flags.cfgScale);
      if (cfgScale !== undefined && (!Number.isFinite(cfgScale) || cfgScale < 0))
        throw new UsageError(`--cfg-scale: expected a number >= 0, got ${JSON.stringify(flags.cfgScale)}`);
      const paths = flags.output === undefined ? freeNumberedPaths(numImages) : outputPaths(flags.output, numImages);
      if (paths[0] === "-") {
        if (flags.json)
          throw new UsageError("--json lists written files; with -o - the PNG itself is the output: drop one of them");
        if (process.stdout.isTTY)
          throw new UsageError("-o -: standard output is a terminal; redirect it (> image.png) or pipe it");
      }
      // Every target is checked before any model work: a typo costs one line, not minutes of denoising.
      for (const path of paths.filter((p) => p !== "-")) {
        const { exists } = checkOutputFile(path);
        if (exists && !flags.overwrite)
          throw new Emu2Error(`-o ${path}: the file exists; pass --overwrite to replace it, or choose another name`);
      }

      const input = readPromptInput({ ...flags, prompt: text }, "a prompt argument");

      const model = new Emu2(openModel(flags, reporter));
      // Sessions are given back whatever happens, an error or Ctrl-C included.
      try {
        const decoder = model.manifest.visual_decoder;
        if (!decoder) {
          throw new UsageError(
            `package ${model.pkg.name} has no visual decoder and cannot generate images: use an Emu2-Gen package (-m)`,
          );
        }
        const totalSteps = numImages * (steps ?? decoder.num_inference_steps);
        const bar = progressBar(reporter, "denoising", totalSteps);
        const imageOnly = input.kind === "sequence" && input.parts.every((p) => p.kind === "image");
        let images;
        try {
          const options = { numImages, steps, cfgScale, seed, onStep: (done: number) => bar.update(done) };
          images = imageOnly ? await model.autoencode(input, options) : await model.generateImages(input, options);
        } finally {
          bar.stop();
        }
        const promptText = text ?? flags.file ?? "";
        const written: { file: string; seed: number; width: number; height: number }[] = [];
        for (const [i, image] of images.entries()) {
          const png = await imageToPng(image, {
            prompt: promptText,
            mode: imageOnly ? "autoencode" : "generate",
            seed: String(image.seed),
            steps: String(steps ?? decoder.num_inference_steps),
            "cfg-scale": String(cfgScale ?? decoder.guidance_scale),
            model: model.pkg.name,
            software: "emu2",
          });
          const path = paths[i];
          if (path === "-") {
            process.stdout.write(png);
          } else {
            writeWhole(path, png);
            written.push({ file: path, seed: image.seed, width: image.width, height: image.height });
            if (!flags.json) process.stdout.write(`${path}\n`);
          }
        }
        if (flags.json) writeJson(written);
      } finally {
        await model.release();
      }
    },
  );
}
