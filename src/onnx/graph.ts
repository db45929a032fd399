import { ProtobufWriter } from './protobuf.ts';

/**
 * Builds an ONNX ModelProto (IR 8, opset 17) node by node. Field numbers are those of onnx.proto;
 * only what float32 convolutional graphs (and their int64/double index arithmetic) need is covered.
 */

const IR_VERSION = 8;
const OPSET = 17;
export const ELEM_FLOAT = 1;
export const ELEM_INT64 = 7;
export const ELEM_DOUBLE = 11;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

export type AttributeValue = number | string | readonly number[] | { readonly float: number };
export type Dim = number | string;

interface NodeSpec {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

/** Initializer data; the array type gives the ONNX element type. */
export type ConstantData = Float32Array | Float64Array | BigInt64Array;

interface Initializer {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: ConstantData;
}

interface ValueInfo {
  readonly name: string;
  readonly dims: readonly Dim[];
}

export class GraphBuilder {
  readonly #nodes: NodeSpec[] = [];
  readonly #initializers: Initializer[] = [];
  readonly #inputs: ValueInfo[] = [];
  readonly #outputs: ValueInfo[] = [];
  #counter = 0;

  input(name: string, dims: readonly Dim[]): string {
    this.#inputs.push({ name, dims });
    return name;
  }

  output(name: string, dims: readonly Dim[]): void {
    this.#outputs.push({ name, dims });
  }

  constant(name: string, dims: readonly number[], data: ConstantData): string {
    this.#initializers.push({ name, dims, data });
    return name;
  }

  /** Adds a node with one output and returns that output's name. */
  node(op: string, inputs: readonly string[], attributes: Readonly<Record<string, AttributeValue>> = {}, output?: string): string {
    const name = output ?? `${op.toLowerCase()}_${this.#counter++}`;
    this.#nodes.push({ op, inputs, outputs: [name], attributes });
    return name;
  }

  toBytes(producer: string): Uint8Array {
    const model = new ProtobufWriter();
    model.int(1, IR_VERSION);
    model.string(2, producer);
    model.message(7, (graph) => {
      this.#nodes.forEach((node, index) => graph.message(1, (w) => writeNode(w, node, index)));
      graph.string(2, producer);
      for (const init of this.#initializers) graph.message(5, (w) => writeTensor(w, init));
      for (const input of this.#inputs) graph.message(11, (w) => writeValueInfo(w, input));
      for (const output of this.#outputs) graph.message(12, (w) => writeValueInfo(w, output));
    });
    model.message(8, (opset) => opset.string(1, '').int(2, OPSET));
    return model.finish();
  }
}

function writeNode(w: ProtobufWriter, node: NodeSpec, index: number): void {
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(3, `n${index}`);
  w.string(4, node.op);
  for (const [name, value] of Object.entries(node.attributes)) {
    w.message(5, (a) => {
      a.string(1, name);
      if (typeof value === 'number') a.int(3, value).int(20, ATTR_INT);
      else if (typeof value === 'string') a.string(4, value).int(20, ATTR_STRING);
      else if ('float' in value) a.float(2, value.float).int(20, ATTR_FLOAT);
      else {
        for (const v of value) a.int(8, v);
        a.int(20, ATTR_INTS);
      }
    });
  }
}

function writeTensor(w: ProtobufWriter, tensor: Initializer): void {
  for (const d of tensor.dims) w.int(1, d);
  const { data } = tensor;
  w.int(2, data instanceof Float32Array ? ELEM_FLOAT : data instanceof Float64Array ? ELEM_DOUBLE : ELEM_INT64);
  w.string(8, tensor.name);
  w.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function writeValueInfo(w: ProtobufWriter, info: ValueInfo): void {
  w.string(1, info.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ELEM_FLOAT);
      tensor.message(2, (shape) => {
        for (const d of info.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}
