import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { readManifest, validateManifest } from "../../src/model/manifest.js";
import { PackageError } from "../../src/util/errors.js";
import { packageDir } from "../helpers/fixtures.js";

const configs = ["emu2", "emu2-chat", "emu2-gen"];
// One valid quantized-graph entry; the cases below change one field of it.
const QUANTIZED = {
  method: "matmul_nbits",
  bits: 4,
  block_size: 16,
  symmetric: false,
  accuracy_level: 0,
  scale_search: true,
  int8_layers: ["v_proj"],
};

test("the real models' manifests validate and carry the official models' numbers", () => {
  for (const name of configs) {
    const m = readManifest(`configs/models/${name}.yaml`);
    assert.equal(m.llm.hidden_size, 6656);
    assert.equal(m.llm.num_layers, 60);
    assert.equal(m.llm.num_heads, 52);
    assert.equal(m.vision.width, 1792);
    assert.equal(m.tokenizer.special_tokens["<image>"], 32003);
    assert.equal(m.tokenizer.special_tokens["<patch_index_0256>"], 32271);
  }
  const chat = readManifest("configs/models/emu2-chat.yaml");
  assert.equal(chat.vision.n_query, 256);
  assert.equal(chat.tokenizer.vocab_size, 32274);
  assert.equal(chat.tokenizer.special_tokens["[ASSISTANT]"], 32273);
  const gen = readManifest("configs/models/emu2-gen.yaml");
  assert.equal(gen.visual_decoder?.scaling_factor, 0.13025);
  assert.deepEqual(gen.visual_decoder?.time_ids, [1024, 1024, 0, 0, 1024, 1024]);
  assert.equal(readManifest("configs/models/emu2.yaml").visual_decoder, undefined);
});

test("the CLIP normalization of every manifest (real models and the tiny packages) is Emu2's: OPENAI_DATASET_MEAN/STD of emu/constants.py", () => {
  const tiny = ["emu2-tiny", "emu2-chat-tiny"].map((name) => join(packageDir(name), "manifest.yaml"));
  for (const file of [...configs.map((name) => `configs/models/${name}.yaml`), ...tiny]) {
    const { mean, std } = readManifest(file).vision;
    assert.deepEqual(mean, [0.48145466, 0.4578275, 0.40821073], file);
    assert.deepEqual(std, [0.26862954, 0.26130258, 0.27577711], file);
  }
});

function mutated(edit: (m: Record<string, any>) => void): unknown {
  const m = parse(readFileSync("configs/models/emu2-gen.yaml", "utf8"));
  edit(m);
  return m;
}

test("a bad field is one line naming the file and the field", () => {
  const cases: [string, (m: Record<string, any>) => void, RegExp][] = [
    [
      "wrong type",
      (m) => {
        m.llm.hidden_size = "big";
      },
      /^x\.yaml: field llm\.hidden_size: expected number, received string \(found "big"\)$/,
    ],
    [
      "missing",
      (m) => {
        delete m.vision.n_query;
      },
      /^x\.yaml: field vision\.n_query: expected number/,
    ],
    [
      "unknown",
      (m) => {
        m.llm.hiden = 3;
      },
      /^x\.yaml: field llm: unknown field hiden$/,
    ],
    [
      "bad enum",
      (m) => {
        m.dtype = "int4";
      },
      /^x\.yaml: field dtype: /,
    ],
    [
      "n_query not a square",
      (m) => {
        m.vision.n_query = 60;
      },
      /field vision\.n_query: must be a square/,
    ],
    [
      "heads",
      (m) => {
        m.llm.head_dim = 100;
      },
      /field llm\.head_dim: num_heads x head_dim must equal hidden_size/,
    ],
    [
      "token outside vocabulary",
      (m) => {
        m.tokenizer.vocab_size = 32001;
      },
      /field tokenizer\.special_tokens\.\[IMG\]: id 32001 is outside/,
    ],
    [
      "wrong format",
      (m) => {
        m.format = "emu2-package/9";
      },
      /field format: /,
    ],
    [
      "quantization bits",
      (m) => {
        m.quantization = {
          decoder: { ...QUANTIZED, bits: 3 },
        };
      },
      /^x\.yaml: field quantization\.decoder\.bits: /,
    ],
    [
      "int8 layer that is no decoder layer",
      (m) => {
        m.quantization = { decoder: { ...QUANTIZED, int8_layers: ["v_proj", "wq"] } };
      },
      /^x\.yaml: field quantization\.decoder\.int8_layers\.1: /,
    ],
    [
      "decoder file and parts",
      (m) => {
        m.llm.decoder_parts = [
          { file: "a.onnx", layers: 30 },
          { file: "b.onnx", layers: 30 },
        ];
      },
      /^x\.yaml: field llm\.decoder_file: give either decoder_file or decoder_parts/,
    ],
    [
      "parts miss a layer",
      (m) => {
        delete m.llm.decoder_file;
        m.llm.decoder_parts = [
          { file: "a.onnx", layers: 30 },
          { file: "b.onnx", layers: 29 },
        ];
      },
      /^x\.yaml: field llm\.decoder_parts: the parts hold 59 layers, num_layers is 60$/,
    ],
    [
      "quantized unet",
      (m) => {
        m.quantization = {
          unet: QUANTIZED,
        };
      },
      /^x\.yaml: field quantization: unknown field unet$/,
    ],
  ];
  for (const [label, edit, pattern] of cases) {
    assert.throws(
      () => validateManifest(mutated(edit), "x.yaml"),
      (err: unknown) => {
        assert.ok(err instanceof PackageError, label);
        assert.match(err.message, pattern, label);
        assert.ok(!err.message.includes("\n"), `${label}: one line`);
        return true;
      },
    );
  }
});

test("YAML syntax errors give line and column", () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-manifest-"));
  const file = join(dir, "manifest.yaml");
  writeFileSync(file, "format: emu2-package/1\nname: [unclosed\n");
  assert.throws(() => readManifest(file), /manifest\.yaml: YAML error at line \d+, column \d+/);
  assert.throws(() => readManifest(join(dir, "nope.yaml")), /nope\.yaml: no such file/);
});
