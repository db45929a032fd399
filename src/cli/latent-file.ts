import { existsSync } from 'node:fs';
import { BridgeError } from '../errors.ts';
import { readSafetensors, toFloat32, writeSafetensors } from '../safetensors.ts';
import { tensor4, type Tensor4 } from '../tensor.ts';

/** The name of the one tensor the CLI writes. */
export const OUTPUT_TENSOR = 'latent';

/**
 * Reads the latent tensor of a `.safetensors` file: the one named, or the file's only tensor.
 * A 3-D [channels, height, width] tensor is taken as a batch of one.
 */
export async function readLatentFile(file: string, tensorName: string | undefined): Promise<Tensor4> {
  if (!existsSync(file)) throw new BridgeError('bad_file', `input file ${file} does not exist`);
  const { tensors } = await readSafetensors(file);
  let name = tensorName;
  if (name === undefined) {
    if (tensors.size !== 1) {
      throw new BridgeError('bad_file', `${file} holds ${tensors.size} tensors (${[...tensors.keys()].join(', ')}); choose one with --tensor NAME`);
    }
    [name] = tensors.keys();
  }
  const stored = tensors.get(name);
  if (stored === undefined) throw new BridgeError('bad_file', `${file} has no tensor "${name}"; it holds ${[...tensors.keys()].join(', ')}`);
  const shape = stored.shape.length === 3 ? [1, ...stored.shape] : stored.shape;
  if (shape.length !== 4) {
    throw new BridgeError('bad_tensor', `tensor "${name}" has shape [${stored.shape.join(', ')}]; a latent is [batch, channels, height, width]`);
  }
  return tensor4(shape, toFloat32(stored, name));
}

/** Writes the result as one F32 tensor; the file appears only once it is complete. */
export async function writeLatentFile(file: string, tensor: Tensor4, metadata: Record<string, string>): Promise<void> {
  await writeSafetensors(file, { [OUTPUT_TENSOR]: tensor }, metadata);
}
