import { describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { decodeMessage, encodeMessage } from '../src/protocol/codec.ts';
import { DEFAULT_WORK_LIMITS, type WorkLimits } from '../src/limits.ts';
import { planJob } from '../src/planner.ts';
import { parseRequest, peekRequestId, PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { encodeFloats } from '../src/tensor.ts';
import { f32Bytes } from './support/server-harness.ts';

const limits: WorkLimits = { ...DEFAULT_WORK_LIMITS, maxElements: 4 * 64 * 64, maxSide: 128 };

function latent(shape = [1, 4, 8, 8], dtype: 'float32' | 'float16' | 'bfloat16' = 'float32') {
  const values = new Float32Array(shape.reduce((a, b) => a * b)).map((_, i) => (i % 7) - 3);
  return { dtype, shape, data: encodeFloats(dtype, values) };
}

/** What the server decides for a message: the request's validation, then for inference its plan. */
function errorOf(message: unknown): { code: string; message: string } {
  try {
    const request = parseRequest(message, limits);
    if ('job' in request) planJob(request.job, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return { code: (error as BridgeError).code, message: (error as BridgeError).message };
  }
  throw new Error('expected a validation error');
}

describe('msgpack codec', () => {
  it('encodes plain msgpack maps with binary data as bin, never msgpackr records', () => {
    const isMap = (byte: number) => (byte & 0xf0) === 0x80 || byte === 0xde || byte === 0xdf;
    const frame = encodeMessage({ id: 1, ok: true, data: new Uint8Array([1, 2, 3]) });
    expect(isMap(frame[0])).toBe(true);
    // bin8 of length 3, then the bytes, at the end of the frame
    expect([...frame.subarray(-5)]).toEqual([0xc4, 3, 1, 2, 3]);
    // A second message of the same keys must not turn into a record reference (ext 0x72).
    const again = encodeMessage({ id: 2, ok: true, data: new Uint8Array([1]) });
    expect(isMap(again[0])).toBe(true);
    expect(again.includes(0x72)).toBe(false);
  });

  it('decodes what Python packs, and reports bad bytes as bad_request', () => {
    // {"id": 7, "op": "hello"} as msgpack.packb writes it
    const python = Uint8Array.from([0x82, 0xa2, 0x69, 0x64, 0x07, 0xa2, 0x6f, 0x70, 0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);
    expect(decodeMessage(python)).toEqual({ id: 7, op: 'hello' });
    expect(() => decodeMessage(Uint8Array.from([0xc6, 0xff, 0xff, 0xff, 0xff]))).toThrow(expect.objectContaining({ code: 'bad_request' }));
  });
});

describe('request validation', () => {
  it('accepts every op in its documented form', () => {
    expect(parseRequest({ id: 1, op: 'hello', protocol: PROTOCOL_VERSION, client: 'x' }, limits)).toMatchObject({ op: 'hello', client: 'x' });
    expect(parseRequest({ id: 'a', op: 'models' }, limits)).toEqual({ id: 'a', op: 'models' });
    expect(parseRequest({ id: 2, op: 'watch' }, limits)).toEqual({ id: 2, op: 'watch' });
    const up = parseRequest({ id: 3, op: 'upscale', latent: latent(), family: 'sdxl', scale: 1.5 }, limits);
    expect(up).toMatchObject({ op: 'upscale', dtype: 'float32', job: { op: 'upscale', target: { height: 12, width: 12 } } });
    if (up.op !== 'upscale') throw new Error('unreachable');
    expect(up.job.latent.family).toBe('xl');
    expect(up.job.latent.space).toBe('model');
    expect(parseRequest({ id: 4, op: 'upscale', latent: latent(), family: 'v1', size: [9, 17] }, limits)).toMatchObject({ job: { target: { height: 9, width: 17 } } });
    expect(parseRequest({ id: 5, op: 'interpose', latent: latent(), from: 'xl', to: 'v1' }, limits)).toMatchObject({ op: 'interpose', job: { to: 'v1' } });
    expect(parseRequest({ id: 6, op: 'hires', latent: latent(), from: 'xl', to: 'v3', size: [16, 16] }, limits)).toMatchObject({ op: 'hires', job: { to: 'v3' } });
    const preview = parseRequest({ id: 7, op: 'preview', latent: latent([2, 4, 8, 8], 'bfloat16'), family: 'v1', job: 'j', step: 3, total: 20, index: 1, noreply: true }, limits);
    expect(preview).toMatchObject({ op: 'preview', preview: { job: 'j', step: 3, total: 20, index: 1, grid: false, noreply: true } });
  });

  it('decodes float16 and bfloat16 data and remembers the dtype for the reply', () => {
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const request = parseRequest({ id: 1, op: 'interpose', latent: latent([1, 4, 2, 2], dtype), from: 'v1', to: 'xl' }, limits);
      if (request.op !== 'interpose') throw new Error('unreachable');
      expect(request.dtype).toBe(dtype);
      expect([...request.job.latent.data.slice(0, 4)]).toEqual([-3, -2, -1, 0]);
    }
  });

  it('accepts tensor data at any byte offset (msgpack bin is not aligned)', () => {
    const values = Float32Array.from({ length: 16 }, (_, i) => i / 4);
    const shifted = new Uint8Array(65);
    shifted.set(f32Bytes(values), 1);
    const request = parseRequest({ id: 1, op: 'preview', latent: { dtype: 'float32', shape: [1, 4, 2, 2], data: shifted.subarray(1) }, family: 'v1' }, limits);
    if (request.op !== 'preview') throw new Error('unreachable');
    expect([...request.input.latent.data]).toEqual([...values]);
  });

  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['not a map', [] as unknown as Record<string, unknown>, 'bad_request', /must be a msgpack map/],
    ['no id', { op: 'hello', protocol: PROTOCOL_VERSION }, 'bad_request', /"id"/],
    ['id of a wrong type', { id: 1.5, op: 'models' }, 'bad_request', /"id"/],
    ['unknown op', { id: 1, op: 'explode' }, 'bad_request', /"op" must be one of/],
    ['op not a string', { id: 1, op: 5 }, 'bad_request', /"op"/],
    ['wrong protocol', { id: 1, op: 'hello', protocol: 1 }, 'bad_request', /speaks protocol 2, the client asked for 1/],
    ['client name not a string', { id: 1, op: 'hello', protocol: PROTOCOL_VERSION, client: 3 }, 'bad_request', /"client"/],
    ['unknown family', { id: 1, op: 'upscale', latent: latent(), family: 'sd9', scale: 2 }, 'unknown_family', /sd9/],
    ['a family named after an Object property', { id: 1, op: 'upscale', latent: latent(), family: 'constructor', scale: 2 }, 'unknown_family', /constructor/],
    ['a source family named __proto__', { id: 1, op: 'interpose', latent: latent(), from: '__proto__', to: 'v1' }, 'unknown_family', /__proto__/],
    ['a target family named constructor', { id: 1, op: 'hires', latent: latent(), from: 'v1', to: 'Constructor', size: [16, 16] }, 'unknown_family', /Constructor/],
    ['family not a string', { id: 1, op: 'preview', latent: latent(), family: ['v1'] }, 'bad_request', /"family"/],
    ['no latent', { id: 1, op: 'preview', family: 'v1' }, 'bad_request', /"latent"/],
    ['unknown dtype', { id: 1, op: 'preview', latent: { ...latent(), dtype: 'int8' }, family: 'v1' }, 'bad_request', /latent.dtype/],
    ['3-D shape', { id: 1, op: 'preview', latent: { ...latent(), shape: [4, 8, 8] }, family: 'v1' }, 'bad_tensor', /shape/],
    ['negative dimension', { id: 1, op: 'preview', latent: { ...latent(), shape: [1, 4, -8, -8] }, family: 'v1' }, 'bad_tensor', /shape/],
    ['shape bigger than the data', { id: 1, op: 'preview', latent: { ...latent(), shape: [1, 4, 8, 9] }, family: 'v1' }, 'bad_tensor', /bytes/],
    ['huge declared shape', { id: 1, op: 'preview', latent: { ...latent(), shape: [1e6, 4, 1e6, 1e6] }, family: 'v1' }, 'too_large', /limit/],
    ['data not binary', { id: 1, op: 'preview', latent: { ...latent(), data: 'abc' }, family: 'v1' }, 'bad_request', /latent.data/],
    ['channels of another family', { id: 1, op: 'preview', latent: latent(), family: 'v3' }, 'bad_tensor', /16 channels/],
    ['both size and scale', { id: 1, op: 'upscale', latent: latent(), family: 'v1', size: [16, 16], scale: 2 }, 'bad_request', /exactly one/],
    ['neither size nor scale', { id: 1, op: 'upscale', latent: latent(), family: 'v1' }, 'bad_request', /exactly one/],
    ['size of three numbers', { id: 1, op: 'hires', latent: latent(), from: 'v1', to: 'xl', size: [1, 2, 3] }, 'bad_request', /"size"/],
    ['size of zero', { id: 1, op: 'hires', latent: latent(), from: 'v1', to: 'xl', size: [0, 16] }, 'bad_request', /"size"/],
    ['size beyond max side', { id: 1, op: 'hires', latent: latent(), from: 'v1', to: 'xl', size: [129, 16] }, 'too_large', /--max-side/],
    ['result too large', { id: 1, op: 'hires', latent: latent(), from: 'v1', to: 'v3', size: [64, 64] }, 'too_large', /result.*--max-elements/],
    ['scale beyond max scale', { id: 1, op: 'upscale', latent: latent(), family: 'v1', scale: 16.5 }, 'too_large', /--max-scale/],
    ['negative scale', { id: 1, op: 'upscale', latent: latent(), family: 'v1', scale: -2 }, 'bad_request', /scale must be a number greater than 0/],
    ['a latent holding NaN', { id: 1, op: 'upscale', latent: { ...latent(), data: new Uint8Array(new Float32Array(256).fill(Number.NaN).buffer) }, family: 'v1', scale: 2 }, 'bad_tensor', /non-finite/],
    ['a Cascade latent halved to nothing', { id: 1, op: 'hires', latent: latent([1, 4, 1, 1]), from: 'ca', to: 'v1', size: [1, 1] }, 'bad_request', /too small/],
    ['NaN scale', { id: 1, op: 'upscale', latent: latent(), family: 'v1', scale: NaN }, 'bad_request', /"scale"/],
    ['scale to nothing', { id: 1, op: 'upscale', latent: latent(), family: 'v1', scale: 0.01 }, 'bad_request', /nothing/],
    ['index beyond the batch', { id: 1, op: 'preview', latent: latent(), family: 'v1', index: 1 }, 'bad_request', /"index"/],
    ['step not an integer', { id: 1, op: 'preview', latent: latent(), family: 'v1', step: 'five' }, 'bad_request', /"step"/],
    ['grid not a boolean', { id: 1, op: 'preview', latent: latent(), family: 'v1', grid: 1 }, 'bad_request', /"grid"/],
    ['job too long', { id: 1, op: 'preview', latent: latent(), family: 'v1', job: 'j'.repeat(129) }, 'bad_request', /"job"/],
    ['interpose without to', { id: 1, op: 'interpose', latent: latent(), from: 'v1' }, 'bad_request', /"to"/],
  ];
  for (const [name, message, code, pattern] of cases) {
    it(`refuses ${name} with ${code}`, () => {
      const error = errorOf(message);
      expect(error.code).toBe(code);
      expect(error.message).toMatch(pattern);
    });
  }

  it('finds the id to echo even in an invalid request', () => {
    expect(peekRequestId({ id: 'abc', op: 'nope' })).toBe('abc');
    expect(peekRequestId({ id: 12 })).toBe(12);
    expect(peekRequestId({ id: { nested: 1 } })).toBeNull();
    expect(peekRequestId('text')).toBeNull();
  });
});
