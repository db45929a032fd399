import { BridgeError } from '../errors.ts';
import { getFamily } from '../families.ts';
import { makeLatent } from '../latent.ts';
import { scaledSize, sizeOf, type TargetSize } from '../planner.ts';
import { createEngine, ENGINE_OPTIONS, ENGINE_USAGE, parseFiles, positiveNumber } from './engine-setup.ts';
import { readLatentFile, writeLatentFile } from './latent-file.ts';
import type { Command } from './main.ts';

const usage = `usage: latent-bridge upscale --family v1|xl (--scale F | --size HxW) [options] IN OUT

Upscales a model-space latent (as the webui holds it) with city96's latent upscaler, to any
size: trained factors (1.25, 1.5, 2.0) are chained and the result resized to the exact size.

  --family F          latent family of the input: v1 (SD1.x/2.x) or xl (SDXL)
  --scale F           target = floor(size * F)
  --size HxW          exact target size in latent pixels (image pixels / 8), e.g. 135x240
${ENGINE_USAGE}`;

function parseSize(text: string): TargetSize {
  const match = /^(\d+)x(\d+)$/i.exec(text.trim());
  if (match === null) throw new BridgeError('bad_request', `--size must look like HxW in latent pixels (e.g. 135x240), got "${text}"`);
  return { height: Number(match[1]), width: Number(match[2]) };
}

export const command: Command = {
  summary: 'upscale a model-space latent file to any size with the neural upscaler',
  usage,
  async run(args) {
    const { values, input, output } = parseFiles(
      args,
      { ...ENGINE_OPTIONS, family: { type: 'string' }, scale: { type: 'string' }, size: { type: 'string' } },
      usage,
    );
    if (values.family === undefined) throw new BridgeError('bad_request', '--family is required (v1 or xl)');
    const family = getFamily(values.family);
    if ((values.scale === undefined) === (values.size === undefined)) throw new BridgeError('bad_request', 'give exactly one of --scale F and --size HxW');
    const tensor = await readLatentFile(input, values.tensor);
    const latent = makeLatent(family.name, 'model', tensor.shape, tensor.data);
    const target: TargetSize =
      values.size !== undefined ? parseSize(values.size) : scaledSize(sizeOf(latent), positiveNumber('--scale', values.scale));
    const engine = await createEngine(values);
    const result = await engine.upscale(latent, target);
    await writeLatentFile(output, result.latent, { family: family.name, space: 'model', plan: result.plan.join('; ') });
    console.error(`${family.name} [${latent.shape.join(', ')}] -> [${result.latent.shape.join(', ')}] on ${engine.device}: ${result.plan.join('; ') || 'unchanged'}`);
    return 0;
  },
};
