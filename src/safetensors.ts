import { writeFileAtomically } from './atomic-file.ts';
import { isPlainObject } from './plain-object.ts';
import { readFile } from 'node:fs/promises';
import { BridgeError } from './errors.ts';
import { decodeFloats, encodeFloats, type FloatDtype } from './tensor.ts';

/** The safetensors format: u64 LE header length, JSON header, then raw little-endian tensor data. */

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64';

const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F32: 4, F16: 2, BF16: 2, I64: 8 };
const FLOAT_OF: Readonly<Record<Exclude<SafetensorsDtype, 'I64'>, FloatDtype>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Headers above this are not weight files we could ever use; refusing them bounds memory. */
export const MAX_HEADER_BYTES = 16 * 1024 * 1024;

export interface StoredTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** The tensor's bytes, a view into the file buffer. */
  readonly bytes: Uint8Array;
}

export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

function bad(where: string, message: string): BridgeError {
  return new BridgeError('bad_file', `${where}: ${message}`);
}

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && value in DTYPE_BYTES;
}

/**
 * JSON.parse silently keeps the last of two equal keys, so a file could show one tensor to us and
 * another to a reader that keeps the first; the header's top-level keys are scanned for a repeat.
 */
function firstRepeatedKey(json: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const char = json[i];
    if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
    else if (char === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      let next = i + 1;
      while (' \t\n\r'.includes(json[next])) next++;
      if (depth !== 1 || json[next] !== ':') continue;
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return undefined;
}

/**
 * The tensors' byte ranges must cover the data exactly once, as the reference (Rust) reader demands:
 * overlapping tensors would alias each other, and bytes outside every tensor hide something.
 */
function checkRangesTile(ranges: { name: string; begin: number; end: number }[], dataLength: number, where: string): void {
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous = '';
  for (const { name, begin, end } of ranges) {
    if (begin < covered) throw bad(where, `tensors "${previous}" and "${name}" overlap`);
    if (begin > covered) throw bad(where, `data bytes [${covered}, ${begin}) belong to no tensor`);
    covered = end;
    previous = name;
  }
  if (covered < dataLength) throw bad(where, `data bytes [${covered}, ${dataLength}) belong to no tensor`);
}

/** Parses a whole safetensors file held in memory; `where` names it in error messages. */
export function parseSafetensors(buffer: Uint8Array, where = 'safetensors file'): SafetensorsFile {
  if (buffer.byteLength < 8) throw bad(where, `truncated: ${buffer.byteLength} bytes, not even a header length`);
  // Every safetensors header is a JSON object: anything else (a .pth zip, a .ckpt pickle, text) is no such file.
  if (buffer.byteLength > 8 && buffer[8] !== 0x7b) {
    throw new BridgeError('bad_file', `${where} is not a safetensors file (it does not start with a safetensors header; a .pth or .ckpt file is a pickle, which latent-bridge does not read)`);
  }
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw bad(where, `header of ${headerLength} bytes exceeds the ${MAX_HEADER_BYTES} byte limit`);
  const dataStart = 8 + Number(headerLength);
  if (dataStart > buffer.byteLength) throw bad(where, `truncated: header says ${headerLength} bytes but the file has ${buffer.byteLength}`);

  let json: string;
  let header: unknown;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(8, dataStart));
    header = JSON.parse(json);
  } catch (error) {
    throw bad(where, `header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) throw bad(where, 'header is not a JSON object');
  const repeated = firstRepeatedKey(json);
  if (repeated !== undefined) throw bad(where, `header entry ${JSON.stringify(repeated)} appears twice`);

  const dataLength = buffer.byteLength - dataStart;
  const tensors = new Map<string, StoredTensor>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw bad(where, '__metadata__ is not an object of strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (!isPlainObject(entry)) throw bad(where, `tensor "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDtype(dtype)) throw bad(where, `tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)} (supported: F32, F16, BF16, I64)`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(where, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(where, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) {
      throw bad(where, `tensor "${name}" data [${begin}, ${end}) lies outside the ${dataLength} data bytes (truncated file?)`);
    }
    const expected = (shape as number[]).reduce((n, d) => n * d, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw bad(where, `tensor "${name}" ${dtype}[${shape.join(', ')}] needs ${expected} bytes but has ${end - begin}`);
    }
    tensors.set(name, { dtype, shape: shape as number[], bytes: buffer.subarray(dataStart + begin, dataStart + end) });
    ranges.push({ name, begin, end });
  }
  checkRangesTile(ranges, dataLength, where);
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let buffer: Buffer;
  try {
    buffer = await readFile(file);
  } catch (error) {
    throw new BridgeError('bad_file', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  return parseSafetensors(buffer, file);
}

/** Decodes a floating-point tensor to float32 (I64 tensors are bookkeeping, never network weights). */
export function toFloat32(tensor: StoredTensor, name = 'tensor'): Float32Array {
  if (tensor.dtype === 'I64') throw new BridgeError('bad_file', `${name} is an I64 tensor, expected floating point`);
  return decodeFloats(FLOAT_OF[tensor.dtype], tensor.bytes);
}

export interface TensorToWrite {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Serialises float32 tensors into safetensors bytes (header padded to 8 bytes, as other writers do). */
export function serializeSafetensors(tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: tensor.shape, data_offsets: [offset, offset + tensor.data.byteLength] };
    offset += tensor.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const tensor of Object.values(tensors)) {
    out.set(encodeFloats('float32', tensor.data), position);
    position += tensor.data.byteLength;
  }
  return out;
}

/** Writes through a temporary file and a rename, so a failed write never leaves a half file behind. */
export async function writeSafetensors(file: string, tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Record<string, string>): Promise<void> {
  try {
    await writeFileAtomically(file, serializeSafetensors(tensors, metadata));
  } catch (error) {
    throw new BridgeError('bad_file', `cannot write ${file}: ${(error as Error).message}`, { cause: error });
  }
}
