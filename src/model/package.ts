// A model package on disk: its validated manifest, its tokenizer file and its graphs, whose sessions are created on
// first use and then kept (re-creating sessions leaks memory in onnxruntime-node, runtime-facts.md).
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { PackageError, UsageError } from "../util/errors.js";
import { readManifest, type Manifest } from "./manifest.js";
import type { Session } from "./ort.js";
import { createSession, DEFAULT_SESSION_OPTIONS, type Placement, type SessionOptions } from "./session.js";

export type GraphRole =
  | "visual_encoder"
  | "embed_tokens"
  | "project_up"
  | "decoder"
  | `decoder_part${number}`
  | "lm_head"
  | "project_down"
  | "unet"
  | "vae_decoder";

/** The decoder graphs in layer order: the one decoder, or the parts of a split one. */
export function decoderRoles(manifest: Manifest): GraphRole[] {
  return manifest.llm.decoder_parts ? manifest.llm.decoder_parts.map((_, k) => `decoder_part${k}` as const) : ["decoder"];
}

/** The graph a --device-map key places: `partN` is decoder part N, any other key a graph role. */
function deviceMapRole(manifest: Manifest, key: string): GraphRole {
  const part = /^part(\d+)$/.exec(key);
  const roles = Object.keys(graphFiles(manifest));
  if (part) {
    const parts = manifest.llm.decoder_parts;
    if (!parts) throw new UsageError(`--device-map ${key}: this package's decoder is not split into parts (export it with --decoder-parts N)`);
    if (Number(part[1]) >= parts.length) throw new UsageError(`--device-map ${key}: the package has ${parts.length} decoder parts (${parts.map((_, k) => `part${k}`).join(", ")})`);
    return `decoder_part${Number(part[1])}`;
  }
  if (!roles.includes(key)) throw new UsageError(`--device-map ${key}: no such graph (expected part0, part1, ... or one of ${roles.filter((r) => !r.startsWith("decoder_part")).join(", ")})`);
  return key as GraphRole;
}

export const MANIFEST_FILE = "manifest.yaml";

export function graphFiles(manifest: Manifest): Partial<Record<GraphRole, string>> {
  const files: Partial<Record<GraphRole, string>> = {
    visual_encoder: manifest.vision.file,
    embed_tokens: manifest.llm.embed_tokens_file,
    project_up: manifest.llm.project_up_file,
    lm_head: manifest.llm.lm_head_file,
    project_down: manifest.llm.project_down_file,
  };
  if (manifest.llm.decoder_file) files.decoder = manifest.llm.decoder_file;
  manifest.llm.decoder_parts?.forEach((part, k) => (files[`decoder_part${k}`] = part.file));
  if (manifest.visual_decoder) {
    files.unet = manifest.visual_decoder.unet_file;
    files.vae_decoder = manifest.visual_decoder.vae_decoder_file;
  }
  return files;
}

export interface FileReport { role: string; file: string; bytes: number; externalDataBytes: number }

export class ModelPackage {
  private readonly sessions = new Map<GraphRole, Promise<Session>>();
  private readonly placements = new Map<GraphRole, Placement>();
  private fellBackToCpu = false;

  private constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    private readonly sessionOptions: SessionOptions,
  ) {}

  /** Loads and validates a package folder; every file the manifest names must exist. */
  static open(dir: string, sessionOptions: Partial<SessionOptions> = {}): ModelPackage {
    const folder = resolve(dir);
    if (!existsSync(folder)) throw new PackageError(`${dir}: no such model package folder`);
    if (!statSync(folder).isDirectory()) throw new PackageError(`${dir}: a model package is a folder, not a file`);
    // Messages name the manifest as the user wrote the folder, not as an absolute path.
    const manifest = readManifest(join(dir, MANIFEST_FILE));
    const pkg = new ModelPackage(folder, manifest, { ...DEFAULT_SESSION_OPTIONS, ...sessionOptions });
    for (const [key, placement] of Object.entries(sessionOptions.deviceMap ?? {})) pkg.placements.set(deviceMapRole(manifest, key), placement);
    for (const { role, file } of pkg.files()) {
      if (!existsSync(join(folder, file))) {
        throw new PackageError(`${join(dir, MANIFEST_FILE)}: ${role} file ${file} is missing from the package`);
      }
    }
    return pkg;
  }

  get name(): string {
    return this.manifest.name;
  }

  get canGenerateImages(): boolean {
    return this.manifest.visual_decoder !== undefined;
  }

  path(file: string): string {
    return join(this.dir, file);
  }

  files(): { role: string; file: string }[] {
    const list = [{ role: "tokenizer", file: this.manifest.tokenizer.file }];
    for (const [role, file] of Object.entries(graphFiles(this.manifest))) if (file) list.push({ role, file });
    return list;
  }

  fileReport(): FileReport[] {
    return this.files().map(({ role, file }) => {
      const data = this.path(`${file}_data`);
      return {
        role,
        file,
        bytes: statSync(this.path(file)).size,
        externalDataBytes: existsSync(data) ? statSync(data).size : 0,
      };
    });
  }

  /** The session of one graph, created on first use. */
  session(role: GraphRole): Promise<Session> {
    let session = this.sessions.get(role);
    if (!session) {
      const file = graphFiles(this.manifest)[role];
      if (!file) {
        const why = role === "unet" || role === "vae_decoder" ? "it has no visual decoder" : role === "decoder" ? "its decoder is split into parts" : "no such graph";
        throw new PackageError(`${this.dir}: package ${this.name} has no ${role} graph (${why})`);
      }
      const placement = this.placements.get(role) ?? this.sessionOptions;
      session = createSession(this.path(file), {
        ...this.sessionOptions,
        deviceId: placement.deviceId,
        // Once CUDA has failed, every later graph goes to the CPU directly, and the user hears about it once.
        device: this.fellBackToCpu ? "cpu" : placement.device,
        onFallback: (reason) => {
          if (!this.fellBackToCpu) this.sessionOptions.onFallback?.(reason);
          this.fellBackToCpu = true;
        },
      });
      // A failed creation must not be cached: the next call reports the same error instead of a stale rejection.
      session.catch(() => this.sessions.delete(role));
      this.sessions.set(role, session);
    }
    return session;
  }

  async release(): Promise<void> {
    const open = [...this.sessions.values()];
    this.sessions.clear();
    for (const session of open) {
      try {
        await (await session).release();
      } catch {
        // A session whose creation failed has nothing to release.
      }
    }
  }
}
