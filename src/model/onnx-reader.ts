// Reads the weights' names and sizes from an ONNX file (protobuf wire format, onnx/onnx.proto field numbers), without
// their values: enough to name the tensor that does not fit a device's buffer limits. Weights stored as external
// data are listed too (their dims stay in the .onnx file).
import { readFileSync, statSync } from "node:fs";

export interface InitializerSize {
  name: string;
  bytes: number;
}

/** Bytes per element of TensorProto.DataType (4-bit types count as 1: an upper bound). */
const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 21: 1, 22: 1 };

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly end = buf.length) {}

  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
  }

  /** Calls `field` for each (number, wire type, sub-reader or value) of the message up to `end`. */
  fields(visit: (field: number, wire: number, value: number, sub?: Reader) => void): void {
    while (this.pos < this.end) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (wire === 0) visit(field, wire, this.varint());
      else if (wire === 2) {
        const length = this.varint();
        const sub = new Reader(this.buf, this.pos + length);
        sub.pos = this.pos;
        visit(field, wire, length, sub);
        this.pos += length;
      } else if (wire === 1) this.pos += 8;
      else if (wire === 5) this.pos += 4;
      else throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

/** The graph's initializers, largest first; [] for a file too large to read whole (over 1 GiB). */
export function initializerSizes(path: string): InitializerSize[] {
  if (statSync(path).size > 2 ** 30) return [];
  const model = new Reader(readFileSync(path));
  const sizes: InitializerSize[] = [];
  model.fields((field, wire, _value, graph) => {
    if (field !== 7 || wire !== 2 || !graph) return;
    graph.fields((gField, gWire, _v, tensor) => {
      if (gField !== 5 || gWire !== 2 || !tensor) return;
      let name = "";
      let type = 0;
      let count = 1;
      tensor.fields((tField, tWire, value, sub) => {
        if (tField === 1 && tWire === 0) count *= value;
        else if (tField === 1 && tWire === 2 && sub) while (sub.pos < sub.end) count *= sub.varint();
        else if (tField === 2 && tWire === 0) type = value;
        else if (tField === 8 && tWire === 2 && sub) name = new TextDecoder().decode(sub.buf.subarray(sub.pos, sub.end));
      });
      sizes.push({ name, bytes: count * (ELEMENT_BYTES[type] ?? 4) });
    });
  });
  return sizes.sort((a, b) => b.bytes - a.bytes);
}
