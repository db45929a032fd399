import { encodeFloats } from '../../src/tensor.ts';
import type { SafetensorsFile } from '../../src/safetensors.ts';
import type { SafetensorsDtype } from '../../src/safetensors.ts';

export interface RawTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Lays out a safetensors file from raw tensors of any dtype, as PyTorch's writer does. */
export function rawSafetensors(tensors: Readonly<Record<string, RawTensor>>): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let position = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, position);
    position += t.bytes.byteLength;
  }
  return out;
}

/** A copy of a parsed file's tensors, to edit (drop, rename, reshape, convert) before writing again. */
export function editableTensors(file: SafetensorsFile): Record<string, RawTensor> {
  return Object.fromEntries([...file.tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: [...t.shape], bytes: new Uint8Array(t.bytes) }]));
}

/** Re-encodes every float tensor of a state dict as F16 or BF16. */
export function convertFloats(tensors: Record<string, RawTensor>, dtype: 'F16' | 'BF16'): Record<string, RawTensor> {
  return Object.fromEntries(
    Object.entries(tensors).map(([name, t]) => {
      if (t.dtype !== 'F32') return [name, t];
      const values = new Float32Array(new Uint8Array(t.bytes).buffer);
      return [name, { dtype, shape: t.shape, bytes: encodeFloats(dtype === 'F16' ? 'float16' : 'bfloat16', values) }];
    }),
  );
}
