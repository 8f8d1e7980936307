// The embedding graph's rows read from its file equal what its session outputs, bit for bit, wherever the table
// lies (inline, or at an offset of an external data file) and however it is read (whole, a row at a time, or a row
// at a time until a background read holds it whole), and a graph that is not a plain lookup gets no table.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LookupTable } from "../../src/model/lookup-table.js";
import { readLookupTable } from "../../src/model/onnx-file.js";
import { fromOrt, int64Tensor } from "../../src/model/ort.js";
import { createSession, DEFAULT_SESSION_OPTIONS } from "../../src/model/session.js";
import { packageDir } from "../helpers/fixtures.js";

const PYTHON = "/usr/bin/python3";
const onnxPython = spawnSync(PYTHON, ["-c", "import onnx"], { encoding: "utf8" });
const NO_ONNX = onnxPython.status === 0 ? false : `skipped: ${PYTHON} cannot import onnx, which writes these graphs`;

/** First and last rows, repeats, and rows spread over the table. */
function someIds(rows: number): number[] {
  return [0, rows - 1, 7, 7, 1, Math.floor(rows / 2), rows - 2, 123, 31999 % rows];
}

/** The graph's own output for `ids`, as float32 (a float16 graph's values converted as the runtime does). */
async function sessionRows(onnxPath: string, ids: number[]): Promise<Float32Array> {
  const session = await createSession(onnxPath, { ...DEFAULT_SESSION_OPTIONS, threads: 1 });
  try {
    const out = await session.run({ [session.inputNames[0]]: int64Tensor(ids, [1, ids.length]) });
    return fromOrt(out[session.outputNames[0]], "lookup").data;
  } finally {
    await session.release();
  }
}

/** Files this process holds open. */
function openFiles(): number {
  return readdirSync("/proc/self/fd").length;
}

/**
 * Every way of reading: the whole table when it opens (these are small), a row at a time from the file (a table
 * too large to hold), and from the file until the background read has the table in memory (a large one).
 */
async function assertSameRows(onnxPath: string, expected: { rows: number; cols: number; dtype: string }) {
  const ids = someIds(expected.rows);
  const want = await sessionRows(onnxPath, ids);
  const filesBefore = openFiles();
  const whole = openTable(onnxPath, expected);
  assert.ok(whole.inMemory, "a small table is read when it opens");
  assert.equal(openFiles(), filesBefore, "a table read when it opens keeps no file open");
  assertRows(whole, ids, want);
  whole.close();

  const fromFile = openTable(onnxPath, expected, 0, 0);
  assertRows(fromFile, ids, want);
  await fromFile.whenRead();
  assert.equal(fromFile.inMemory, false, "a table larger than heldBytes stays in its file");
  assertRows(fromFile, ids, want);
  fromFile.close();
  assert.throws(() => fromFile.rows([0]), /the lookup table was closed/);

  const background = openTable(onnxPath, expected, 0);
  assert.equal(background.inMemory, false, "the background read has not returned yet");
  assertRows(background, ids, want);
  await background.whenRead();
  assert.ok(background.inMemory, "the background read holds the table");
  assert.equal(openFiles(), filesBefore, "a table held in memory keeps no file open");
  assertRows(background, ids, want);
  background.close();
  assert.throws(() => background.rows([0]), /the lookup table was closed/);

  // Closed while its background read runs: the read stops, and the file closes once its last chunk returns.
  const closedEarly = openTable(onnxPath, expected, 0);
  closedEarly.close();
  await closedEarly.whenRead();
  assert.equal(closedEarly.inMemory, false);
  assert.equal(openFiles(), filesBefore, "the file of a table closed while it was read");
}

function openTable(
  onnxPath: string,
  expected: { rows: number; cols: number; dtype: string },
  wholeBytes?: number,
  heldBytes?: number,
): LookupTable {
  const table = LookupTable.open(onnxPath, wholeBytes, heldBytes);
  assert.ok(table, `${onnxPath}: a plain lookup graph gets a table`);
  assert.deepEqual({ rows: table.location.rows, cols: table.location.cols, dtype: table.location.dtype }, expected);
  return table;
}

function assertRows(table: LookupTable, ids: number[], want: Float32Array): void {
  assert.deepEqual(table.rows(ids), want);
  const into = new Float32Array(want.length).fill(Number.NaN);
  assert.equal(table.rows(ids, into), into, "rows go into the array given");
  assert.deepEqual(into, want);
  assert.throws(() => table.rows(ids, new Float32Array(want.length + 1)), /rows of \d+ values into an array of/);
  const rows = table.location.rows;
  assert.throws(
    () => table.rows([rows]),
    new RegExp(`token id ${rows} is outside the embedding table \\(${rows} rows\\)`),
  );
  assert.throws(() => table.rows([-1]), /token id -1 is outside/);
}

test("a float32 embedding graph's rows, read from the .onnx file, equal its session's output", async () => {
  await assertSameRows(join(packageDir("emu2-tiny"), "embed_tokens.onnx"), { rows: 32272, cols: 32, dtype: "float32" });
});

test("a float16 embedding graph's rows are converted as the session's output is", async () => {
  await assertSameRows(join(packageDir("emu2-toy"), "embed_tokens.onnx"), { rows: 32274, cols: 64, dtype: "float16" });
});

