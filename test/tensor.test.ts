import { describe, expect, it } from 'vitest';
import { decodeFloats, encodeFloats, tensor4 } from '../src/tensor.ts';

describe('float encodings', () => {
  const values = Float32Array.from([0, -0, 1, -1, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 0.1, 3.14159, -1234.5, Infinity, -Infinity]);

  it('float32 round-trips exactly', () => {
    expect(decodeFloats('float32', encodeFloats('float32', values))).toEqual(values);
  });

  it('float16 round-trips representable values exactly and rounds others to nearest', () => {
    const back = decodeFloats('float16', encodeFloats('float16', values));
    expect([...back.subarray(0, 8)]).toEqual([...values.subarray(0, 8)]);
    expect(back[8]).toBeCloseTo(0.1, 3);
    expect(back[9]).toBeCloseTo(3.14159, 2);
    expect(back[11]).toBe(Infinity);
    expect(back[12]).toBe(-Infinity);
    // Beyond the largest half, to infinity; NaN stays NaN.
    expect(decodeFloats('float16', encodeFloats('float16', Float32Array.of(70000, NaN)))).toEqual(Float32Array.of(Infinity, NaN));
  });

  it('float16 rounds ties to even', () => {
    // 2049 lies halfway between 2048 and 2050 (spacing 2): even mantissa wins -> 2048.
    expect(decodeFloats('float16', encodeFloats('float16', Float32Array.of(2049, 2051)))).toEqual(Float32Array.of(2048, 2052));
  });

  it('bfloat16 keeps the exponent range and rounds to nearest even', () => {
    const back = decodeFloats('bfloat16', encodeFloats('bfloat16', Float32Array.of(1, 1e30, -3.14159, 1.00390625)));
    expect(back[0]).toBe(1);
    expect(back[1] / 1e30).toBeCloseTo(1, 2);
    expect(back[2]).toBeCloseTo(-3.14159, 1);
    expect(back[3]).toBe(1);
  });

  it('decodes from unaligned buffers', () => {
    const bytes = new Uint8Array(9);
    bytes.set(encodeFloats('float32', Float32Array.of(2.5, -8)), 1);
    expect(decodeFloats('float32', bytes.subarray(1))).toEqual(Float32Array.of(2.5, -8));
  });

  it('rejects byte counts that are not whole values', () => {
    expect(() => decodeFloats('float16', new Uint8Array(3))).toThrow(/not a whole number/);
  });

  it('checks shapes against data', () => {
    expect(() => tensor4([1, 2, 3], new Float32Array(6))).toThrow(/batch, channels, height, width/);
    expect(() => tensor4([1, 2, 3, 4], new Float32Array(5))).toThrow(/holds 24 values but 5/);
    expect(() => tensor4([1, 0, 3, 4], new Float32Array(0))).toThrow(/positive integers/);
  });
});
