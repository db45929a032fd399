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

  it('bfloat16 rounds float32 bit patterns to nearest, ties to even (exact bits)', () => {
    // [float32 bits, bfloat16 bits]: the low 16 bits decide; exactly 0x8000 is a tie.
    const cases: [number, number][] = [
      [0x3f800000, 0x3f80], // 1: exact
      [0x3f808000, 0x3f80], // 1 + 2^-8: tie, 0x3f80 is even, stays
      [0x3f818000, 0x3f82], // tie above an odd one: up to even (truncation would give 0x3f81)
      [0x3f807fff, 0x3f80], // just below the tie: down
      [0x3f808001, 0x3f81], // just above the tie: up
      [0xbf818000, 0xbf82], // negative: the same on the magnitude
      [0x3f7fffff, 0x3f80], // carries into the exponent
      [0x7f7fffff, 0x7f80], // the largest float32 rounds up to infinity
      [0x7f800000, 0x7f80], // infinity stays
      [0xff800000, 0xff80],
      [0x00018000, 0x0002], // subnormal tie above an odd one
      [0x80000000, 0x8000], // -0
    ];
    const input = new Float32Array(Uint32Array.from(cases.map(([bits]) => bits)).buffer);
    const output = new Uint16Array(encodeFloats('bfloat16', input).slice().buffer);
    expect([...output].map((bits) => bits.toString(16))).toEqual(cases.map(([, bits]) => bits.toString(16)));
  });

  it('bfloat16 keeps NaN a NaN, and decodes by widening the bits', () => {
    const nan = new Uint16Array(encodeFloats('bfloat16', Float32Array.of(Number.NaN)).slice().buffer)[0];
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x007f).not.toBe(0);
    expect([...decodeFloats('bfloat16', new Uint8Array(Uint16Array.of(0x3f82, 0xc049, 0x7f80).buffer))]).toEqual([1.015625, -3.140625, Infinity]);
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
