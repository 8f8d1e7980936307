// A package is data that stays inside its folder, and `emu2 info` checks its graphs without loading them.
import assert from "node:assert/strict";
import {
  copyFileSync,
  cpSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ModelPackage } from "../../src/model/package.js";
import { readOnnxSummary } from "../../src/model/onnx-file.js";
import { writeOnnxModel } from "../../src/model/onnx-writer.js";
import { PackageError } from "../../src/util/errors.js";
import { packageDir } from "../helpers/fixtures.js";

const source = packageDir("emu2-tiny");

function copyPackage(): string {
  const dir = join(mkdtempSync(join(tmpdir(), "emu2-pkg-")), "pkg");
  cpSync(source, dir, { recursive: true });
  return dir;
}

function setField(dir: string, key: string, value: string): void {
  const file = join(dir, "manifest.yaml");
  const text = readFileSync(file, "utf8");
  const pattern = new RegExp(`^(\\s*${key}:) .*$`, "m");
  assert.match(text, pattern);
  writeFileSync(file, text.replace(pattern, `$1 ${JSON.stringify(value)}`));
}

const openFails = (dir: string) => {
  try {
    ModelPackage.open(dir);
  } catch (err) {
    assert.ok(err instanceof PackageError, String(err));
    return err.message;
  }
  assert.fail("the package opened");
};

test("manifest file entries with .. or an absolute path are refused, naming the field; nothing outside is read", () => {
  const dir = copyPackage();
  setField(dir, "file", "../../../../../../../etc/passwd");
  const dots = openFails(dir);
  assert.match(dots, /manifest\.yaml: field tokenizer\.file: "\.\.\/.*passwd" leads outside the package/);
  assert.doesNotMatch(dots, /root:/);
  // An absolute path that exists is "outside the package", not "missing".
  setField(dir, "file", "/etc/passwd");
  assert.match(openFails(dir), /field tokenizer\.file: "\/etc\/passwd" is outside the package \(an absolute path\)/);
  const graph = copyPackage();
  setField(graph, "decoder_file", "sub/../../decoder.onnx");
  assert.match(openFails(graph), /field llm\.decoder_file: .* leads outside the package/);
});

test("a symlink that resolves outside the package is refused, naming the field; one that stays inside is fine", () => {
  const outside = mkdtempSync(join(tmpdir(), "emu2-outside-"));
  copyFileSync(join(source, "visual_encoder.onnx"), join(outside, "visual_encoder.onnx"));
  const dir = copyPackage();
  unlinkSync(join(dir, "visual_encoder.onnx"));
  symlinkSync(join(outside, "visual_encoder.onnx"), join(dir, "visual_encoder.onnx"));
  assert.match(
    openFails(dir),
    /field vision\.file: visual_encoder\.onnx is a link to .*emu2-outside-.*, outside the package/,
  );
  // External weights beside a graph are checked the same way.
  const data = copyPackage();
  symlinkSync("/etc/passwd", join(data, "decoder.onnx_data"));
  assert.match(
    openFails(data),
    /field llm\.decoder_file: decoder\.onnx_data is a link to \/etc\/passwd, outside the package/,
  );
  const inside = copyPackage();
  copyFileSync(join(inside, "lm_head.onnx"), join(inside, "lm_head-real.onnx"));
  unlinkSync(join(inside, "lm_head.onnx"));
  symlinkSync("lm_head-real.onnx", join(inside, "lm_head.onnx"));
  assert.deepEqual(ModelPackage.open(inside).checkGraphs(), []);
});

