// The manifest of a model package (docs/package-format.md), validated on load so that a wrong or missing field is
// reported once, by file and field, before any session is created.
import { readFileSync } from "node:fs";
import { isAbsolute, win32 } from "node:path";
import { z } from "zod";
import { PackageError } from "../util/errors.js";
import { describeSchemaError } from "../util/schema.js";
import { readYamlDocument } from "../util/yaml.js";
import { TEMPLATE_TOKENS } from "../prompt/tokens.js";

export const MANIFEST_FORMAT = "emu2-package/1";

const positiveInt = z.number().int().positive();

/** Element type of a package's activations (its graphs' float inputs and outputs). */
export const DTYPES = ["float32", "float16"] as const;
export type Dtype = (typeof DTYPES)[number];
/**
 * A package is data that stays inside its folder: a file entry is a relative path without `..` segments, so a
 * manifest cannot point the runtime at /etc/passwd or at a neighbour's files. (Symlinks that lead out are refused
 * when the package is opened, package.ts.)
 */
const packageFile = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    if (isAbsolute(value) || win32.isAbsolute(value)) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(value)} is outside the package (an absolute path): name files relative to the package folder`,
      });
    } else if (value.split(/[\\/]/).includes("..")) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(value)} leads outside the package (a .. segment): name files inside the package folder`,
      });
    }
  });
const onnxFile = packageFile.pipe(z.string().regex(/\.onnx$/, "expected an .onnx file name"));
const rgbTriple = z.tuple([z.number(), z.number(), z.number()]);

const tokenizerSchema = z.strictObject({
  file: packageFile,
  vocab_size: positiveInt,
  bos_token_id: z.number().int().nonnegative(),
  eos_token_id: z.number().int().nonnegative(),
  pad_token_id: z.number().int().nonnegative(),
  add_bos: z.boolean(),
  special_tokens: z.record(z.string(), z.number().int().nonnegative()),
});

const visionSchema = z.strictObject({
  file: onnxFile,
  image_size: positiveInt,
  patch_size: positiveInt,
  width: positiveInt,
  layers: positiveInt,
  heads: positiveInt,
  mean: rgbTriple,
  std: rgbTriple,
  resample: z.literal("bicubic"),
  n_query: positiveInt,
  /** Absent: the package takes no video. */
  video_n_query: positiveInt.optional(),
});

// A decoder split into graphs of consecutive layers (exported with --decoder-parts N), in layer order; each part
// can run on its own device (--device-map).
const decoderPartSchema = z.strictObject({
  file: onnxFile,
  layers: positiveInt,
});

const llmSchema = z.strictObject({
  embed_tokens_file: onnxFile,
  decoder_file: onnxFile.optional(),
  decoder_parts: z.array(decoderPartSchema).min(2).optional(),
  lm_head_file: onnxFile,
  project_up_file: onnxFile,
  project_down_file: onnxFile,
  hidden_size: positiveInt,
  num_layers: positiveInt,
  num_heads: positiveInt,
  head_dim: positiveInt,
  intermediate_size: positiveInt,
  max_position_embeddings: positiveInt,
  rms_norm_eps: z.number().positive(),
});

const schedulerSchema = z.strictObject({
  type: z.literal("euler_discrete"),
  num_train_timesteps: positiveInt,
  beta_start: z.number().positive(),
  beta_end: z.number().positive(),
  beta_schedule: z.literal("scaled_linear"),
  timestep_spacing: z.enum(["leading", "trailing", "linspace"]),
  steps_offset: z.number().int().nonnegative(),
  prediction_type: z.literal("epsilon"),
});

const visualDecoderSchema = z.strictObject({
  unet_file: onnxFile,
  vae_decoder_file: onnxFile,
  latent_channels: positiveInt,
  latent_size: positiveInt,
  vae_scale_factor: positiveInt,
  scaling_factor: z.number().positive(),
  time_ids: z.array(z.number()).length(6),
  scheduler: schedulerSchema,
  num_inference_steps: positiveInt,
  guidance_scale: z.number().nonnegative(),
});

const promptSchema = z.strictObject({
  template: z.enum(["base", "chat", "gen"]),
  image_placeholder: z.string().min(1),
  system_message: z.string().optional(),
  short_system_message: z.string().optional(),
});

const generationSchema = z.strictObject({
  max_new_tokens: positiveInt,
  min_new_tokens: z.number().int().nonnegative(),
  num_beams: positiveInt,
  length_penalty: z.number(),
  repetition_penalty: z.number().positive(),
  do_sample: z.boolean(),
  temperature: z.number().positive(),
  top_k: z.number().int().nonnegative(),
  top_p: z.number().gt(0).lte(1),
});

