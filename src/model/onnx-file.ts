// What an .onnx file declares - its graph's input and output names, its weights' names and sizes, and where its
// external weights live - read from
// the protobuf structure without loading any weights: the reader walks the ModelProto and GraphProto fields by their
// lengths and jumps over every payload it does not need (onnx/onnx.proto defines the field numbers used below).
// A file that is cut short, or is not an ONNX model at all, fails with a one-line reason.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { dirname, join } from "node:path";

export interface ExternalDataRef {
  /** The initializer it belongs to. */
  tensor: string;
  location: string;
  offset: number;
  length: number | undefined;
}

export interface InitializerSize {
  name: string;
  bytes: number;
}

export interface OnnxSummary {
  irVersion: number;
  inputs: string[];
  outputs: string[];
  initializers: Set<string>;
  /** Every initializer's size from its dims and data type (external ones too: their dims stay in the .onnx file). */
  initializerSizes: InitializerSize[];
  externalData: ExternalDataRef[];
}

export class OnnxFileError extends Error {}

/** Bytes per element of TensorProto.DataType (4-bit types count as 1: an upper bound). */
const ELEMENT_BYTES: Record<number, number> = {
  1: 4,
  2: 1,
  3: 1,
  4: 2,
  5: 2,
  6: 4,
  7: 8,
  9: 1,
  10: 2,
  11: 8,
  12: 4,
  13: 8,
  16: 2,
  21: 1,
  22: 1,
};

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/** Positional reads through a small window, so a multi-gigabyte graph costs a few reads per field. */
class FileReader {
  private window = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  byte(pos: number): number {
    if (pos >= this.size) throw new OnnxFileError("the file ends in the middle of a field (truncated?)");
    if (pos < this.windowStart || pos >= this.windowStart + this.window.length) {
      const length = Math.min(64 * 1024, this.size - pos);
      this.window = Buffer.alloc(length);
      readSync(this.fd, this.window, 0, length, pos);
      this.windowStart = pos;
    }
    return this.window[pos - this.windowStart];
  }

  bytes(pos: number, length: number): Buffer {
    if (pos + length > this.size) throw new OnnxFileError("the file ends in the middle of a field (truncated?)");
    const out = Buffer.alloc(length);
    readSync(this.fd, out, 0, length, pos);
    return out;
  }

  varint(pos: number): { value: number; next: number } {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(pos + i);
      value += (b & 0x7f) * scale;
      scale *= 128;
      if ((b & 0x80) === 0) return { value, next: pos + i + 1 };
    }
    throw new OnnxFileError("malformed protobuf varint");
  }
}

interface Field {
  number: number;
  wire: number;
  /** For LEN fields: where the payload starts; for VARINT: the value. */
  start: number;
  value: number;
  end: number;
}

/** The fields of the message in [start, end), payloads skipped; any length that runs past `end` fails. */
function* fields(reader: FileReader, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const tag = reader.varint(pos);
    const number = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (number === 0) throw new OnnxFileError("not a protobuf message (field number 0)");
    pos = tag.next;
    let field: Field;
    if (wire === VARINT) {
      const v = reader.varint(pos);
      field = { number, wire, start: pos, value: v.value, end: v.next };
    } else if (wire === I64 || wire === I32) {
      field = { number, wire, start: pos, value: 0, end: pos + (wire === I64 ? 8 : 4) };
    } else if (wire === LEN) {
      const length = reader.varint(pos);
      field = { number, wire, start: length.next, value: length.value, end: length.next + length.value };
    } else {
      throw new OnnxFileError(`not a protobuf message (wire type ${wire})`);
    }
    if (field.end > end) {
      throw new OnnxFileError(
        end === reader.size
          ? "the file ends in the middle of a field (truncated?)"
          : "a field runs past the end of its message",
      );
    }
    pos = field.end;
    yield field;
  }
}

function expectWire(field: Field, wire: number, what: string): void {
  if (field.wire !== wire) throw new OnnxFileError(`not an ONNX model (${what} has the wrong type)`);
}

function text(reader: FileReader, field: Field): string {
  if (field.value > 1 << 20) throw new OnnxFileError("not an ONNX model (an implausibly long name)");
  return reader.bytes(field.start, field.value).toString("utf8");
}

/** ValueInfoProto.name (1). */
function valueInfoName(reader: FileReader, field: Field): string {
  for (const f of fields(reader, field.start, field.end)) if (f.number === 1 && f.wire === LEN) return text(reader, f);
  return "";
}

