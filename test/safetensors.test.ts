import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { MAX_HEADER_BYTES, parseSafetensors, serializeSafetensors, toFloat32, writeSafetensors, readSafetensors } from '../src/safetensors.ts';

/** Builds a file from a raw header object and data bytes, the way other writers lay it out. */
function fileWith(header: unknown, data: Uint8Array, headerLength?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectBadFile(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).code).toBe('bad_file');
    expect((error as BridgeError).message).toMatch(message);
    return;
  }
  throw new Error('expected a bad_file error');
}

describe('safetensors', () => {
  it('round-trips float32 tensors with metadata', () => {
    const a = Float32Array.from([1, -2.5, 3e-8, 1e30]);
    const b = Float32Array.from([0, 1, 2, 3, 4, 5]);
    const bytes = serializeSafetensors({ a: { shape: [2, 2], data: a }, b: { shape: [1, 2, 3], data: b } }, { note: 'x' });
    const parsed = parseSafetensors(bytes);
    expect(parsed.metadata).toEqual({ note: 'x' });
    expect([...parsed.tensors.keys()]).toEqual(['a', 'b']);
    expect(parsed.tensors.get('b')?.shape).toEqual([1, 2, 3]);
    expect(toFloat32(parsed.tensors.get('a')!)).toEqual(a);
    expect(toFloat32(parsed.tensors.get('b')!)).toEqual(b);
    expect((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 8).toBe(0);
  });

  it('reads F16, BF16 and I64 tensors', () => {
    const data = new Uint8Array(4 + 4 + 8);
    const view = new DataView(data.buffer);
    view.setUint16(0, 0x3c00, true); // 1.0 in f16
    view.setUint16(2, 0xc000, true); // -2.0 in f16
    view.setUint16(4, 0x3f80, true); // 1.0 in bf16
    view.setUint16(6, 0x4049, true); // 3.140625 in bf16
    view.setBigInt64(8, 42n, true);
    const file = fileWith(
      {
        h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
        b: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] },
        n: { dtype: 'I64', shape: [], data_offsets: [8, 16] },
      },
      data,
    );
    const parsed = parseSafetensors(file);
    expect([...toFloat32(parsed.tensors.get('h')!)]).toEqual([1, -2]);
    expect([...toFloat32(parsed.tensors.get('b')!)]).toEqual([1, 3.140625]);
    const count = parsed.tensors.get('n')!;
    expect([count.dtype, new DataView(count.bytes.buffer, count.bytes.byteOffset).getBigInt64(0, true)]).toEqual(['I64', 42n]);
  });

  it('reads tensors at unaligned offsets', () => {
    const data = new Uint8Array(2 + 8);
    new DataView(data.buffer).setFloat32(2, 7.5, true);
    new DataView(data.buffer).setFloat32(6, -1, true);
    const file = fileWith({ pad: { dtype: 'F16', shape: [1], data_offsets: [0, 2] }, x: { dtype: 'F32', shape: [2], data_offsets: [2, 10] } }, data);
    expect([...toFloat32(parseSafetensors(file).tensors.get('x')!)]).toEqual([7.5, -1]);
  });

  it('rejects a file too short for a header length', () => {
    expectBadFile(() => parseSafetensors(new Uint8Array(5)), /truncated/);
  });

  it('rejects a header longer than the file', () => {
    expectBadFile(() => parseSafetensors(fileWith({}, new Uint8Array(0), 500n)), /truncated/);
  });

  it('rejects an oversized header before reading it', () => {
    expectBadFile(() => parseSafetensors(fileWith({}, new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n)), /exceeds/);
  });

  it('says a file that is no safetensors file at all (a pickle, text) is not one', () => {
    const pickle = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 0x08, 0, ...new Uint8Array(100)]);
    expectBadFile(() => parseSafetensors(pickle, 'taesd_decoder.pth'), /^taesd_decoder\.pth is not a safetensors file \(.*pickle/);
    expectBadFile(() => parseSafetensors(new TextEncoder().encode('hello world, not a tensor\n')), /is not a safetensors file/);
  });

  it('rejects a header that is not JSON', () => {
    const file = new Uint8Array(8 + 3);
    new DataView(file.buffer).setBigUint64(0, 3n, true);
    file.set([0x7b, 0x22, 0xff], 8);
    expectBadFile(() => parseSafetensors(file), /not valid UTF-8 JSON/);
  });

  it('rejects an unknown dtype', () => {
    expectBadFile(() => parseSafetensors(fileWith({ x: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1))), /unsupported dtype/);
  });

  it('rejects offsets outside the file (a truncated file)', () => {
    const full = serializeSafetensors({ x: { shape: [4], data: new Float32Array(4) } });
    expectBadFile(() => parseSafetensors(full.subarray(0, full.length - 3)), /outside/);
  });

  it('rejects offsets that disagree with the shape', () => {
    expectBadFile(() => parseSafetensors(fileWith({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))), /needs 12 bytes/);
  });

  it('rejects bad shapes and offsets', () => {
    expectBadFile(() => parseSafetensors(fileWith({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4))), /invalid shape/);
    expectBadFile(() => parseSafetensors(fileWith({ x: { dtype: 'F32', shape: [1], data_offsets: [4] } }, new Uint8Array(4))), /invalid data_offsets/);
  });

  it('rejects a header length near 2^64', () => {
    expectBadFile(() => parseSafetensors(fileWith({}, new Uint8Array(0), 2n ** 64n - 1n)), /exceeds/);
  });

  it('rejects tensors whose bytes overlap', () => {
    const f32 = (begin: number) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, begin + 8] });
    expectBadFile(() => parseSafetensors(fileWith({ a: f32(0), b: f32(4) }, new Uint8Array(12))), /overlap/);
    expectBadFile(() => parseSafetensors(fileWith({ a: f32(0), b: f32(0) }, new Uint8Array(8))), /overlap/);
  });

  it('rejects data bytes that belong to no tensor', () => {
    const x = { dtype: 'F32', shape: [1], data_offsets: [4, 8] };
    expectBadFile(() => parseSafetensors(fileWith({ x }, new Uint8Array(8))), /bytes \[0, 4\) belong to no tensor/);
    expectBadFile(() => parseSafetensors(fileWith({ x: { ...x, data_offsets: [0, 4] } }, new Uint8Array(8))), /bytes \[4, 8\) belong to no tensor/);
  });

  it('rejects a tensor named twice', () => {
    const header = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectBadFile(() => parseSafetensors(fileWith(header, new Uint8Array(8))), /"a" appears twice/);
  });

  it('rejects entries that are not objects', () => {
    for (const entry of [5, null, [], 'F32']) {
      expectBadFile(() => parseSafetensors(fileWith({ a: entry }, new Uint8Array(0))), /tensor "a" is not an object/);
    }
  });

  it('rejects __metadata__ that is not an object of strings', () => {
    for (const metadata of ['x', null, ['x'], { a: { b: 1 } }, { a: 1 }]) {
      expectBadFile(() => parseSafetensors(fileWith({ __metadata__: metadata }, new Uint8Array(0))), /__metadata__/);
    }
  });

  it('names the file in errors and rejects a missing file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'st-'));
    const file = path.join(dir, 'cut.safetensors');
    writeFileSync(file, new Uint8Array(4));
    await expect(readSafetensors(file)).rejects.toThrow(/cut\.safetensors: truncated/);
    await expect(readSafetensors(path.join(dir, 'absent.safetensors'))).rejects.toThrow(/cannot read/);
  });

  it('writes atomically: only the finished file appears', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'st-'));
    await writeSafetensors(path.join(dir, 'out.safetensors'), { latent: { shape: [1, 1, 1, 2], data: Float32Array.of(1, 2) } });
    expect(readdirSync(dir)).toEqual(['out.safetensors']);
  });

  it('says it cannot write into a missing folder, and leaves nothing behind', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'st-'));
    const write = writeSafetensors(path.join(dir, 'absent', 'out.safetensors'), { latent: { shape: [1], data: Float32Array.of(1) } });
    await expect(write).rejects.toThrow(BridgeError);
    await expect(write).rejects.toThrow(/cannot write .*absent/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves no partial file when the rename fails', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'st-'));
    mkdirSync(path.join(dir, 'taken'));
    writeFileSync(path.join(dir, 'taken', 'x'), '');
    await expect(writeSafetensors(path.join(dir, 'taken'), { latent: { shape: [1], data: Float32Array.of(1) } })).rejects.toThrow(/cannot write/);
    expect(readdirSync(dir)).toEqual(['taken']);
  });
});
