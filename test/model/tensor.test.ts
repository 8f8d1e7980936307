// The host tensor's one join, and the ONNX Runtime boundary's conversions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fromOrt, int64Tensor, loadOrt, toOrt, zeros } from "../../src/model/ort.js";
import { writeOnnxModel } from "../../src/model/onnx-writer.js";
import { concat } from "../../src/model/tensor.js";

const seq = (n: number, from = 0) => Float32Array.from({ length: n }, (_, i) => from + i);

test("concat along the first axis stacks parts in order", () => {
  const out = concat([
    { data: seq(6), dims: [1, 2, 3] },
    { data: seq(12, 100), dims: [2, 2, 3] },
  ]);
  assert.deepEqual(out.dims, [3, 2, 3]);
  assert.deepEqual(Array.from(out.data), [...seq(6), ...seq(12, 100)]);
});

test("concat along axis 1 interleaves per outer row ([B,1,W] steps -> [B,n,W])", () => {
  // Two steps of two rows of width 2: row b of step i is [10i + 2b, 10i + 2b + 1].
  const step = (i: number) => ({
    data: Float32Array.from([10 * i, 10 * i + 1, 10 * i + 2, 10 * i + 3]),
    dims: [2, 1, 2],
  });
  const out = concat([step(0), step(1), step(2)], 1);
  assert.deepEqual(out.dims, [2, 3, 2]);
  assert.deepEqual(Array.from(out.data), [0, 1, 10, 11, 20, 21, 2, 3, 12, 13, 22, 23]);
});

test("concat refuses parts whose other dims differ, a bad axis, or no parts", () => {
  assert.throws(
    () =>
      concat([
        { data: seq(6), dims: [1, 2, 3] },
        { data: seq(4), dims: [1, 2, 2] },
      ]),
    /part 1 has dims \[1,2,2\]/,
  );
  assert.throws(() => concat([{ data: seq(5), dims: [1, 2, 3] }]), /5 values for dims \[1,2,3\]/);
  assert.throws(() => concat([{ data: seq(6), dims: [1, 2, 3] }], 3), /axis 3/);
  assert.throws(() => concat([]), /no tensors/);
});

test("toOrt/fromOrt: float32 and float16 round trips", async () => {
  const values = Float32Array.from([0.5, -2, 1024, 0.1]);
  const f32 = toOrt({ data: values, dims: [2, 2] }, "float32");
  assert.equal(f32.type, "float32");
  const back = fromOrt(f32, "x");
  assert.deepEqual(back.dims, [2, 2]);
  assert.deepEqual(Array.from(back.data), Array.from(values));
  const f16 = toOrt({ data: values, dims: [4] }, "float16");
  assert.equal(f16.type, "float16");
  assert.deepEqual(Array.from(f16.data as Uint16Array).slice(0, 3), [0x3800, 0xc000, 0x6400]);
  assert.deepEqual(Array.from(fromOrt(f16, "x").data), [0.5, -2, 1024, 0.0999755859375]);
  assert.throws(() => toOrt({ data: values, dims: [3] }, "float32"), /4 values for dims \[3\]/);
  assert.throws(() => fromOrt(undefined, "lm_head logits"), /lm_head logits: missing/);
  const ids = int64Tensor([1, 2], [2]);
  assert.throws(() => fromOrt(ids, "ids"), /ids: unexpected element type int64/);
});

test("zeros has the dims, zero-length included", async () => {
  const empty = zeros("float32", [2, 1, 0, 4]);
  assert.deepEqual(empty.dims, [2, 1, 0, 4]);
  assert.equal((empty.data as Float32Array).length, 0);
});

test("fromOrt hands over a session output without copying it, and that buffer is the caller's alone", async () => {
  // fromOrt does not copy float32 outputs because onnxruntime-node gives every fetched output a new buffer; this
  // holds even for an output that is the graph's input passed through, the case where aliasing would show.
  const ort = loadOrt();
  const identity = await ort.InferenceSession.create(
    writeOnnxModel({
      name: "identity",
      opset: 17,
      inputs: [{ name: "x", type: "float32", dims: [2] }],
      outputs: [{ name: "y", type: "float32", dims: [2] }],
      nodes: [{ op: "Identity", inputs: ["x"], outputs: ["y"] }],
    }),
  );
  const x = toOrt({ data: Float32Array.from([0.5, -2]), dims: [2] }, "float32");
  const first = await identity.run({ x });
  const second = await identity.run({ x });
  const out = fromOrt(first.y, "y");
  assert.equal(out.data, first.y.data);
  out.data[0] = 7;
  assert.deepEqual(Array.from(x.data as Float32Array), [0.5, -2]);
  assert.deepEqual(Array.from(second.y.data as Float32Array), [0.5, -2]);
});
