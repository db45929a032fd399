import { BridgeError } from './errors.ts';
import { FAMILIES, type FamilyName } from './families.ts';
import { tensor4, type Tensor4 } from './tensor.ts';

/**
 * Where a latent's values live: `model` is what the diffusion model and the webui hold,
 * `raw` is what the VAE encoder produced, which is what city96's networks were trained on.
 */
export type LatentSpace = 'model' | 'raw';

export interface Latent extends Tensor4 {
  readonly family: FamilyName;
  readonly space: LatentSpace;
}

/** Builds a latent, checking that its channel count is the family's. */
export function makeLatent(family: FamilyName, space: LatentSpace, shape: readonly number[], data: Float32Array): Latent {
  const tensor = tensor4(shape, data);
  const expected = FAMILIES[family].channels;
  if (tensor.shape[1] !== expected) {
    throw new BridgeError(
      'bad_tensor',
      `a ${family} latent has ${expected} channels, but this one has ${tensor.shape[1]} (shape [${shape.join(', ')}])`,
    );
  }
  return { ...tensor, family, space };
}

/** Returns the latent in raw VAE space: raw = model / scale + shift. */
export function toRaw(latent: Latent): Latent {
  if (latent.space === 'raw') return latent;
  const { scale, shift } = FAMILIES[latent.family];
  const out = new Float32Array(latent.data.length);
  for (let i = 0; i < out.length; i++) out[i] = latent.data[i] / scale + shift;
  return { family: latent.family, space: 'raw', shape: latent.shape, data: out };
}

/** Returns the latent in model space: model = (raw - shift) * scale. */
export function toModelSpace(latent: Latent): Latent {
  if (latent.space === 'model') return latent;
  const { scale, shift } = FAMILIES[latent.family];
  const out = new Float32Array(latent.data.length);
  for (let i = 0; i < out.length; i++) out[i] = (latent.data[i] - shift) * scale;
  return { family: latent.family, space: 'model', shape: latent.shape, data: out };
}

export function toSpace(latent: Latent, space: LatentSpace): Latent {
  return space === 'raw' ? toRaw(latent) : toModelSpace(latent);
}
