import { BridgeError } from '../errors.ts';
import { checkElements, type WorkLimits } from '../limits.ts';
import { BYTES_PER_ELEMENT, decodeFloats, encodeFloats, FLOAT_DTYPES, type FloatDtype, type Shape4 } from '../tensor.ts';
import { fail, isWireMap, type WireMap } from './fields.ts';

/** A tensor as it travels: NCHW, little-endian bytes of `dtype`. */
export interface WireTensor {
  readonly dtype: FloatDtype;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** A decoded tensor: float32 for compute, with the dtype to answer in. */
export interface ReceivedTensor {
  readonly dtype: FloatDtype;
  readonly shape: Shape4;
  readonly data: Float32Array;
}

function isFloatDtype(value: unknown): value is FloatDtype {
  return typeof value === 'string' && (FLOAT_DTYPES as readonly string[]).includes(value);
}

/**
 * Checks every part of a tensor map before touching its bytes: the declared shape is bounded
 * by `maxElements` first, so a lying shape can never make the server allocate.
 */
export function readTensor(map: WireMap, field: string, limits: WorkLimits): ReceivedTensor {
  const value = map[field];
  if (!isWireMap(value)) fail(field, 'a tensor map {dtype, shape, data}', value);
  const { dtype, shape, data } = value;
  if (!isFloatDtype(dtype)) fail(`${field}.dtype`, `one of ${FLOAT_DTYPES.join(', ')}`, dtype);
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 1)) {
    throw new BridgeError('bad_tensor', `"${field}.shape" must be [batch, channels, height, width] of positive integers`);
  }
  checkElements(`"${field}"`, shape as number[], limits);
  const elements = (shape as number[]).reduce((n, d) => n * d, 1);
  if (!(data instanceof Uint8Array)) fail(`${field}.data`, 'binary data (msgpack bin)', data);
  const expected = elements * BYTES_PER_ELEMENT[dtype];
  if (data.byteLength !== expected) {
    throw new BridgeError(
      'bad_tensor',
      `"${field}" declares ${dtype} [${shape.join(', ')}], which is ${expected} bytes, but its data has ${data.byteLength} bytes`,
    );
  }
  const [n, c, h, w] = shape as number[];
  return { dtype, shape: [n, c, h, w], data: decodeFloats(dtype, data) };
}

export function writeTensor(dtype: FloatDtype, shape: Shape4, data: Float32Array): WireTensor {
  return { dtype, shape: [...shape], data: encodeFloats(dtype, data) };
}
