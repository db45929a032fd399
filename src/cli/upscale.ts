import { BridgeError } from '../errors.ts';
import { getFamily } from '../families.ts';
import { makeLatent } from '../latent.ts';
import { scaledTarget } from '../limits.ts';
import { sizeOf, type Size } from '../tensor.ts';
import { ENGINE_OPTIONS, ENGINE_USAGE, parseFiles, positiveNumber, readWorkLimits, runJob } from './engine-setup.ts';
import { readLatentFile, writeLatentFile } from './latent-file.ts';
import type { Command } from './command.ts';

const usage = `usage: latent-bridge upscale --family v1|xl (--scale F | --size HxW) [options] IN OUT

Upscales a model-space latent (as the webui holds it) with city96's latent upscaler, to any
size: trained factors (1.25, 1.5, 2.0) are chained and the result resized to the exact size.
The same limits as the server apply (raise them with the options below).

  --family F          latent family of the input: v1 (SD1.x/2.x) or xl (SDXL)
  --scale F           target = floor(size * F)
  --size HxW          exact target size in latent pixels (image pixels / 8), e.g. 135x240
${ENGINE_USAGE}`;

function parseSize(text: string): Size {
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
    const limits = readWorkLimits(values);
    const tensor = await readLatentFile(input, values.tensor);
    const latent = makeLatent(family.name, 'model', tensor.shape, tensor.data);
    const target = values.size !== undefined ? parseSize(values.size) : scaledTarget(sizeOf(latent), positiveNumber('--scale', values.scale), limits);
    const result = await runJob({ op: 'upscale', latent, target }, values, limits);
    await writeLatentFile(output, result.latent, { family: family.name, space: 'model', plan: result.summary });
    console.error(`${family.name} [${latent.shape.join(', ')}] -> [${result.latent.shape.join(', ')}] on ${result.device}: ${result.summary}`);
    for (const warning of result.plan.warnings) console.error(`warning: ${warning.message}`);
    return 0;
  },
};
