// A model package on disk: its validated manifest, its tokenizer file and its graphs, whose sessions are created on
// first use and then kept (re-creating sessions leaks memory in onnxruntime-node).
import { existsSync, realpathSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { PackageError, UsageError } from "../util/errors.js";
import { isInside } from "../util/paths.js";
import { readManifest, type Manifest } from "./manifest.js";
import { OnnxFileError, readOnnxSummary } from "./onnx-file.js";
import { LookupTable } from "./lookup-table.js";
import type { Session } from "./ort.js";
import {
  createSession,
  DEFAULT_SESSION_OPTIONS,
  selectWebGpuAdapter,
  type Device,
  type GraphOptions,
  type Placement,
  type SessionOptions,
} from "./session.js";
import { webGpuRunsFloat16 } from "./webgpu.js";

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
  return manifest.llm.decoder_parts
    ? manifest.llm.decoder_parts.map((_, k) => `decoder_part${k}` as const)
    : ["decoder"];
}

/** The graph a --device-map key places: `partN` is decoder part N, any other key a graph role. */
function deviceMapRole(manifest: Manifest, key: string): GraphRole {
  const part = /^part(\d+)$/.exec(key);
  const roles = Object.keys(graphFiles(manifest));
  if (part) {
    const parts = manifest.llm.decoder_parts;
    if (!parts)
      throw new UsageError(
        `--device-map ${key}: this package's decoder is not split into parts (export it with --decoder-parts N)`,
      );
    if (Number(part[1]) >= parts.length)
      throw new UsageError(
        `--device-map ${key}: the package has ${parts.length} decoder parts (${parts.map((_, k) => `part${k}`).join(", ")})`,
      );
    return `decoder_part${Number(part[1])}`;
  }
  if (!roles.includes(key))
    throw new UsageError(
      `--device-map ${key}: no such graph (expected part0, part1, ... or one of ${roles.filter((r) => !r.startsWith("decoder_part")).join(", ")})`,
    );
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

/** The manifest field that names each file, for messages. */
const MANIFEST_FIELDS: Record<string, string> = {
  tokenizer: "tokenizer.file",
  visual_encoder: "vision.file",
  embed_tokens: "llm.embed_tokens_file",
  project_up: "llm.project_up_file",
  decoder: "llm.decoder_file",
  lm_head: "llm.lm_head_file",
  project_down: "llm.project_down_file",
  unet: "visual_decoder.unet_file",
  vae_decoder: "visual_decoder.vae_decoder_file",
};

export function manifestField(role: string): string {
  const part = /^decoder_part(\d+)$/.exec(role);
  return part ? `llm.decoder_parts.${part[1]}.file` : (MANIFEST_FIELDS[role] ?? role);
}

/** The inputs the runtime feeds and the outputs it reads, by graph (docs/package-format.md, "Graph inputs and outputs"). */
export function graphInterface(
  manifest: Manifest,
  role: GraphRole,
): { inputs: string[]; outputs: string[]; formerOutputs?: string[] } {
  // A decoder part carries the past of its own layers, named by their index in the whole decoder.
  const part = /^decoder_part(\d+)$/.exec(role);
  const parts = manifest.llm.decoder_parts ?? [];
  const first = part ? parts.slice(0, Number(part[1])).reduce((n, p) => n + p.layers, 0) : 0;
  const count = part ? parts[Number(part[1])].layers : manifest.llm.num_layers;
  const layers = Array.from({ length: count }, (_, i) => first + i);
  switch (part ? "decoder" : (role as Exclude<GraphRole, `decoder_part${number}`>)) {
    case "visual_encoder":
      return { inputs: ["pixel_values"], outputs: ["last_hidden_state"] };
    case "embed_tokens":
      return { inputs: ["input_ids"], outputs: ["inputs_embeds"] };
    case "project_up":
      return { inputs: ["image_features"], outputs: ["image_embeds"] };
    case "decoder":
      return {
        inputs: [
          "inputs_embeds",
          "attention_mask",
          "position_ids",
          ...layers.flatMap((i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]),
        ],
        outputs: [
          "last_hidden_state",
          ...layers.flatMap((i) => [`new_key_values.${i}.key`, `new_key_values.${i}.value`]),
        ],
        // Earlier exports gave the presents (the past and new rows together), at first without new_key_values.
        formerOutputs: ["last_hidden_state", ...layers.flatMap((i) => [`present.${i}.key`, `present.${i}.value`])],
      };
    case "lm_head":
      return { inputs: ["hidden_states"], outputs: ["logits"] };
    case "project_down":
      return { inputs: ["hidden_states"], outputs: ["visual_embeds"] };
    case "unet":
      return {
        inputs: ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
        outputs: ["out_sample"],
      };
    case "vae_decoder":
      return { inputs: ["latent_sample"], outputs: ["sample"] };
  }
}

export interface GraphProblem {
  role: GraphRole;
  file: string;
  problem: string;
}

const list = (names: string[]) =>
  names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");

/** A session and the device it actually runs on (the CPU after a fallback). */
export interface PlacedSession {
  session: Session;
  device: Device;
}

export interface FileReport {
  role: string;
  file: string;
  bytes: number;
  externalDataBytes: number;
}

export class ModelPackage {
  private readonly sessions = new Map<GraphRole, Promise<PlacedSession>>();
  private readonly built = new Map<string, Promise<PlacedSession>>();
  private readonly tables = new Map<GraphRole, LookupTable | undefined>();
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
    for (const [key, placement] of Object.entries(sessionOptions.deviceMap ?? {}))
      pkg.placements.set(deviceMapRole(manifest, key), placement);
    // The manifest's paths are relative and free of `..` (manifest.ts); a symlink can still lead out, so each file
    // (and a graph's external weights beside it) must resolve to a place inside the package's real folder.
    const realFolder = realpathSync(folder);
    for (const { role, file } of pkg.files()) {
      const where = `${join(dir, MANIFEST_FILE)}: field ${manifestField(role)}`;
      if (!existsSync(join(folder, file))) {
        throw new PackageError(`${where}: ${role} file ${file} is missing from the package`);
      }
      for (const path of [join(folder, file), join(folder, `${file}_data`)]) {
        if (!existsSync(path)) continue;
        const real = realpathSync(path);
        if (!isInside(realFolder, real))
          throw new PackageError(`${where}: ${relative(folder, path)} is a link to ${real}, outside the package`);
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

  /**
   * Checks every graph without loading it: a readable ONNX model (not cut short, not some other file), with the
   * inputs and outputs the package format requires, whose external weights are inside the package and long enough.
   */
  checkGraphs(): GraphProblem[] {
    const problems: GraphProblem[] = [];
    const realFolder = realpathSync(this.dir);
    for (const [role, file] of Object.entries(graphFiles(this.manifest)) as [GraphRole, string][]) {
      const report = (problem: string) => problems.push({ role, file, problem });
      let summary;
      try {
        summary = readOnnxSummary(this.path(file));
      } catch (err) {
        if (!(err instanceof OnnxFileError)) throw err;
        report(`not a readable ONNX model: ${err.message}`);
        continue;
      }
      const expected = graphInterface(this.manifest, role);
      const inputs = summary.inputs.filter((name) => !summary.initializers.has(name));
      const missingIn = expected.inputs.filter((name) => !inputs.includes(name));
      const extraIn = inputs.filter((name) => !expected.inputs.includes(name));
      const missing = (outputs: string[]) => outputs.filter((name) => !summary.outputs.includes(name));
      const missingOut =
        expected.formerOutputs && missing(expected.formerOutputs).length === 0 ? [] : missing(expected.outputs);
      if (missingIn.length > 0)
        report(`the ${role} graph lacks the input${missingIn.length > 1 ? "s" : ""} ${list(missingIn)}`);
      if (extraIn.length > 0)
        report(
          `the ${role} graph has input${extraIn.length > 1 ? "s" : ""} the runtime does not feed: ${list(extraIn)}`,
        );
      if (missingOut.length > 0)
        report(`the ${role} graph lacks the output${missingOut.length > 1 ? "s" : ""} ${list(missingOut)}`);
      const needed = new Map<string, number>();
      for (const ref of summary.externalData) {
        needed.set(ref.location, Math.max(needed.get(ref.location) ?? 0, ref.offset + (ref.length ?? 0)));
      }
      for (const [location, bytes] of needed) {
        const path = join(dirname(this.path(file)), location);
        if (isAbsolute(location) || location.split(/[\\/]/).includes("..")) {
          report(`its external weights ${location} are outside the package`);
        } else if (!existsSync(path)) {
          report(`its external weights ${location} are missing`);
        } else if (!isInside(realFolder, realpathSync(path))) {
          report(`its external weights ${location} are a link to ${realpathSync(path)}, outside the package`);
        } else if (statSync(path).size < bytes) {
          report(
            `its external weights ${location} hold ${statSync(path).size} bytes, the graph needs ${bytes} (truncated?)`,
          );
        }
      }
    }
    return problems;
  }

  /** The device sessions are created on now: the one asked for, or the CPU once a GPU failed and fallback was allowed. */
  get device(): Device {
    return this.fellBackToCpu ? "cpu" : this.sessionOptions.device;
  }

  /**
   * The session of one graph, created on first use; `graph` (device-resident outputs) applies to that creation.
   * Resolves to the session and the device it runs on.
   */
  placedSession(role: GraphRole, graph: GraphOptions = {}): Promise<PlacedSession> {
    let session = this.sessions.get(role);
    if (!session) {
      const file = graphFiles(this.manifest)[role];
      if (!file) {
        const why =
          role === "unet" || role === "vae_decoder"
            ? "it has no visual decoder"
            : role === "decoder"
              ? "its decoder is split into parts"
              : "no such graph";
        throw new PackageError(`${this.dir}: package ${this.name} has no ${role} graph (${why})`);
      }
      session = this.create(this.path(file), graph, this.placements.get(role));
      // A failed creation must not be cached: the next call reports the same error instead of a stale rejection.
      session.catch(() => this.sessions.delete(role));
      this.sessions.set(role, session);
    }
    return session;
  }

  async session(role: GraphRole, graph: GraphOptions = {}): Promise<Session> {
    return (await this.placedSession(role, graph)).session;
  }

  /**
   * A session of a graph the runtime built (e.g. the device KV cache's row selection), kept under `name`; placed
   * like the graph `beside` (its --device-map placement), else on the package's device.
   */
  builtSession(name: string, bytes: Uint8Array, graph: GraphOptions = {}, beside?: GraphRole): Promise<PlacedSession> {
    let session = this.built.get(name);
    if (!session) {
      session = this.create(bytes, { what: name, ...graph }, beside && this.placements.get(beside));
      session.catch(() => this.built.delete(name));
      this.built.set(name, session);
    }
    return session;
  }

  /** The output names a graph of the package declares (read from its file; no session is created). */
  graphOutputs(role: GraphRole): string[] {
    const file = graphFiles(this.manifest)[role];
    if (!file) throw new PackageError(`${this.dir}: package ${this.name} has no ${role} graph`);
    try {
      return readOnnxSummary(this.path(file)).outputs;
    } catch (err) {
      if (err instanceof OnnxFileError)
        throw new PackageError(`${this.path(file)}: not a readable ONNX model: ${err.message}`);
      throw err;
    }
  }

  /**
   * The table of a graph that only looks rows up (lookup-table.ts: the embedding graph), read from its file in
   * place of a session; undefined for any other graph. Opened on first use.
   */
  lookupTable(role: GraphRole): LookupTable | undefined {
    if (!this.tables.has(role)) {
      const file = graphFiles(this.manifest)[role];
      this.tables.set(role, file ? LookupTable.open(this.path(file)) : undefined);
    }
    return this.tables.get(role);
  }

  /** The device a graph goes to: its --device-map placement, else the package-wide one. */
  placement(role: GraphRole): Device {
    return this.placements.get(role)?.device ?? this.sessionOptions.device;
  }

  private async create(
    source: string | Uint8Array,
    graph: GraphOptions,
    placement: Placement = this.sessionOptions,
  ): Promise<PlacedSession> {
    if (placement.device === "webgpu" && !this.fellBackToCpu && this.manifest.dtype === "float16") {
      // The shader-f16 probe opens WebGPU: the adapter is chosen first.
      selectWebGpuAdapter(placement.deviceId);
      await this.checkWebGpuFloat16();
    }
    // Once a GPU has failed, every later graph goes to the CPU directly, and the user hears about it once.
    const device = this.fellBackToCpu ? "cpu" : placement.device;
    let fellBack = false;
    const session = await createSession(
      source,
      {
        ...this.sessionOptions,
        deviceId: placement.deviceId,
        device,
        onFallback: (reason) => {
          fellBack = true;
          if (!this.fellBackToCpu) this.sessionOptions.onFallback?.(reason);
          this.fellBackToCpu = true;
        },
      },
      graph,
    );
    return { session, device: fellBack ? "cpu" : device };
  }

  private float16Checked?: Promise<void>;

  /** A float16 package needs the adapter's shader-f16; without it the user hears why (or falls back, if allowed). */
  private checkWebGpuFloat16(): Promise<void> {
    this.float16Checked ??= webGpuRunsFloat16().then((ok) => {
      if (ok) return;
      const reason = `package ${this.name} is float16 and this WebGPU adapter has no shader-f16 (Dawn hides it on NVIDIA under Vulkan)`;
      if (!this.sessionOptions.allowCpuFallback)
        throw new PackageError(`${reason}: use a float32 package of the model, or --device cpu`);
      this.sessionOptions.onFallback?.(`${reason}; running on the CPU`);
      this.fellBackToCpu = true;
    });
    return this.float16Checked;
  }

  async release(): Promise<void> {
    for (const table of this.tables.values()) table?.close();
    this.tables.clear();
    const open = [...this.sessions.values(), ...this.built.values()];
    this.sessions.clear();
    this.built.clear();
    for (const session of open) {
      try {
        await (await session).session.release();
      } catch {
        // A session whose creation failed has nothing to release.
      }
    }
  }
}
