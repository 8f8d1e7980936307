// The ONNX Runtime boundary: the only module that imports onnxruntime-node. Stages hand host tensors (tensor.ts) in
// and get host tensors back; the element type the graphs want (the manifest's Dtype) is applied here, so float16
// packages need no code of their own anywhere else.
import { createRequire } from "node:module";
import type { InferenceSession, Tensor as OrtTensorType } from "onnxruntime-node";
import { fromFloat16, toFloat16 } from "../util/float16.js";
import type { Dtype } from "./manifest.js";
import { checkTensor, elementCount, type Tensor } from "./tensor.js";

export type Session = InferenceSession;
export type SessionCreateOptions = InferenceSession.SessionOptions;
export type OrtTensor = OrtTensorType;
export type OrtFeeds = Record<string, OrtTensor>;
export type Ort = typeof import("onnxruntime-node");

// Telemetry must be off before onnxruntime-node loads, hence the lazy load below.
process.env.ORT_DISABLE_TELEMETRY ??= "1";
const require = createRequire(import.meta.url);
let ortModule: Ort | undefined;
/**
 * onnxruntime-node, loaded on first use (a command that runs no graph never loads its native library). Loaded with
 * require, a CommonJS package, so that the helpers below are synchronous: a decode step builds several inputs,
 * and an await on each cost a microtask turn apiece.
 */
export function loadOrt(): Ort {
  if (!ortModule) {
    ortModule = require("onnxruntime-node") as Ort;
    // ONNX Runtime's own logger writes coloured multi-line reports to stderr (a missing CUDA library, for one);
    // every failure reaches the user as one emu2 line instead.
    ortModule.env.logLevel = "fatal";
  }
  return ortModule;
}

/** A graph input of element type `dtype` holding a host tensor's values (narrowed to float16 when asked). */
export function toOrt(t: Tensor, dtype: Dtype): OrtTensor {
  const ort = loadOrt();
  checkTensor(t, "graph input");
  return dtype === "float16"
    ? new ort.Tensor("float16", toFloat16(t.data), t.dims)
    : new ort.Tensor("float32", t.data, t.dims);
}

/** An int64 graph input (ids, masks, positions). */
export function int64Tensor(values: readonly number[], dims: readonly number[]): OrtTensor {
  // An indexed loop: BigInt64Array.from with a map function walks an iterator and calls back per value.
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
  return int64Feed(data, dims);
}

/** An int64 graph input over values already in an int64 buffer (no copy). */
export function int64Feed(data: BigInt64Array, dims: readonly number[]): OrtTensor {
  const ort = loadOrt();
  if (data.length !== elementCount(dims))
    throw new RangeError(`int64 input: ${data.length} values for dims [${dims.join(",")}]`);
  return new ort.Tensor("int64", data, dims);
}

/** A zero-filled (or zero-length) graph input of element type `dtype`. */
export function zeros(dtype: Dtype, dims: readonly number[]): OrtTensor {
  const ort = loadOrt();
  const n = elementCount(dims);
  return new ort.Tensor(dtype, dtype === "float16" ? new Uint16Array(n) : new Float32Array(n), dims);
}

/**
 * A graph output as a host tensor the caller owns (float16 widened). `what` names the output in errors; an output
 * left on a device is an error here, because every device-resident value is handled by its owner (the KV cache).
 */
export function fromOrt(t: OrtTensor | undefined, what: string): Tensor {
  if (!t) throw new Error(`${what}: missing from the graph's outputs`);
  if (t.location !== "cpu" && t.location !== "cpu-pinned")
    throw new Error(`${what}: expected in host memory, found on ${t.location}`);
  const dims = t.dims.map(Number);
  if (t.type === "float16") return { data: fromFloat16(t.data as Uint16Array), dims };
  // No copy: onnxruntime-node hands every fetched output over in a buffer of its own (even an output that is
  // a graph input passed through), so nothing else holds this one.
  if (t.type === "float32") return { data: t.data as Float32Array, dims };
  throw new Error(`${what}: unexpected element type ${t.type}`);
}
