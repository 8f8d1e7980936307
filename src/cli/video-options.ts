// --video and --frames, shared by chat, prompt and caption.
import type { Command } from "commander";
import { DEFAULT_VIDEO_FRAMES, VIDEO_FORMATS_HELP } from "../vision/video.js";
import { wholeNumber, wholeNumberFlag } from "./flags.js";
import { collect } from "./io.js";

export interface VideoFlags {
  video?: string[];
  frames: string;
}

export function addVideoOptions(command: Command, what = "for the message"): Command {
  return command
    .option(
      "--video <path>",
      `video ${what} (repeatable; <video> in the text places it): ${VIDEO_FORMATS_HELP}`,
      collect,
    )
    .option(
      "--frames <n>",
      "frames sampled uniformly over each video's duration",
      wholeNumberFlag("--frames", { min: 1 }),
      String(DEFAULT_VIDEO_FRAMES),
    );
}

export function parseFrames(flags: VideoFlags): number {
  return wholeNumber("--frames", flags.frames, { min: 1 });
}
