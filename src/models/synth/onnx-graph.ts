/**
 * A minimal ONNX graph builder: inputs, outputs, initializers (eager or lazy bytes) and nodes with
 * automatically named outputs, serialized to a ModelProto (IR version 8, default-domain opset 17).
 */
import { ProtoMessage, type LazyBytes } from './onnx-proto.js';
import { littleEndianBytes } from './numeric.js';

/** Element types used by the synthesized graphs, with their TensorProto.DataType codes. */
export const ELEMENT_TYPES = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, float16: 10 } as const;
export type ElementType = keyof typeof ELEMENT_TYPES;

const BYTES_PER_ELEMENT: Record<ElementType, number> = {
  float32: 4,
  uint8: 1,
  int8: 1,
  int32: 4,
  int64: 8,
  float16: 2,
};

/** A dimension: a fixed size or a symbolic name (`batch_size`, `sequence_length`). */
export type Dim = number | string;

/** A node attribute, tagged by its ONNX attribute type. */
export type Attribute =
  | { readonly i: number }
  | { readonly f: number }
  | { readonly ints: readonly number[] }
  | { readonly s: string };

export const IR_VERSION = 8;
export const OPSET_VERSION = 17;

interface ValueInfo {
  readonly name: string;
  readonly type: ElementType;
  readonly dims: readonly Dim[];
}

interface Initializer {
  readonly name: string;
  readonly type: ElementType;
  readonly dims: readonly number[];
  readonly data: Uint8Array | LazyBytes;
}

interface NodeSpec {
  readonly op: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: Readonly<Record<string, Attribute>>;
  readonly domain: string;
}

/**
 * Builds one ONNX graph.
 *
 * @example
 *   const g = new OnnxGraph('double');
 *   g.input('x', 'float32', ['n']);
 *   const y = g.op('Mul', ['x', g.constFloat([2])]);
 *   g.output(g.rename(y, 'y'), 'float32', ['n']);
 *   await g.toModel('glimpse').writeTo(handle);
 */
export class OnnxGraph {
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly initializers: Initializer[] = [];
  private readonly nodes: NodeSpec[] = [];
  private readonly names = new Set<string>();
  private counter = 0;
  private scope = '';

  constructor(readonly name: string) {}

  /** Prefix for the names of nodes made until the next call (like `/encoder/layers.0/attn`). */
  setScope(scope: string): void {
    this.scope = scope;
  }

  input(name: string, type: ElementType, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push({ name, type, dims });
    return name;
  }

  output(name: string, type: ElementType, dims: readonly Dim[]): string {
    this.outputs.push({ name, type, dims });
    return name;
  }

  /** Adds a weight; `data` is its raw little-endian bytes, or lazy bytes of exactly that size. */
  initializer(
    name: string,
    type: ElementType,
    dims: readonly number[],
    data: Uint8Array | LazyBytes,
  ): string {
    const expected = dims.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[type];
    if (data.byteLength !== expected) {
      throw new Error(
        `initializer ${name}: ${data.byteLength} bytes for dims [${dims.join(', ')}] of ${type}`,
      );
    }
    this.claim(name);
    this.initializers.push({ name, type, dims, data });
    return name;
  }

  /** A float32 constant (scalar when `dims` is []). */
  constFloat(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.initializer(
      this.fresh('const_f'),
      'float32',
      dims,
      littleEndianBytes(Float32Array.from(values)),
    );
  }

  /** An int64 constant (scalar when `dims` is []). */
  constInt64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.initializer(this.fresh('const_i'), 'int64', dims, littleEndianBytes(data));
  }

  /** Adds a node with `outputCount` fresh outputs and returns their names. */
  node(
    op: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, Attribute>> = {},
    outputCount = 1,
    domain = '',
  ): string[] {
    const base = `${this.scope}/${op}_${this.counter++}`;
    const outputs = Array.from({ length: outputCount }, (_, i) => {
      const out = `${base}_output_${i}`;
      this.claim(out);
      return out;
    });
    this.nodes.push({ op, name: base, inputs, outputs, attributes, domain });
    return outputs;
  }

  /** Adds a node with one output and returns its name. */
  op(op: string, inputs: readonly string[], attributes: Readonly<Record<string, Attribute>> = {}): string {
    return this.node(op, inputs, attributes)[0]!;
  }

  /** Gives a value a public name (graph outputs): an Identity node from `value` to `name`. */
  rename(value: string, name: string): string {
    this.claim(name);
    this.nodes.push({
      op: 'Identity',
      name: `${this.scope}/Identity_${this.counter++}`,
      inputs: [value],
      outputs: [name],
      attributes: {},
      domain: '',
    });
    return name;
  }

  /** Name, type and dims of every initializer, in file order (to count parameters). */
  listInitializers(): Array<{ name: string; type: ElementType; dims: readonly number[] }> {
    return this.initializers.map(({ name, type, dims }) => ({ name, type, dims }));
  }

  /** Serializes the graph as a ModelProto. */
  toModel(producer: string, producerVersion = '0'): ProtoMessage {
    const graph = new ProtoMessage();
    for (const n of this.nodes) graph.message(1, encodeNode(n));
    graph.string(2, this.name);
    for (const t of this.initializers) graph.message(5, encodeTensor(t));
    for (const v of this.inputs) graph.message(11, encodeValueInfo(v));
    for (const v of this.outputs) graph.message(12, encodeValueInfo(v));

    const model = new ProtoMessage();
    model.int(1, IR_VERSION);
    model.string(2, producer);
    model.string(3, producerVersion);
    model.message(7, graph);
    model.message(8, new ProtoMessage().string(1, '').int(2, OPSET_VERSION));
    return model;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`duplicate value name ${name}`);
    this.names.add(name);
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }
}

function encodeNode(n: NodeSpec): ProtoMessage {
  const m = new ProtoMessage();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, n.name);
  m.string(4, n.op);
  for (const [name, attr] of Object.entries(n.attributes)) m.message(5, encodeAttribute(name, attr));
  if (n.domain !== '') m.string(7, n.domain);
  return m;
}

// AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7).
function encodeAttribute(name: string, attr: Attribute): ProtoMessage {
  const m = new ProtoMessage().string(1, name);
  if ('i' in attr) return m.int(3, attr.i).int(20, 2);
  if ('f' in attr) return m.float(2, attr.f).int(20, 1);
  if ('s' in attr) return m.string(4, attr.s).int(20, 3);
  for (const v of attr.ints) m.int(8, v);
  return m.int(20, 7);
}

// TensorProto: dims 1, data_type 2, name 8, raw_data 9.
function encodeTensor(t: Initializer): ProtoMessage {
  const m = new ProtoMessage();
  for (const d of t.dims) m.int(1, d);
  m.int(2, ELEMENT_TYPES[t.type]);
  m.string(8, t.name);
  m.bytes(9, t.data);
  return m;
}

// ValueInfoProto { name 1, type 2 }, TypeProto { tensor_type 1 }, Tensor { elem_type 1, shape 2 },
// TensorShapeProto { dim 1 }, Dimension { dim_value 1, dim_param 2 }.
function encodeValueInfo(v: ValueInfo): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of v.dims) {
    shape.message(1, typeof d === 'number' ? new ProtoMessage().int(1, d) : new ProtoMessage().string(2, d));
  }
  const tensor = new ProtoMessage().int(1, ELEMENT_TYPES[v.type]).message(2, shape);
  return new ProtoMessage().string(1, v.name).message(2, new ProtoMessage().message(1, tensor));
}
