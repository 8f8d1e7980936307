// Prompt sources: the command line (-p text, --image), text files, stdin, and the YAML prompt format
// (docs/prompt-format.md). Image paths in a YAML file resolve relative to that file.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isMap, isSeq, type Node } from "yaml";
import { PromptError } from "../util/errors.js";
import { readYamlDocument, type YamlDocument } from "../util/yaml.js";
import { IMAGE_PLACEHOLDER, IMAGE_TOKEN } from "./tokens.js";
import type { Box, Conversation, ImageSource, Message, Part, PromptInput } from "./types.js";

/** Placeholders a user may write in -p text or a text file to say where each --image goes. */
export const USER_IMAGE_MARKERS = [IMAGE_PLACEHOLDER, IMAGE_TOKEN];
/** ... and where each --video goes. */
export const USER_VIDEO_MARKERS = ["[<VID_PLH>]", "<video>"];

function markerPattern(markers: string[]): string {
  return markers.map((m) => m.replace(/[[\]<>/]/g, "\\$&")).join("|");
}

/**
 * -p text with --image and --video files. Each fills the markers of its kind in the text, in order; media whose kind
 * has no marker in the text come first (images, then videos), as in the official examples (`[image] Describe the
 * image in details:`, `[VIDEO] frames [/VIDEO] What happened in the video?`).
 */
export function sequenceFromText(
  text: string,
  imagePaths: string[],
  cwd = process.cwd(),
  videoPaths: string[] = [],
): Part[] {
  const media = {
    image: imagePaths.map((p): Part => ({ kind: "image", image: { path: resolve(cwd, p) } })),
    video: videoPaths.map((p): Part => ({ kind: "video", video: { path: resolve(cwd, p) } })),
  };
  const imageMarker = new RegExp(`^(?:${markerPattern(USER_IMAGE_MARKERS)})$`);
  const pieces = text.split(new RegExp(`(${markerPattern([...USER_IMAGE_MARKERS, ...USER_VIDEO_MARKERS])})`, "g"));
  const markers = { image: 0, video: 0 };
  for (let i = 1; i < pieces.length; i += 2) markers[imageMarker.test(pieces[i]) ? "image" : "video"]++;
  for (const kind of ["image", "video"] as const) {
    if (markers[kind] > 0 && markers[kind] !== media[kind].length) {
      const n = media[kind].length;
      throw new PromptError(
        `the prompt has ${markers[kind]} ${kind} placeholder${markers[kind] === 1 ? "" : "s"} but ${n} ${kind}${n === 1 ? " was" : "s were"} given with --${kind}`,
      );
    }
  }
  const parts: Part[] = [...(markers.image === 0 ? media.image : []), ...(markers.video === 0 ? media.video : [])];
  const next = { image: 0, video: 0 };
  pieces.forEach((piece, i) => {
    if (i % 2 === 0) {
      if (piece.length > 0) parts.push({ kind: "text", text: piece });
    } else {
      const kind = imageMarker.test(piece) ? "image" : "video";
      parts.push(media[kind][next[kind]++]);
    }
  });
  return parts;
}