// A graph whose linear layers are stored as com.microsoft::MatMulNBits weights (python/emu2ref/quantize.py writes
// them); the runtime needs nothing of this, the record is for people and `emu2 info`.
const quantizedGraphSchema = z.strictObject({
  method: z.literal("matmul_nbits"),
  bits: z.union([z.literal(8), z.literal(4)]),
  block_size: z.union([z.literal(16), z.literal(32), z.literal(64), z.literal(128)]),
  symmetric: z.boolean(),
  accuracy_level: z.number().int().min(0).max(4),
  /** Scales chosen per block by an error-minimizing search instead of the block's full range. */
  scale_search: z.boolean(),
  /** Linear layers (by module name, e.g. v_proj) of a 4-bit graph stored at 8 bits. */
  int8_layers: z.array(z.enum(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])),
});

const quantizationSchema = z.strictObject({
  visual_encoder: quantizedGraphSchema.optional(),
  project_up: quantizedGraphSchema.optional(),
  decoder: quantizedGraphSchema.optional(),
  lm_head: quantizedGraphSchema.optional(),
  project_down: quantizedGraphSchema.optional(),
});

export const manifestSchema = z
  .strictObject({
    format: z.literal(MANIFEST_FORMAT),
    name: z.string().min(1),
    description: z.string(),
    variant: z.enum(["emu2", "emu2-chat", "emu2-gen"]),
    dtype: z.enum(DTYPES),
    tokenizer: tokenizerSchema,
    vision: visionSchema,
    llm: llmSchema,
    visual_decoder: visualDecoderSchema.optional(),
    prompt: promptSchema,
    generation: generationSchema,
    quantization: quantizationSchema.optional(),
  })
  .superRefine((m, ctx) => {
    // Cross-field rules: each is a mistake that would otherwise surface as a shape error deep inside a session.
    const grid = m.vision.image_size / m.vision.patch_size;
    if (!Number.isInteger(grid)) {
      ctx.addIssue({
        code: "custom",
        path: ["vision", "patch_size"],
        message: `must divide image_size ${m.vision.image_size}`,
      });
    }
    for (const key of ["n_query", "video_n_query"] as const) {
      if (m.vision[key] === undefined) continue;
      const side = Math.sqrt(m.vision[key]);
      if (!Number.isInteger(side) || !Number.isInteger(grid / side)) {
        ctx.addIssue({
          code: "custom",
          path: ["vision", key],
          message: `must be a square whose side divides the ${grid}x${grid} patch grid`,
        });
      }
    }
    if ((m.llm.decoder_file === undefined) === (m.llm.decoder_parts === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["llm", "decoder_file"],
        message: "give either decoder_file or decoder_parts (a split decoder), not both or neither",
      });
    }
    const partLayers = m.llm.decoder_parts?.reduce((n, p) => n + p.layers, 0);
    if (partLayers !== undefined && partLayers !== m.llm.num_layers) {
      ctx.addIssue({
        code: "custom",
        path: ["llm", "decoder_parts"],
        message: `the parts hold ${partLayers} layers, num_layers is ${m.llm.num_layers}`,
      });
    }
    if (m.llm.num_heads * m.llm.head_dim !== m.llm.hidden_size) {
      ctx.addIssue({
        code: "custom",
        path: ["llm", "head_dim"],
        message: `num_heads x head_dim must equal hidden_size ${m.llm.hidden_size}`,
      });
    }
    for (const [token, id] of Object.entries(m.tokenizer.special_tokens)) {
      if (id >= m.tokenizer.vocab_size) {
        ctx.addIssue({
          code: "custom",
          path: ["tokenizer", "special_tokens", token],
          message: `id ${id} is outside the vocabulary (${m.tokenizer.vocab_size})`,
        });
      }
    }
    for (const token of REQUIRED_SPECIAL_TOKENS[m.prompt.template]) {
      if (!(token in m.tokenizer.special_tokens)) {
        ctx.addIssue({
          code: "custom",
          path: ["tokenizer", "special_tokens"],
          message: `missing ${token} (needed by the ${m.prompt.template} template)`,
        });
      }
    }
    if (m.prompt.template === "chat" && m.prompt.system_message === undefined) {
      ctx.addIssue({ code: "custom", path: ["prompt", "system_message"], message: "required by the chat template" });
    }
  });

const REQUIRED_SPECIAL_TOKENS = TEMPLATE_TOKENS;

export type Manifest = z.infer<typeof manifestSchema>;
export type VisionConfig = Manifest["vision"];
export type LlmConfig = Manifest["llm"];
export type VisualDecoderConfig = NonNullable<Manifest["visual_decoder"]>;
export type GenerationDefaults = Manifest["generation"];
export type QuantizedGraph = z.infer<typeof quantizedGraphSchema>;

/** Validates a parsed manifest; `file` is only used in the error message. */
export function validateManifest(raw: unknown, file: string): Manifest {
  const result = manifestSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new PackageError(`${file}: ${describeSchemaError(result.error, raw)}`);
}

/** Reads and validates manifest.yaml; YAML syntax errors name the line and column. */
export function readManifest(file: string): Manifest {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PackageError(
      code === "ENOENT"
        ? `${file}: no such file (a model package needs a manifest.yaml)`
        : `${file}: cannot read (${code})`,
    );
  }
  const { doc } = readYamlDocument(text, file, (message) => new PackageError(message));
  return validateManifest(doc.toJS(), file);
}
