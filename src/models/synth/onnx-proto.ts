/**
 * A small protobuf wire-format writer for ONNX models (field numbers from onnx.proto), built for
 * large random weights: tensor bytes are "lazy" chunks whose length is known up front and whose
 * content is produced only while the file is written, so a model of any size needs memory for one
 * tensor at a time, never for the whole file.
 */
import type { FileHandle } from 'node:fs/promises';

/** Bytes whose length is known now and whose content is made when written. */
export interface LazyBytes {
  readonly byteLength: number;
  produce(): Uint8Array;
}

type Chunk = Uint8Array | LazyBytes;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/**
 * One protobuf message under construction: fields are appended in order; sub-messages are embedded
 * with their (already known) length.
 *
 * @example
 *   const op = new ProtoMessage().string(1, '').int(2, 17); // OperatorSetIdProto { domain: '', version: 17 }
 */
export class ProtoMessage {
  private readonly chunks: Chunk[] = [];
  private pending: number[] = [];
  private size = 0;

  get byteLength(): number {
    return this.size + this.pending.length;
  }

  /** An int32/int64/enum/bool field (varint; negative numbers as 10-byte two's complement). */
  int(field: number, value: number): this {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  /** A float field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    for (const x of b) this.pending.push(x);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  bytes(field: number, value: Uint8Array | LazyBytes): this {
    this.tag(field, WIRE_LEN);
    this.varint(value.byteLength);
    if (value instanceof Uint8Array && value.byteLength <= 64) {
      for (const x of value) this.pending.push(x);
    } else {
      this.push(value);
    }
    return this;
  }

  message(field: number, sub: ProtoMessage): this {
    this.tag(field, WIRE_LEN);
    this.varint(sub.byteLength);
    sub.flush();
    for (const c of sub.chunks) this.push(c);
    return this;
  }

  /** Writes the message to an open file, producing lazy chunks one at a time; returns bytes written. */
  async writeTo(handle: FileHandle): Promise<number> {
    this.flush();
    let written = 0;
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    const drain = async (): Promise<void> => {
      if (batch.length === 0) return;
      await handle.writev(batch);
      batch = [];
      batchBytes = 0;
    };
    for (const c of this.chunks) {
      const data = c instanceof Uint8Array ? c : c.produce();
      if (data.byteLength !== c.byteLength) {
        throw new Error(`lazy chunk produced ${data.byteLength} bytes, announced ${c.byteLength}`);
      }
      batch.push(data);
      batchBytes += data.byteLength;
      written += data.byteLength;
      if (batchBytes >= 1 << 22 || batch.length >= 512) await drain();
    }
    await drain();
    return written;
  }

  /** The whole message as one buffer (for small messages and tests). */
  toBytes(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const c of this.chunks) {
      const data = c instanceof Uint8Array ? c : c.produce();
      out.set(data, off);
      off += data.byteLength;
    }
    return out;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  private varint(value: number): void {
    if (!Number.isSafeInteger(value)) throw new Error(`varint ${value} is not a safe integer`);
    if (value < 0) {
      let v = BigInt.asUintN(64, BigInt(value));
      while (v >= 0x80n) {
        this.pending.push(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
      this.pending.push(Number(v));
      return;
    }
    let v = value;
    while (v >= 0x80) {
      this.pending.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.pending.push(v);
  }

  private push(chunk: Chunk): void {
    this.flush();
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const bytes = Uint8Array.from(this.pending);
    this.pending = [];
    this.chunks.push(bytes);
    this.size += bytes.byteLength;
  }
}