class YamlPromptReader {
  private readonly yaml: YamlDocument;
  private readonly root: Node | null;

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly baseDir: string,
  ) {
    this.yaml = readYamlDocument(text, file, (message) => new PromptError(message));
    this.root = this.yaml.doc.contents as Node | null;
  }

  private fail(node: unknown, field: string, expected: string): never {
    const where = this.yaml.where(node);
    throw new PromptError(`${this.file}: ${where ? `${where}: ` : ""}${field}: expected ${expected}`);
  }

  private scalarString(node: unknown, field: string): string {
    const value = (node as { value?: unknown } | null)?.value;
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    return this.fail(node, field, "text");
  }

  private imagePath(node: unknown, field: string): ImageSource {
    const path = this.scalarString(node, field);
    if (path.length === 0) this.fail(node, field, "an image path");
    return { path: resolve(this.baseDir, path) };
  }

  private videoPath(node: unknown, field: string): { path: string } {
    const path = this.scalarString(node, field);
    if (path.length === 0) this.fail(node, field, "a video path (a folder of frames, a GIF, a WebP or a video file)");
    return { path: resolve(this.baseDir, path) };
  }

  private box(node: unknown, field: string): Box {
    const items = isSeq(node) ? node.items.map((n) => (n as { value?: unknown }).value) : [];
    if (items.length !== 4 || !items.every((v) => typeof v === "number" && Number.isFinite(v))) {
      this.fail(node, field, "a box of 4 numbers [left, top, right, bottom]");
    }
    return items as Box;
  }

  private part(node: unknown, field: string): Part {
    if (!isMap(node)) return { kind: "text", text: this.scalarString(node, field) };
    const keys = node.items.map((pair) => String((pair.key as { value?: unknown }).value));
    const get = (key: string) => node.items.find((pair) => (pair.key as { value?: unknown }).value === key)?.value;
    if (keys.length === 1 && keys[0] === "text")
      return { kind: "text", text: this.scalarString(get("text"), `${field}.text`) };
    if (keys.length === 1 && keys[0] === "image")
      return { kind: "image", image: this.imagePath(get("image"), `${field}.image`) };
    if (keys.length === 1 && keys[0] === "video")
      return { kind: "video", video: this.videoPath(get("video"), `${field}.video`) };
    if (keys.includes("box") && keys.every((k) => ["phrase", "box", "image"].includes(k))) {
      const part: Part = { kind: "object", box: this.box(get("box"), `${field}.box`) };
      if (keys.includes("phrase")) part.phrase = this.scalarString(get("phrase"), `${field}.phrase`);
      if (keys.includes("image")) part.image = this.imagePath(get("image"), `${field}.image`);
      return part;
    }
    return this.fail(
      node,
      field,
      "text, {text: ...}, {image: path}, {video: path} or {phrase: ..., box: [l, t, r, b], image: path}",
    );
  }

  private parts(node: unknown, field: string): Part[] {
    if (isSeq(node)) return node.items.map((item, i) => this.part(item, `${field}[${i}]`));
    return [this.part(node, field)];
  }

  private message(node: unknown, field: string): Message {
    if (!isMap(node) || node.items.length !== 1) this.fail(node, field, "one of {user: ...} or {assistant: ...}");
    const pair = node.items[0];
    const role = String((pair.key as { value?: unknown }).value);
    if (role !== "user" && role !== "assistant") this.fail(pair.key, field, `user or assistant, not ${role}`);
    return { role, parts: this.parts(pair.value, `${field}.${role}`) };
  }

  read(): PromptInput {
    const root = this.root;
    if (isSeq(root)) return { kind: "sequence", parts: this.parts(root, "prompt") };
    if (!isMap(root)) this.fail(root, "(top level)", "a mapping with prompt: or messages:, or a list of parts");
    const get = (key: string) => root.items.find((pair) => (pair.key as { value?: unknown }).value === key)?.value;
    const allowed = ["prompt", "messages", "system", "grounding"];
    for (const pair of root.items) {
      const key = String((pair.key as { value?: unknown }).value);
      if (!allowed.includes(key)) this.fail(pair.key, key, `one of ${allowed.join(", ")}`);
    }
    const hasPrompt = get("prompt") !== undefined;
    const hasMessages = get("messages") !== undefined;
    if (hasPrompt === hasMessages) this.fail(root, "(top level)", "exactly one of prompt: or messages:");
    if (hasPrompt) {
      if (get("system") !== undefined || get("grounding") !== undefined) {
        this.fail(root, "system/grounding", "these only with messages: (a conversation)");
      }
      return { kind: "sequence", parts: this.parts(get("prompt"), "prompt") };
    }
    const messagesNode = get("messages");
    if (!isSeq(messagesNode) || messagesNode.items.length === 0)
      this.fail(messagesNode, "messages", "a non-empty list");
    const conversation: Conversation = {
      messages: messagesNode.items.map((item, i) => this.message(item, `messages[${i}]`)),
    };
    const system = get("system");
    if (system !== undefined) conversation.system = this.scalarString(system, "system");
    const grounding = get("grounding");
    if (grounding !== undefined) {
      const value = (grounding as { value?: unknown }).value;
      if (typeof value !== "boolean") this.fail(grounding, "grounding", "true or false");
      conversation.grounding = value;
    }
    return { kind: "conversation", conversation };
  }
}

/** Parses the YAML prompt format; `file` names the source in errors, `baseDir` anchors relative image paths. */
export function parsePromptYaml(text: string, file: string, baseDir: string): PromptInput {
  return new YamlPromptReader(text, file, baseDir).read();
}

const YAML_TOP_KEY = /^(prompt|messages|system|grounding)\s*:/m;

/** Whether text read from a file of unknown kind (stdin, .txt) is the YAML prompt format rather than plain text. */
export function looksLikePromptYaml(text: string): boolean {
  return YAML_TOP_KEY.test(text.replace(/^(#.*|\s*)\n/gm, "").split("\n", 1)[0] ?? "");
}

export function readTextSource(file: string): string {
  try {
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const what = file === "-" ? "standard input" : file;
    throw new PromptError(
      code === "ENOENT"
        ? `${what}: no such file`
        : code === "EISDIR"
          ? `${what}: is a directory, not a prompt file`
          : `${what}: cannot read (${code})`,
    );
  }
}

/**
 * A prompt file (or `-` for stdin): YAML (by extension, or by its first key) or plain text whose image and video
 * markers are filled by `imagePaths` and `videoPaths`.
 */
export function promptFromFile(file: string, imagePaths: string[] = [], videoPaths: string[] = []): PromptInput {
  const text = readTextSource(file);
  const isYaml = /\.ya?ml$/i.test(file) || looksLikePromptYaml(text);
  if (isYaml) {
    if (imagePaths.length > 0)
      throw new PromptError(`--image cannot be combined with a YAML prompt (${file}): list the images in the file`);
    if (videoPaths.length > 0)
      throw new PromptError(`--video cannot be combined with a YAML prompt (${file}): list the videos in the file`);
    const name = file === "-" ? "<stdin>" : file;
    return parsePromptYaml(text, name, file === "-" ? process.cwd() : dirname(resolve(file)));
  }
  return { kind: "sequence", parts: sequenceFromText(text.replace(/\n+$/, ""), imagePaths, process.cwd(), videoPaths) };
}