test("graph check: a truncated graph, a link to a non-ONNX file and a graph with the wrong outputs are each reported by file", () => {
  const dir = copyPackage();
  assert.deepEqual(ModelPackage.open(dir).checkGraphs(), []);
  truncateSync(join(dir, "visual_encoder.onnx"), 5000);
  unlinkSync(join(dir, "decoder.onnx"));
  symlinkSync("tokenizer.json", join(dir, "decoder.onnx"));
  copyFileSync(join(dir, "lm_head.onnx"), join(dir, "project_down.onnx"));
  const problems = new Map(
    ModelPackage.open(dir)
      .checkGraphs()
      .map((p) => [p.file, p.problem]),
  );
  assert.deepEqual([...problems.keys()].sort(), ["decoder.onnx", "project_down.onnx", "visual_encoder.onnx"]);
  assert.match(
    problems.get("visual_encoder.onnx") ?? "",
    /not a readable ONNX model: the file ends in the middle of a field \(truncated\?\)/,
  );
  assert.match(problems.get("decoder.onnx") ?? "", /not a readable ONNX model/);
  assert.match(problems.get("project_down.onnx") ?? "", /the project_down graph lacks the output visual_embeds/);
});

test("graph check: a decoder with presents (an earlier export) passes; one with neither presents nor new_key_values is reported", () => {
  const dir = copyPackage();
  const past = ["0.key", "0.value", "1.key", "1.value"];
  // Declarations are all the check reads: Identity nodes stand in for the layers.
  const decoder = (outputs: string[]) =>
    writeOnnxModel({
      name: "decoder",
      opset: 17,
      inputs: [
        { name: "inputs_embeds", type: "float32", dims: ["batch", "tokens", 32] },
        { name: "attention_mask", type: "int64", dims: ["batch", "total"] },
        { name: "position_ids", type: "int64", dims: ["batch", "tokens"] },
        ...past.map((n) => ({ name: `past_key_values.${n}`, type: "float32" as const, dims: ["batch", 4, "past", 8] })),
      ],
      outputs: outputs.map((name) => ({ name, type: "float32" as const, dims: ["batch", 4, "total", 8] })),
      nodes: outputs.map((name, i) => ({
        op: "Identity",
        inputs: [i === 0 ? "inputs_embeds" : `past_key_values.${past[i - 1]}`],
        outputs: [name],
      })),
    });
  writeFileSync(join(dir, "decoder.onnx"), decoder(["last_hidden_state", ...past.map((n) => `present.${n}`)]));
  assert.deepEqual(ModelPackage.open(dir).checkGraphs(), []);
  writeFileSync(join(dir, "decoder.onnx"), decoder(["last_hidden_state", "present.0.key", "new_key_values.0.key"]));
  const [problem, ...rest] = ModelPackage.open(dir).checkGraphs();
  assert.deepEqual(rest, []);
  assert.equal(
    problem.problem,
    "the decoder graph lacks the outputs new_key_values.0.value, new_key_values.1.key, new_key_values.1.value",
  );
});

test("the ONNX reader lists a graph's inputs and outputs without its weights", () => {
  const s = readOnnxSummary(join(source, "decoder.onnx"));
  assert.deepEqual(s.inputs.filter((n) => !s.initializers.has(n)).slice(0, 4), [
    "inputs_embeds",
    "attention_mask",
    "position_ids",
    "past_key_values.0.key",
  ]);
  assert.deepEqual(s.outputs.slice(0, 2), ["last_hidden_state", "new_key_values.0.key"]);
  const empty = join(mkdtempSync(join(tmpdir(), "emu2-onnx-")), "empty.onnx");
  writeFileSync(empty, "");
  assert.throws(() => readOnnxSummary(empty), /the file is empty/);
  assert.throws(() => readOnnxSummary(join(source, "manifest.yaml")), /not (a protobuf message|an ONNX model)/);
});

test("graph check of a split decoder: each part must carry the past of its own layers", () => {
  const dir = join(mkdtempSync(join(tmpdir(), "emu2-pkg-")), "pkg");
  cpSync(packageDir("emu2-chat-tiny-split"), dir, { recursive: true });
  assert.deepEqual(ModelPackage.open(dir).checkGraphs(), []);
  copyFileSync(join(dir, "decoder_part1.onnx"), join(dir, "decoder_part0.onnx"));
  const [problem, ...rest] = ModelPackage.open(dir).checkGraphs();
  assert.equal(problem.file, "decoder_part0.onnx");
  assert.match(problem.problem, /lacks the inputs past_key_values\.0\.key, past_key_values\.0\.value/);
  assert.ok(rest.every((p) => p.file === "decoder_part0.onnx"));
});
