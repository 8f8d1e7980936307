// A minimal ONNX model writer (protobuf wire format, onnx/onnx.proto field numbers) for the few small graphs the
// runtime builds for itself, such as the device KV cache's row selection (llm/device-kv-cache.ts). Those graphs
// depend only on an element type and a count of tensors, not on a package, so they are made when needed instead of
// being exported and shipped in every package.

export type ElemType = "float32" | "float16" | "int64";
const ELEM_TYPE: Record<ElemType, number> = { float32: 1, int64: 7, float16: 10 };

/** A dim is a fixed size or a symbolic name. */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  type: ElemType;
  dims: readonly Dim[];
}

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Integer attributes (e.g. Gather's axis). */
  ints?: Record<string, number>;
}

export interface GraphSpec {
  name: string;
  opset: number;
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  nodes: readonly NodeSpec[];
}

class Writer {
  private readonly bytes: number[] = [];

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.bytes.push(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  int(field: number, value: number): this {
    this.varint((field << 3) | 0);
    this.varint(value);
    return this;
  }

  raw(field: number, payload: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(payload.length);
    for (const b of payload) this.bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.raw(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: Writer) => void): this {
    const inner = new Writer();
    build(inner);
    return this.raw(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

function valueInfo(w: Writer, v: ValueInfo): void {
  w.string(1, v.name).message(2, (type) =>
    type.message(1, (tensor) =>
      tensor.int(1, ELEM_TYPE[v.type]).message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.string(2, d)));
      }),
    ),
  );
}

/** The serialized ModelProto (IR version 8) of a graph of standard-domain operators. */
export function writeOnnxModel(spec: GraphSpec): Uint8Array {
  return new Writer()
    .int(1, 8)
    .string(2, "emu2")
    .message(7, (g) => {
      spec.nodes.forEach((n, i) =>
        g.message(1, (node) => {
          n.inputs.forEach((name) => node.string(1, name));
          n.outputs.forEach((name) => node.string(2, name));
          node.string(3, `${n.op}_${i}`).string(4, n.op);
          for (const [name, value] of Object.entries(n.ints ?? {}))
            node.message(5, (a) => a.string(1, name).int(3, value).int(20, 2));
        }),
      );
      g.string(2, spec.name);
      spec.inputs.forEach((v) => g.message(11, (w) => valueInfo(w, v)));
      spec.outputs.forEach((v) => g.message(12, (w) => valueInfo(w, v)));
    })
    .message(8, (op) => op.string(1, "").int(2, spec.opset))
    .finish();
}
