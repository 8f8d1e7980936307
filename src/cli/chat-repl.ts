// Interactive chat on a terminal: streamed replies, history with images and videos, slash commands, and Ctrl-C that stops the
// reply in progress rather than the session. A ChatSession holds the state of one session; the slash commands are
// one table, and /help is written from it.
import { existsSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface, type Interface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { conversationToYaml } from "../prompt/serialize.js";
import type { Conversation, Part } from "../prompt/types.js";
import { errorMessage } from "../util/errors.js";
import { loadImage } from "../vision/image.js";
import { probeVideo } from "../vision/video.js";
import { EXIT_INTERRUPTED, EXIT_OK } from "./exit-codes.js";

export interface ChatEngine {
  /** Answers the conversation's last user message, streaming text through onText; stops early when signal aborts. */
  reply(conversation: Conversation, onText: (delta: string) => void, signal: AbortSignal): Promise<string>;
}

export interface ReplStreams {
  input: Readable;
  /** Replies. */
  output: Writable;
  /** The prompt marker, notices and errors. */
  messages: Writable;
}

interface ReplCommand {
  usage: string;
  help: string;
  run(session: ChatSession, arg: string): void | Promise<void>;
}

const COMMANDS: Record<string, ReplCommand> = {
  "/image": {
    usage: "/image <path>",
    help: "attach an image to your next message",
    run: (s, arg) => s.attachImage(arg),
  },
  "/video": {
    usage: "/video <path>",
    help: "attach a video (frames folder, GIF, WebP, mp4/webm/mov) to your next message",
    run: (s, arg) => s.attachVideo(arg),
  },
  "/reset": { usage: "/reset", help: "forget the conversation", run: (s) => s.reset() },
  "/save": {
    usage: "/save <file>",
    help: "write the conversation as a YAML prompt (replay with emu2 chat -f <file>)",
    run: (s, arg) => s.save(arg),
  },
  "/help": { usage: "/help", help: "this list", run: (s) => s.say(helpText()) },
  "/exit": {
    usage: "/exit",
    help: "leave (Ctrl-D too); Ctrl-C stops a reply in progress",
    run: (s) => s.close(EXIT_OK),
  },
};
const ALIASES: Record<string, string> = { "/quit": "/exit" };

function helpText(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length)) + 3;
  return [
    "Type a message and press Enter. Commands:",
    ...Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}${c.help}`),
  ].join("\n");
}

class ChatSession {
  private readonly conversation: Conversation;
  private pendingMedia: Part[] = [];
  private replying: AbortController | undefined;
  private interruptsAtPrompt = 0;
  private closed = false;
  private exitCode = EXIT_OK;
  private readonly rl: Interface;

  constructor(
    private readonly engine: ChatEngine,
    private readonly streams: ReplStreams,
    start: Conversation,
  ) {
    this.conversation = { ...start, messages: [...start.messages] };
    this.rl = createInterface({
      input: streams.input,
      output: streams.messages,
      terminal: (streams.input as { isTTY?: boolean }).isTTY === true,
      prompt: "> ",
    });
  }

  say(text: string): void {
    this.streams.messages.write(`${text}\n`);
  }

  close(code: number): void {
    this.exitCode = code;
    this.rl.close();
  }

  reset(): void {
    this.conversation.messages = [];
    this.pendingMedia = [];
    this.say("(conversation cleared)");
  }

  async attachImage(arg: string): Promise<void> {
    if (!arg) return this.say("/image: give an image path");
    const path = resolve(arg);
    if (!existsSync(path) || !statSync(path).isFile()) return this.say(`/image: ${arg}: no such file`);
    // Decoded now, so a file that is not an image is refused here and not after the next message is typed.
    try {
      await loadImage(path);
    } catch (err) {
      return this.say(`/image: ${errorMessage(err).replace(path, arg)}`);
    }
    this.pendingMedia.push({ kind: "image", image: { path } });
    this.say(`(${arg} will go with your next message)`);
  }

  async attachVideo(arg: string): Promise<void> {
    if (!arg) return this.say("/video: give a video path (a folder of frames, a GIF, a WebP or a video file)");
    const path = resolve(arg);
    // Probed now, so what is not a video is refused here and not after the next message is typed.
    try {
      await probeVideo(path);
    } catch (err) {
      return this.say(`/video: ${errorMessage(err).replace(path, arg)}`);
    }
    this.pendingMedia.push({ kind: "video", video: { path } });
    this.say(`(${arg} will go with your next message)`);
  }

  save(arg: string): void {
    if (!arg) return this.say("/save: give a file name, e.g. /save chat.yaml");
    try {
      writeFileSync(arg, conversationToYaml(this.conversation, arg));
      this.say(`(saved ${this.conversation.messages.length} messages to ${arg})`);
    } catch (err) {
      this.say(`/save: ${arg}: ${errorMessage(err)}`);
    }
  }

  private async answer(text: string): Promise<void> {
    this.conversation.messages.push({ role: "user", parts: [...this.pendingMedia, { kind: "text", text }] });
    this.pendingMedia = [];
    const replying = new AbortController();
    this.replying = replying;
    let reply = "";
    try {
      reply = await this.engine.reply(
        this.conversation,
        (delta) => {
          reply += delta;
          this.streams.output.write(delta);
        },
        replying.signal,
      );
    } catch (err) {
      this.say(`\nemu2: ${errorMessage(err)}`);
      // The failed turn is dropped so the conversation stays one a later reply can continue.
      this.conversation.messages.pop();
      return;
    } finally {
      this.replying = undefined;
      if (replying.signal.aborted) this.say("\n(reply stopped)");
    }
    this.streams.output.write("\n");
    this.conversation.messages.push({ role: "assistant", parts: [{ kind: "text", text: reply.trim() }] });
  }

  private async handleLine(line: string): Promise<void> {
    if (line.length === 0) return;
    if (!line.startsWith("/")) return this.answer(line);
    const name = line.split(/\s+/, 1)[0];
    const command = COMMANDS[ALIASES[name] ?? name];
    if (!command) return this.say(`unknown command ${name}; /help lists them`);
    await command.run(this, line.slice(name.length).trim());
  }

  /** Ctrl-C stops a reply in progress; at the prompt it clears the line, and a second one in a row leaves. */
  private onInterrupt(): void {
    if (this.replying) {
      this.replying.abort();
      return;
    }
    this.interruptsAtPrompt++;
    if (this.interruptsAtPrompt >= 2) return this.close(EXIT_INTERRUPTED);
    this.rl.write(null, { ctrl: true, name: "u" });
    this.say("\n(Ctrl-C again or /exit to leave)");
    this.rl.prompt();
  }

  /** Runs until /exit, end of input, or two Ctrl-C in a row at the prompt; returns the exit code. */
  run(): Promise<number> {
    this.say("emu2 chat: /help for commands, /exit to leave.");
    return new Promise<number>((finish) => {
      let queue = Promise.resolve();
      this.rl.on("SIGINT", () => this.onInterrupt());
      this.rl.on("close", () => {
        this.closed = true;
        this.replying?.abort();
        // Whatever is in flight (a reply being stopped, a /save) ends before the session does.
        void queue.then(() => finish(this.exitCode));
      });
      this.rl.on("line", (raw) => {
        this.interruptsAtPrompt = 0;
        // Lines typed while a reply streams wait their turn instead of interleaving with it.
        queue = queue.then(async () => {
          if (this.closed) return;
          await this.handleLine(raw.trim());
          if (!this.closed) this.rl.prompt();
        });
      });
      this.rl.prompt();
    });
  }
}

export function runChatRepl(engine: ChatEngine, streams: ReplStreams, start: Conversation): Promise<number> {
  return new ChatSession(engine, streams, start).run();
}
