// Interactive chat on a terminal: streamed replies, history with images and videos, slash commands, and Ctrl-C that stops the
// reply in progress rather than the session.
import { existsSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { conversationToYaml } from "../prompt/serialize.js";
import type { Conversation, Part } from "../prompt/types.js";
import { errorMessage } from "../util/errors.js";
import { EXIT_INTERRUPTED } from "./exit-codes.js";
import { loadImage } from "../vision/image.js";
import { probeVideo } from "../vision/video.js";

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

const HELP = [
  "Type a message and press Enter. Commands:",
  "  /image <path>   attach an image to your next message",
  "  /video <path>   attach a video (frames folder, GIF, WebP, mp4/webm/mov) to your next message",
  "  /reset          forget the conversation",
  "  /save <file>    write the conversation as a YAML prompt (replay with emu2 chat -f <file>)",
  "  /exit           leave (Ctrl-D too); Ctrl-C stops a reply in progress",
].join("\n");

/** Runs until /exit, end of input, or two Ctrl-C in a row at the prompt; returns the exit code. */
export async function runChatRepl(engine: ChatEngine, streams: ReplStreams, start: Conversation): Promise<number> {
  const conversation: Conversation = { ...start, messages: [...start.messages] };
  let pendingMedia: Part[] = [];
  let replying: AbortController | undefined;
  let interruptsAtPrompt = 0;
  const say = (text: string) => streams.messages.write(`${text}\n`);

  const rl = createInterface({ input: streams.input, output: streams.messages, terminal: (streams.input as { isTTY?: boolean }).isTTY === true, prompt: "> " });
  say("emu2 chat: /help for commands, /exit to leave.");

  return await new Promise<number>((finish) => {
    let closedCode = 0;
    let closed = false;
    let queue = Promise.resolve();
    rl.on("SIGINT", () => {
      if (replying) {
        replying.abort();
        return;
      }
      interruptsAtPrompt++;
      if (interruptsAtPrompt >= 2) {
        closedCode = EXIT_INTERRUPTED;
        rl.close();
        return;
      }
      rl.write(null, { ctrl: true, name: "u" });
      say("\n(Ctrl-C again or /exit to leave)");
      rl.prompt();
    });
    rl.on("close", () => {
      closed = true;
      replying?.abort();
      // Whatever is in flight (a reply being stopped, a /save) ends before the session does.
      void queue.then(() => finish(closedCode));
    });

    const handleCommand = async (line: string): Promise<boolean> => {
      const command = line.split(/\s+/, 1)[0];
      const arg = line.slice(command.length).trim();
      switch (command) {
        case "/help":
          say(HELP);
          return true;
        case "/exit":
        case "/quit":
          rl.close();
          return true;
        case "/reset":
          conversation.messages = [];
          pendingMedia = [];
          say("(conversation cleared)");
          return true;
        case "/image": {
          if (!arg) {
            say("/image: give an image path");
            return true;
          }
          const path = resolve(arg);
          if (!existsSync(path) || !statSync(path).isFile()) {
            say(`/image: ${arg}: no such file`);
            return true;
          }
          // Decoded now, so a file that is not an image is refused here and not after the next message is typed.
          try {
            await loadImage(path);
          } catch (err) {
            say(`/image: ${errorMessage(err).replace(path, arg)}`);
            return true;
          }
          pendingMedia.push({ kind: "image", image: { path } });
          say(`(${arg} will go with your next message)`);
          return true;
        }
        case "/video": {
          if (!arg) {
            say("/video: give a video path (a folder of frames, a GIF, a WebP or a video file)");
            return true;
          }
          const path = resolve(arg);
          // Probed now, so what is not a video is refused here and not after the next message is typed.
          try {
            await probeVideo(path);
          } catch (err) {
            say(`/video: ${errorMessage(err).replace(path, arg)}`);
            return true;
          }
          pendingMedia.push({ kind: "video", video: { path } });
          say(`(${arg} will go with your next message)`);
          return true;
        }
        case "/save": {
          if (!arg) {
            say("/save: give a file name, e.g. /save chat.yaml");
            return true;
          }
          try {
            writeFileSync(arg, conversationToYaml(conversation, arg));
            say(`(saved ${conversation.messages.length} messages to ${arg})`);
          } catch (err) {
            say(`/save: ${arg}: ${errorMessage(err)}`);
          }
          return true;
        }
        default:
          say(`unknown command ${command}; /help lists them`);
          return true;
      }
    };

    const answer = async (text: string) => {
      conversation.messages.push({ role: "user", parts: [...pendingMedia, { kind: "text", text }] });
      pendingMedia = [];
      replying = new AbortController();
      let reply = "";
      try {
        reply = await engine.reply(conversation, (delta) => {
          reply += delta;
          streams.output.write(delta);
        }, replying.signal);
      } catch (err) {
        say(`\nemu2: ${errorMessage(err)}`);
        // The failed turn is dropped so the conversation stays one a later reply can continue.
        conversation.messages.pop();
        return;
      } finally {
        const stopped = replying?.signal.aborted;
        replying = undefined;
        if (stopped) say("\n(reply stopped)");
      }
      streams.output.write("\n");
      conversation.messages.push({ role: "assistant", parts: [{ kind: "text", text: reply.trim() }] });
    };

    rl.on("line", (raw) => {
      interruptsAtPrompt = 0;
      // Lines typed while a reply streams wait their turn instead of interleaving with it.
      queue = queue.then(async () => {
        const line = raw.trim();
        if (closed) return;
        if (line.length > 0 && !(line.startsWith("/") && (await handleCommand(line)))) await answer(line);
        if (!closed) rl.prompt();
      });
    });
    rl.prompt();
  });
}
