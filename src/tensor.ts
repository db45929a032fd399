import { BridgeError } from './errors.ts';

/** An NCHW float32 tensor: the only layout the networks and previews work on. */
export type Shape4 = readonly [batch: number, channels: number, height: number, width: number];

export interface Tensor4 {
  readonly shape: Shape4;
  readonly data: Float32Array;
}

/** Element types accepted on the wire and in files; all are converted to float32 for compute. */
export const FLOAT_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

export const BYTES_PER_ELEMENT: Readonly<Record<FloatDtype, number>> = { float32: 4, float16: 2, bfloat16: 2 };

/** A latent's spatial size, in latent pixels. */
export interface Size {
  readonly height: number;
  readonly width: number;
}

/** The spatial size of an NCHW tensor. */
export function sizeOf(tensor: Tensor4): Size {
  return { height: tensor.shape[2], width: tensor.shape[3] };
}

/** PyTorch's `nn.Upsample` output size: floor(in * factor). */
export function scaledSize(size: Size, factor: number): Size {
  return { height: Math.floor(size.height * factor), width: Math.floor(size.width * factor) };
}

export function describeSize(size: Size): string {
  return `${size.height}x${size.width}`;
}

/** One item of a batch, sharing the batch's memory. */
export function batchItem(tensor: Tensor4, index: number): Tensor4 {
  const [, c, h, w] = tensor.shape;
  const size = c * h * w;
  return { shape: [1, c, h, w], data: tensor.data.subarray(index * size, (index + 1) * size) };
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

export function tensor4(shape: readonly number[], data: Float32Array): Tensor4 {
  if (shape.length !== 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new BridgeError('bad_tensor', `expected a shape [batch, channels, height, width] of positive integers, got [${shape.join(', ')}]`);
  }
  if (elementCount(shape) !== data.length) {
    throw new BridgeError('bad_tensor', `shape [${shape.join(', ')}] holds ${elementCount(shape)} values but ${data.length} were given`);
  }
  return { shape: [shape[0], shape[1], shape[2], shape[3]], data };
}

const f16Table = buildF16Table();

function buildF16Table(): Float32Array {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[h] = mantissa ? NaN : sign * Infinity;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return table;
}

/** Views little-endian bytes as u16, copying when unaligned (wire and file buffers often are; Buffer#slice would not copy). */
function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(new Uint8Array(bytes).buffer);
}

/** Decodes little-endian float32/float16/bfloat16 bytes into a fresh Float32Array. */
export function decodeFloats(dtype: FloatDtype, bytes: Uint8Array): Float32Array {
  const size = BYTES_PER_ELEMENT[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new BridgeError('bad_tensor', `${bytes.byteLength} bytes is not a whole number of ${dtype} values`);
  }
  switch (dtype) {
    case 'float32':
      return new Float32Array(new Uint8Array(bytes).buffer);
    case 'float16': {
      const halves = u16View(bytes);
      const out = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = f16Table[halves[i]];
      return out;
    }
    case 'bfloat16': {
      const halves = u16View(bytes);
      const out = new Uint32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = halves[i] << 16;
      return new Float32Array(out.buffer);
    }
  }
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

function floatToHalf(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  let e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

function floatToBfloat(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0];
  if (Number.isNaN(value)) return (x >>> 16) | 0x40;
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** Encodes float32 values as little-endian bytes of the given dtype (round to nearest even). */
export function encodeFloats(dtype: FloatDtype, values: Float32Array): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const halves = new Uint16Array(values.length);
  const convert = dtype === 'float16' ? floatToHalf : floatToBfloat;
  for (let i = 0; i < values.length; i++) halves[i] = convert(values[i]);
  return new Uint8Array(halves.buffer);
}