/** TensorProto: dims (1, packed or not), data_type (2), name (8), external_data (13: key 1, value 2), data_location (14, 1 = EXTERNAL). */
function tensorDeclaration(reader: FileReader, field: Field): TensorDeclaration {
  let name = "";
  const dims: number[] = [];
  let dataType = 0;
  let external = false;
  let rawData: { start: number; length: number } | undefined;
  const entries = new Map<string, string>();
  for (const f of fields(reader, field.start, field.end)) {
    if (f.number === 1 && f.wire === VARINT) dims.push(f.value);
    else if (f.number === 1 && f.wire === LEN) {
      for (let pos = f.start; pos < f.end;) {
        const dim = reader.varint(pos);
        dims.push(dim.value);
        pos = dim.next;
      }
    } else if (f.number === 9 && f.wire === LEN) rawData = { start: f.start, length: f.value };
    else if (f.number === 2 && f.wire === VARINT) dataType = f.value;
    else if (f.number === 8 && f.wire === LEN) name = text(reader, f);
    else if (f.number === 14 && f.wire === VARINT) external = f.value === 1;
    else if (f.number === 13 && f.wire === LEN) {
      let key = "";
      let value = "";
      for (const e of fields(reader, f.start, f.end)) {
        if (e.number === 1 && e.wire === LEN) key = text(reader, e);
        if (e.number === 2 && e.wire === LEN) value = text(reader, e);
      }
      entries.set(key, value);
    }
  }
  const bytes = dims.reduce((n, d) => n * d, 1) * (ELEMENT_BYTES[dataType] ?? 4);
  if (!external) return { name, bytes, dims, dataType, rawData };
  const location = entries.get("location");
  if (location === undefined) throw new OnnxFileError(`initializer ${name} is stored externally but names no location`);
  const offset = Number(entries.get("offset") ?? 0);
  const length = entries.has("length") ? Number(entries.get("length")) : undefined;
  return { name, bytes, dims, dataType, external: { location, offset, length } };
}

interface TensorDeclaration {
  name: string;
  bytes: number;
  dims: number[];
  /** TensorProto.DataType: 1 float32, 10 float16, ... */
  dataType: number;
  /** Where raw_data (9) lies in the file, for a tensor stored in it that way. */
  rawData?: { start: number; length: number };
  external?: Omit<ExternalDataRef, "tensor">;
}

/** NodeProto: input (1), output (2), op_type (4), attribute (5: name 1, i 3), domain (7). */
interface NodeDeclaration {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  /** Integer attributes by name. */
  ints: Map<string, number>;
  /** Names of every attribute. */
  attributes: string[];
}

function nodeDeclaration(reader: FileReader, field: Field): NodeDeclaration {
  const node: NodeDeclaration = { opType: "", domain: "", inputs: [], outputs: [], ints: new Map(), attributes: [] };
  for (const f of fields(reader, field.start, field.end)) {
    if (f.wire !== LEN) continue;
    if (f.number === 1) node.inputs.push(text(reader, f));
    else if (f.number === 2) node.outputs.push(text(reader, f));
    else if (f.number === 4) node.opType = text(reader, f);
    else if (f.number === 7) node.domain = text(reader, f);
    else if (f.number === 5) {
      let name = "";
      let value: number | undefined;
      for (const a of fields(reader, f.start, f.end)) {
        if (a.number === 1 && a.wire === LEN) name = text(reader, a);
        // AttributeProto.i is an int64 varint: a negative axis arrives as a 10-byte two's complement, read here as
        // a number near 2^64, which no axis check below accepts.
        if (a.number === 3 && a.wire === VARINT) value = a.value;
      }
      node.attributes.push(name);
      if (value !== undefined) node.ints.set(name, value);
    }
  }
  return node;
}

interface GraphDeclarations {
  irVersion: number;
  inputs: string[];
  outputs: string[];
  initializers: TensorDeclaration[];
  /** Only when asked for (a large graph has thousands). */
  nodes: NodeDeclaration[];
}

