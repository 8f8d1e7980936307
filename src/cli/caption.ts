// emu2 caption: captions many images in batches, for terminals and pipelines. Each finished caption is written at
// once; with -o an existing output is resumed (caption-output.ts) and only this run writes it (output-lock.ts); an
// unreadable image is reported and skipped, and the exit code says so; a broken package stops the run at once.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { isSeq } from "yaml";
import { Emu2 } from "../emu2.js";
import type { Part, PromptInput } from "../prompt/types.js";
import { readTextSource } from "../prompt/parse.js";
import { Emu2Error, errorMessage, PromptError, UsageError } from "../util/errors.js";
import { readYamlDocument } from "../util/yaml.js";
import { CaptionSink, formatFromPath, imageKey, readDone, type CaptionFormat } from "./caption-output.js";
import { addGenerationOptions, resolveGenerationSettings, type GenerationFlags } from "./generation-options.js";
import { wholeNumber } from "./flags.js";
import { expandImageInputs } from "./image-inputs.js";
import { interruptible, Interrupted } from "./interrupt.js";
import { makeReporter } from "./io.js";
import { OutputLock } from "./output-lock.js";
import { checkOutputFile } from "./output-path.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";
import { progressBar } from "./progress.js";
import { addVideoOptions, parseFrames, type VideoFlags } from "./video-options.js";

