// emu2 prompt: shows what a prompt becomes for a package - the text with placeholders, the token ids, the images.
import { isAbsolute, relative } from "node:path";
import type { Command } from "commander";
import { Emu2 } from "../emu2.js";
import type { Manifest } from "../model/manifest.js";
import { encodePrompt, type EncodedPrompt } from "../prompt/encode.js";
import { FRAME_TOKEN, IMAGE_TOKEN } from "../prompt/tokens.js";
import { renderPrompt, templateTokens, type ImageSlot, type TemplateName } from "../prompt/render.js";
import { describeSource } from "../prompt/types.js";
import { UsageError } from "../util/errors.js";
import { describeFrame, type SampledVideo } from "../vision/video.js";
import { makeReporter, writeJson } from "./io.js";
import {
  addChatTemplateOptions,
  addPromptSourceOptions,
  readPromptInput,
  type ChatTemplateFlags,
  type PromptSourceFlags,
} from "./prompt-options.js";
import { addModelOptions, openModel, type ModelOptions } from "./model-option.js";
import { addVideoOptions, parseFrames, type VideoFlags } from "./video-options.js";

interface PromptFlags extends ModelOptions, PromptSourceFlags, ChatTemplateFlags, VideoFlags {
  template?: TemplateName;
  json?: boolean;
  quiet?: boolean;
}

/** A path under the current folder is shown relative to it, as the user would type it. */
function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : path;
}

export function describeSlot(slot: ImageSlot): string {
  if (slot.kind === "box-mask") return `box mask [${slot.box.join(", ")}]`;
  return "path" in slot.image ? shownPath(slot.image.path) : describeSource(slot.image);
}

/**
 * Where each image and video frame sits in the ids: the position of its [IMG] and how many feature rows follow
 * (<image> rows for an image, [gIMG] rows for a frame), in order.
 */
export function visualSpans(
  encoded: EncodedPrompt,
  manifest: Manifest,
): { kind: "image" | "video-frame"; start: number; rows: number }[] {
  const tokens = manifest.tokenizer.special_tokens;
  const spans: { kind: "image" | "video-frame"; start: number; rows: number }[] = [];
  encoded.ids.forEach((id, i) => {
    if (id !== tokens["[IMG]"]) return;
    const next = encoded.ids[i + 1];
    const kind = next === tokens[IMAGE_TOKEN] ? "image" : next === tokens[FRAME_TOKEN] ? "video-frame" : undefined;
    if (kind === undefined) return;
    let rows = 0;
    while (encoded.ids[i + 1 + rows] === next) rows++;
    spans.push({ kind, start: i, rows });
  });
  return spans;
}

function describeVideo(video: SampledVideo): string {
  const length = video.timed ? `${video.duration.toFixed(3)}s` : "untimed";
  return `${shownPath(video.path)} (${video.format}, ${video.totalFrames} frames, ${length}): ${video.frames.map((f) => describeFrame(video, f)).join(", ")}`;
}

export function registerPrompt(program: Command): void {
  const command = program
    .command("prompt")
    .description("show what a prompt becomes: text with placeholders, token ids and image slots")
    .option("--template <name>", "base, chat or gen (default: the package's)")
    .option("--json", "print JSON")
    .option("-q, --quiet", "no notices on stderr");
  addModelOptions(addChatTemplateOptions(addVideoOptions(addPromptSourceOptions(command), ""))).action(
    async (flags: PromptFlags) => {
      const reporter = makeReporter(flags);
      const frames = parseFrames(flags);
      const pkg = openModel(flags, reporter);
      const template = flags.template ?? pkg.manifest.prompt.template;
      if (!["base", "chat", "gen"].includes(template))
        throw new UsageError(`--template: expected base, chat or gen, got ${JSON.stringify(template)}`);
      let input = readPromptInput(flags);
      if (flags.grounding) {
        input =
          input.kind === "conversation"
            ? { kind: "conversation", conversation: { ...input.conversation, grounding: true } }
            : {
                kind: "conversation",
                conversation: { grounding: true, messages: [{ role: "user", parts: input.parts }] },
              };
      }
      const model = new Emu2(pkg);
      const videos = await model.sampleVideos(input, { frames, onNotice: (m) => reporter.notice(m) });
      const sampled = (path: string) => (videos.get(path) as { sampled: SampledVideo }).sampled;
      const rendered = renderPrompt(
        input,
        template,
        templateTokens(pkg.manifest, {
          system: flags.system,
          shortAnswers: flags.short,
          videoFrames: (video) => sampled(video.path).frames.length,
        }),
      );
      const encoded = encodePrompt(rendered, model.tokenizer(), pkg.manifest);
      const images = encoded.images.map((slot, index) => ({ index, kind: slot.kind, source: describeSlot(slot) }));
      const videoList = encoded.videos.map((slot, index) => ({ index, ...sampled(slot.video.path) }));
      if (flags.json) {
        writeJson({
          model: pkg.name,
          template,
          text: encoded.text,
          ids: encoded.ids,
          tokens: encoded.ids.length,
          nQuery: encoded.nQuery,
          ...(encoded.videoNQuery !== undefined ? { videoNQuery: encoded.videoNQuery } : {}),
          images,
          videos: videoList,
          spans: visualSpans(encoded, pkg.manifest),
        });
        return;
      }
      const frameCount = videoList.reduce((n, v) => n + v.frames.length, 0);
      const videoTokens =
        videoList.length > 0
          ? `, ${videoList.length} video${videoList.length === 1 ? "" : "s"}: ${frameCount} frame${frameCount === 1 ? "" : "s"} x ${(encoded.videoNQuery as number) + 2} + [VIDEO]`
          : "";
      const lines = [
        `template  ${template} (${pkg.name})`,
        `text      ${JSON.stringify(encoded.text)}`,
        `tokens    ${encoded.ids.length} (${images.length} image${images.length === 1 ? "" : "s"} x ${encoded.nQuery + 2}${videoTokens})`,
        `ids       ${encoded.ids.join(" ")}`,
        ...images.map((img) => `image ${img.index}   ${img.source}`),
        ...videoList.map((v) => `video ${v.index}   ${describeVideo(v)}`),
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    },
  );
}