/** Walks an .onnx file's ModelProto and GraphProto; throws OnnxFileError saying why it is not a readable ONNX model. */
function readGraph(path: string, withNodes: boolean): GraphDeclarations {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size === 0) throw new OnnxFileError("the file is empty");
    const reader = new FileReader(fd, size);
    let irVersion: number | undefined;
    let graph: Field | undefined;
    // ModelProto: ir_version (1), producer/domain/doc strings (2, 3, 4, 6), model_version (5), graph (7),
    // opset_import (8), metadata_props (14), training_info (20), functions (25).
    for (const f of fields(reader, 0, size)) {
      if (f.number === 1) {
        expectWire(f, VARINT, "ir_version");
        irVersion = f.value;
      } else if (f.number === 7) {
        expectWire(f, LEN, "graph");
        graph = f;
      } else if ([2, 3, 4, 6, 8, 14, 20, 25].includes(f.number)) {
        expectWire(f, LEN, `field ${f.number}`);
      } else if (f.number === 5) {
        expectWire(f, VARINT, "model_version");
      }
    }
    if (irVersion === undefined || irVersion < 1 || irVersion > 100)
      throw new OnnxFileError("not an ONNX model (no IR version)");
    if (!graph) throw new OnnxFileError("not an ONNX model (no graph)");
    const declarations: GraphDeclarations = { irVersion, inputs: [], outputs: [], initializers: [], nodes: [] };
    // GraphProto: node (1), name (2), initializer (5), doc_string (10), input (11), output (12), value_info (13),
    // quantization_annotation (14), sparse_initializer (15), metadata_props (16): all length-delimited.
    for (const f of fields(reader, graph.start, graph.end)) {
      expectWire(f, LEN, `graph field ${f.number}`);
      if (f.number === 11) declarations.inputs.push(valueInfoName(reader, f));
      else if (f.number === 12) declarations.outputs.push(valueInfoName(reader, f));
      else if (f.number === 5) declarations.initializers.push(tensorDeclaration(reader, f));
      else if (f.number === 1 && withNodes) declarations.nodes.push(nodeDeclaration(reader, f));
    }
    return declarations;
  } finally {
    closeSync(fd);
  }
}

/** Reads the declarations of an .onnx file; throws OnnxFileError saying why it is not a readable ONNX model. */
export function readOnnxSummary(path: string): OnnxSummary {
  const graph = readGraph(path, false);
  return {
    irVersion: graph.irVersion,
    inputs: graph.inputs,
    outputs: graph.outputs,
    initializers: new Set(graph.initializers.map((t) => t.name)),
    initializerSizes: graph.initializers.map((t) => ({ name: t.name, bytes: t.bytes })),
    externalData: graph.initializers.flatMap((t) => (t.external ? [{ tensor: t.name, ...t.external }] : [])),
  };
}

/** Where the table of a lookup graph lies: rows x cols values, row-major, little-endian, from `offset` of `file`. */
export interface LookupTableLocation {
  /** The .onnx file itself, or its external data file. */
  file: string;
  offset: number;
  rows: number;
  cols: number;
  dtype: "float32" | "float16";
}

/**
 * The table of a graph that only looks rows up: its one output made by a Gather (axis 0, the default domain) of a
 * 2-D float32 or float16 initializer by the graph's one input - as an embedding graph is. Undefined for any other
 * graph (an op after the lookup, a quantized table, another axis), whose output only its session can compute.
 */
export function readLookupTable(path: string): LookupTableLocation | undefined {
  const graph = readGraph(path, true);
  const names = new Set(graph.initializers.map((t) => t.name));
  // Before IR version 4 initializers were listed among the graph's inputs too.
  const inputs = graph.inputs.filter((name) => !names.has(name));
  if (inputs.length !== 1 || graph.outputs.length !== 1) return undefined;
  const node = graph.nodes.find((n) => n.outputs.includes(graph.outputs[0]));
  if (!node) return undefined;
  const axis = node.ints.get("axis") ?? 0;
  if (node.opType !== "Gather" || !["", "ai.onnx"].includes(node.domain) || axis !== 0) return undefined;
  if (node.attributes.some((name) => name !== "axis")) return undefined;
  if (node.inputs[1] !== inputs[0]) return undefined;
  const table = graph.initializers.find((t) => t.name === node.inputs[0]);
  if (!table || table.dims.length !== 2 || (table.dataType !== 1 && table.dataType !== 10)) return undefined;
  const [rows, cols] = table.dims;
  const dtype = table.dataType === 1 ? "float32" : "float16";
  if (table.rawData) {
    if (table.rawData.length !== table.bytes) return undefined;
    return { file: path, offset: table.rawData.start, rows, cols, dtype };
  }
  if (!table.external || (table.external.length !== undefined && table.external.length < table.bytes)) return undefined;
  const file = join(dirname(path), table.external.location);
  return { file, offset: table.external.offset, rows, cols, dtype };
}

/** The graph's initializers, largest first (to name the weight that does not fit a device's buffer limits). */
export function initializerSizes(path: string): InitializerSize[] {
  return readOnnxSummary(path).initializerSizes.sort((a, b) => b.bytes - a.bytes);
}
