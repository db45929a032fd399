import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { checkFrameStructure, type FrameBounds } from '../src/protocol/frame-structure.ts';
import { seededRandom } from './support/random.ts';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const UNBOUNDED: FrameBounds = { maxFrameItems: Infinity, maxFrameDepth: Infinity, maxFrameStringBytes: Infinity };

/** mulberry32, so that a failing case can be replayed. */
const rand = seededRandom(8);
const int = (n: number) => Math.floor(rand() * n);

/** Lengths on both sides of each msgpack size class (fix, 8, 16 and 32 bit). */
const LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536];

/** Some strings and bins cross the size classes; `large` allows the 16- and 32-bit ones. */
function randomLength(large: boolean): number {
  return int(4) === 0 ? LENGTHS[int(large ? LENGTHS.length : 6)] : int(20);
}

function randomString(large: boolean): string {
  return `${'a'.repeat(randomLength(large))}${['', 'é', '😀'][int(3)]}`;
}

function randomValue(depth: number, large = true): unknown {
  switch (int(depth > 5 ? 5 : 8)) {
    case 0: return [null, true, false][int(3)];
    case 1: return [0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -129, 2 ** 32, -(2 ** 32), 2 ** 53 - 1, 1.5, -0.1, 1e300][int(18)];
    case 2: return randomString(large);
    case 3: return new Uint8Array(randomLength(large));
    case 4: return int(1000) - 500;
    // Arrays and maps of up to 16 entries: the 16-bit headers are made by the string and bin sizes above.
    case 5: return Array.from({ length: int(4) === 0 ? 16 : int(5) }, () => randomValue(depth + 1, large));
    default: return Object.fromEntries(Array.from({ length: int(4) === 0 ? 16 : int(5) }, (_, i) => [`${randomString(false)}${i}`, randomValue(depth + 1, large)]));
  }
}

/** What the bounds count, computed from the value rather than its bytes. */
function measure(value: unknown): { items: number; depth: number; stringBytes: number } {
  if (typeof value === 'string') return { items: 1, depth: 0, stringBytes: Buffer.byteLength(value) };
  const isMap = value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);
  if (!isMap && !Array.isArray(value)) return { items: 1, depth: 0, stringBytes: 0 };
  // A map's keys are strings: one value each, and their bytes.
  const keys = isMap ? Object.keys(value) : [];
  const total = { items: 1 + keys.length, depth: 1, stringBytes: keys.reduce((sum, key) => sum + Buffer.byteLength(key), 0) };
  for (const child of isMap ? Object.values(value) : (value as unknown[])) {
    const m = measure(child);
    total.items += m.items;
    total.depth = Math.max(total.depth, m.depth + 1);
    total.stringBytes += m.stringBytes;
  }
  return total;
}

/** The error code the check throws for `frame`, or undefined when it accepts it; `why` gets the message. */
function refusal(frame: Uint8Array, bounds: FrameBounds, why?: (message: string) => void): string | undefined {
  try {
    checkFrameStructure(frame, bounds);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    why?.((error as BridgeError).message);
    return (error as BridgeError).code;
  }
}

describe('the structural check of a frame', () => {
  it('counts values, depth and string bytes exactly as they are in 500 random messages, and refuses one over each bound', () => {
    for (let i = 0; i < 500; i++) {
      const value = randomValue(0);
      const frame = packr.pack(value);
      const { items, depth, stringBytes } = measure(value);
      const exact = { maxFrameItems: items, maxFrameDepth: depth, maxFrameStringBytes: stringBytes };
      expect(refusal(frame, exact)).toBeUndefined();
      expect(refusal(frame, { ...exact, maxFrameItems: items - 1 })).toBe('too_large');
      if (depth > 0) expect(refusal(frame, { ...exact, maxFrameDepth: depth - 1 })).toBe('too_large');
      if (stringBytes > 0) expect(refusal(frame, { ...exact, maxFrameStringBytes: stringBytes - 1 })).toBe('too_large');
    }
  });

  it('refuses every cut-short frame and every frame with bytes after the message', () => {
    for (let i = 0; i < 200; i++) {
      const frame = packr.pack(randomValue(0));
      for (const cut of new Set([0, 1, int(frame.length), frame.length - 1])) {
        if (cut < frame.length) expect(refusal(frame.subarray(0, cut), UNBOUNDED)).toBe('bad_request');
      }
      expect(refusal(Buffer.concat([frame, Uint8Array.of(0xc0)]), UNBOUNDED)).toBe('bad_request');
    }
  });

  it('refuses map keys that are not strings', () => {
    expect(refusal(Uint8Array.of(0x81, 0x01, 0xc0), UNBOUNDED)).toBe('bad_request');
    expect(refusal(Uint8Array.of(0x81, 0x90, 0xc0), UNBOUNDED)).toBe('bad_request');
    expect(refusal(Uint8Array.of(0x82, 0xa1, 0x61, 0x90, 0x80, 0xc0), UNBOUNDED)).toBe('bad_request');
    expect(refusal(Uint8Array.of(0x81, 0xa1, 0x61, 0x81, 0xd9, 0x01, 0x62, 0x01), UNBOUNDED)).toBeUndefined();
  });

  it('refuses extension types, which the protocol has none of, and the unused byte 0xc1', () => {
    const extension = (message: string) => expect(message).toMatch(/extension type/);
    for (const type of [0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]) {
      expect(refusal(Uint8Array.of(0x81, 0xa1, 0x61, type, 0, 0, 0, 0, 0, 0), UNBOUNDED, extension)).toBe('bad_request');
    }
    expect(refusal(packr.pack(new Date(0)), UNBOUNDED, extension)).toBe('bad_request');
    expect(refusal(Uint8Array.of(0x91, 0xc1), UNBOUNDED, (message) => expect(message).toMatch(/0xc1/))).toBe('bad_request');
  });

  it('accepts only what msgpack decodes: of 20000 mangled frames, each one it lets through decodes', () => {
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const frame = Uint8Array.from(packr.pack(randomValue(3, false)));
      for (let flips = int(4); flips >= 0; flips--) frame[int(frame.length)] = int(256);
      if (refusal(frame, UNBOUNDED) !== undefined) continue;
      accepted++;
      expect(() => unpackr.unpack(frame)).not.toThrow();
    }
    expect(accepted).toBeGreaterThan(1000);
  });

  it('stops at the first value over the bound, however many the frame declares', () => {
    // 2^32 - 1 empty maps declared in 9 bytes: refused from the header alone.
    expect(refusal(Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff, 0x80, 0x80, 0x80, 0x80), { ...UNBOUNDED, maxFrameItems: 4096 })).toBe('too_large');
    // 16 MiB of nested arrays: refused at the 17th level.
    expect(refusal(new Uint8Array(16 * 1024 * 1024).fill(0x91), { ...UNBOUNDED, maxFrameDepth: 16 })).toBe('too_large');
  });
});