interface CaptionFlags extends ModelOptions, GenerationFlags, VideoFlags {
  format?: string;
  json?: boolean;
  output?: string;
  prompt?: string;
  demos?: string;
  batchSize: string;
  recursive?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export const DEFAULT_CAPTION_PROMPT = "Describe the image in details:";
/** The official README's video question (Emu2-Chat). */
export const DEFAULT_VIDEO_CAPTION_PROMPT = "What happened in the video?";

interface Demo {
  image: string;
  caption: string;
}

/** --demos file: a YAML list of {image, caption} (fixtures/prompts/demos.yaml); image paths relative to the file. */
export function readDemos(file: string): Demo[] {
  const yaml = readYamlDocument(readTextSource(file), file, (message) => new PromptError(message));
  const list = yaml.doc.contents;
  if (!isSeq(list) || list.items.length === 0)
    throw new PromptError(`${file}: expected a list of {image: path, caption: text}`);
  return list.items.map((node, i) => {
    const d = (node as { toJSON(): unknown }).toJSON() as Partial<Demo> | null;
    const at = `${file}: item ${i + 1} (${yaml.where(node)})`;
    if (typeof d?.image !== "string" || typeof d?.caption !== "string")
      throw new PromptError(`${at}: expected {image: path, caption: text}`);
    const image = resolve(file === "-" ? "." : resolve(file, ".."), d.image);
    if (!existsSync(image)) throw new PromptError(`${at}: ${d.image}: no such file`);
    return { image, caption: d.caption };
  });
}

/**
 * The prompt for one image: demonstrations first (image, instruction, caption), then the query image and the
 * instruction, concatenated as the official few-shot prompts are.
 */
export function captionPrompt(
  image: string,
  instruction: string,
  demos: Demo[],
  kind: "image" | "video" = "image",
): PromptInput {
  const parts: Part[] = [];
  for (const demo of demos) {
    parts.push(
      { kind: "image", image: { path: demo.image } },
      { kind: "text", text: `${instruction} ${demo.caption}. ` },
    );
  }
  parts.push(
    kind === "video"
      ? { kind: "video", video: { path: resolve(image) } }
      : { kind: "image", image: { path: resolve(image) } },
  );
  parts.push({ kind: "text", text: instruction });
  return { kind: "sequence", parts };
}

export function registerCaption(program: Command): void {
  const command = program
    .command("caption")
    .description("caption images (files, folders, globs; - reads a list of paths from stdin)")
    .argument("[images...]", "image files, folders (their own images; subfolders with -r) or glob patterns")
    .option("-r, --recursive", "read the images of subfolders too")
    .option("--format <format>", "text, tsv or jsonl (default: from -o's extension, else text)")
    .option("--json", "the same as --format jsonl")
    .option(
      "-o, --output <file>",
      "write here; an existing JSONL or TSV file is resumed (its images, matched by real path, are skipped); an existing text file is refused",
    )
    .option(
      "--prompt <text>",
      `instruction after each image (default "${DEFAULT_CAPTION_PROMPT}"; videos: "${DEFAULT_VIDEO_CAPTION_PROMPT}")`,
    )
    .option(
      "--demos <yaml>",
      "in-context examples: a YAML list of {image, caption}, image paths relative to the file (fixtures/prompts/demos.yaml)",
    )
    .option("-b, --batch-size <n>", "images per batch", "4")
    .option("-q, --quiet", "no notices or progress on stderr")
    .option("-v, --verbose", "details on stderr");
  addGenerationOptions(addModelOptions(addVideoOptions(command, "to caption"))).action(
    async (args: string[], flags: CaptionFlags) => {
      const reporter = makeReporter(flags);
      const frames = parseFrames(flags);
      if (args.length === 0 && (flags.video ?? []).length === 0)
        throw new UsageError("nothing to caption: give image files, folders or globs, or --video <path>");
      if (flags.json && flags.format !== undefined && flags.format !== "jsonl")
        throw new UsageError(`--json and --format ${flags.format} disagree`);
      const format = (flags.json ? "jsonl" : (flags.format ?? formatFromPath(flags.output) ?? "text")) as CaptionFormat;
      if (!["text", "tsv", "jsonl"].includes(format))
        throw new UsageError(`--format: expected text, tsv or jsonl, got ${JSON.stringify(flags.format)}`);
      const batchSize = wholeNumber("--batch-size", flags.batchSize, { min: 1 });
      const output = flags.output !== undefined && flags.output !== "-" ? flags.output : undefined;
      if (output !== undefined) checkOutputFile(output);
      const demos = flags.demos ? readDemos(flags.demos) : [];
      const videos = new Set(flags.video ?? []);
      const images = [
        ...(args.length > 0 ? await expandImageInputs(args, undefined, { recursive: flags.recursive }) : []),
        ...videos,
      ];

      // The claim on the output comes before reading what it holds, so no other run appends between the two.
      const lock = output !== undefined ? OutputLock.acquire(output) : undefined;
      try {
        let todo = images;
        if (output !== undefined) {
          const done = readDone(output, format);
          todo = images.filter((img) => !done.has(imageKey(img)));
          if (images.length > todo.length)
            reporter.notice(
              `emu2: resuming ${output}: ${images.length - todo.length} of ${images.length} images already done`,
            );
          if (todo.length === 0) return;
        }
        const pkg = openModel(flags, reporter);
        const settings = resolveGenerationSettings(flags, pkg.manifest.generation);
        const model = new Emu2(pkg);
        const sink = new CaptionSink(flags.output, format);
        const bar = progressBar(reporter, "captioning", todo.length);
        let failed = 0;
        let interrupted = false;
        try {
          await interruptible(async (signal) => {
            for (let start = 0; start < todo.length && !signal.aborted; start += batchSize) {
              const batch = todo.slice(start, start + batchSize);
              // A package-level failure (unreadable tokenizer, broken graph) is thrown from here and ends the run; only
              // problems of one image come back as results.
              const prompts = batch.map((item) =>
                videos.has(item)
                  ? captionPrompt(item, flags.prompt ?? DEFAULT_VIDEO_CAPTION_PROMPT, demos, "video")
                  : captionPrompt(item, flags.prompt ?? DEFAULT_CAPTION_PROMPT, demos),
              );
              const results = await model.generateTextEach(prompts, settings, {
                signal,
                frames,
                onNotice: (m) => reporter.notice(m),
              });
              results.forEach((result, i) => {
                if ("error" in result) {
                  failed++;
                  // Errors are shown even with --quiet: they are not progress.
                  process.stderr.write(`emu2: ${errorMessage(result.error)}\n`);
                  sink.writeFailure();
                } else if (result.stopReason !== "aborted") {
                  sink.write({ image: batch[i], caption: result.text.trim() });
                }
              });
              // The bar counts what has an outcome: captions written and images that failed, never an interrupted one.
              bar.update(sink.written + failed, batch[batch.length - 1]);
            }
            interrupted = signal.aborted;
          });
        } finally {
          bar.stop();
          sink.close();
          await model.release();
        }
        if (interrupted) {
          const where =
            output === undefined ? "" : format === "text" ? ` to ${output}` : ` to ${output} (run again to resume)`;
          throw new Interrupted(
            `interrupted: ${sink.written} of ${todo.length} caption${todo.length === 1 ? "" : "s"} written${where}`,
          );
        }
        if (failed > 0)
          throw new Emu2Error(
            `${failed} of ${todo.length} image${todo.length === 1 ? "" : "s"} could not be captioned (see above)`,
          );
      } finally {
        lock?.release();
      }
    },
  );
}