/** Runs a Python snippet with onnx that writes graphs into `dir` from emu2-tiny's embedding graph (`source`). */
function writeGraphs(dir: string, code: string): void {
  const source = join(packageDir("emu2-tiny"), "embed_tokens.onnx");
  const prelude =
    "import sys, onnx, numpy as np\n" +
    "from onnx import helper, numpy_helper\n" +
    "source, out = sys.argv[1], sys.argv[2]\n" +
    "m = onnx.load(source)\n" +
    "w = m.graph.initializer[0]\n";
  const done = spawnSync(PYTHON, ["-c", prelude + code, source, dir], { encoding: "utf8" });
  assert.equal(done.status, 0, done.stderr);
}

test("a table in an external data file is read from its offset there", { skip: NO_ONNX }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-lookup-"));
  // 4,100 bytes of something else first, so that the table starts at an offset no row size divides.
  writeGraphs(
    dir,
    "raw = numpy_helper.to_array(w).tobytes()\n" +
      "open(out + '/weights.bin', 'wb').write(b'\\x7f' * 4100 + raw)\n" +
      "onnx.external_data_helper.set_external_data(w, 'weights.bin', offset=4100, length=len(raw))\n" +
      "w.ClearField('raw_data')\n" +
      "w.data_location = onnx.TensorProto.EXTERNAL\n" +
      "onnx.save(m, out + '/embed_tokens.onnx')\n",
  );
  await assertSameRows(join(dir, "embed_tokens.onnx"), { rows: 32272, cols: 32, dtype: "float32" });
});

test("a graph that is not one plain lookup gets no table", { skip: NO_ONNX }, () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-lookup-"));
  writeGraphs(
    dir,
    "g = m.graph\n" +
      "node = g.node[0]\n" +
      // The same Gather along the other axis: rows of the transposed table, which a row read would not give.
      "node.attribute.append(helper.make_attribute('axis', 1))\n" +
      "onnx.save(m, out + '/axis1.onnx')\n" +
      "del node.attribute[:]\n" +
      // A lookup followed by another op (as a scaled or dequantized embedding would be).
      "node.output[0] = 'gathered'\n" +
      "g.node.append(helper.make_node('Relu', ['gathered'], [g.output[0].name]))\n" +
      "onnx.save(m, out + '/two-nodes.onnx')\n" +
      "del g.node[1:]\n" +
      "node.output[0] = g.output[0].name\n" +
      // Another op on the same inputs.
      "node.op_type = 'GatherElements'\n" +
      "onnx.save(m, out + '/other-op.onnx')\n" +
      "node.op_type = 'Gather'\n" +
      // Rows picked by fixed indices, not by the graph's input.
      "g.initializer.append(numpy_helper.from_array(np.array([[1, 2]], np.int64), 'fixed_ids'))\n" +
      "node.input[1] = 'fixed_ids'\n" +
      "onnx.save(m, out + '/fixed-ids.onnx')\n" +
      "node.input[1] = g.input[0].name\n" +
      "del g.initializer[1:]\n" +
      // An int8 table.
      "w.CopyFrom(numpy_helper.from_array(np.zeros((4, 3), np.int8), w.name))\n" +
      "onnx.save(m, out + '/int8.onnx')\n",
  );
  for (const name of ["axis1", "two-nodes", "other-op", "fixed-ids", "int8"])
    assert.equal(readLookupTable(join(dir, `${name}.onnx`)), undefined, name);
  assert.equal(LookupTable.open(join(packageDir("emu2-tiny"), "lm_head.onnx")), undefined, "lm_head (a MatMul)");
});

test("a table outside the graph's folder, or missing, is left to the session", { skip: NO_ONNX }, () => {
  const dir = mkdtempSync(join(tmpdir(), "emu2-lookup-"));
  mkdirSync(join(dir, "pkg"));
  // The graph in pkg/ names its table as ../weights.bin: a lookup graph in every other way.
  writeGraphs(
    dir,
    "raw = numpy_helper.to_array(w).tobytes()\n" +
      "open(out + '/weights.bin', 'wb').write(raw)\n" +
      "onnx.external_data_helper.set_external_data(w, '../weights.bin', offset=0, length=len(raw))\n" +
      "w.ClearField('raw_data')\n" +
      "w.data_location = onnx.TensorProto.EXTERNAL\n" +
      "onnx.save(m, out + '/pkg/embed_tokens.onnx')\n" +
      "next(e for e in w.external_data if e.key == 'location').value = 'weights.bin'\n" +
      "onnx.save(m, out + '/embed_tokens.onnx')\n",
  );
  assert.ok(readLookupTable(join(dir, "pkg", "embed_tokens.onnx")), "the graph itself is a plain lookup");
  assert.equal(LookupTable.open(join(dir, "pkg", "embed_tokens.onnx")), undefined, "../weights.bin");
  const inside = LookupTable.open(join(dir, "embed_tokens.onnx"));
  assert.ok(inside, "weights.bin beside its graph");
  inside.close();
  rmSync(join(dir, "weights.bin"));
  assert.equal(LookupTable.open(join(dir, "embed_tokens.onnx")), undefined, "a missing weights.bin");
});
