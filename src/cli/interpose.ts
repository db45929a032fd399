import { BridgeError } from '../errors.ts';
import { getFamily } from '../families.ts';
import { makeLatent } from '../latent.ts';
import { ENGINE_OPTIONS, ENGINE_USAGE, parseFiles, readWorkLimits, runJob } from './engine-setup.ts';
import { readLatentFile, writeLatentFile } from './latent-file.ts';
import type { Command } from './command.ts';

const usage = `usage: latent-bridge interpose --from A --to B [options] IN OUT

Converts a model-space latent (as the webui holds it) from one family's latent space into
another's with city96's latent interposer v4.0. --from equal to --to copies the latent unchanged.

  --from A            v1 (SD1.x/2.x), xl (SDXL), v3 (SD3), fx (Flux.1) or ca (Stable Cascade)
  --to B              v1, xl or v3 (no model converts into fx or ca)
${ENGINE_USAGE}`;

export const command: Command = {
  summary: 'convert a model-space latent file into another family',
  usage,
  async run(args) {
    const { values, input, output } = parseFiles(args, { ...ENGINE_OPTIONS, from: { type: 'string' }, to: { type: 'string' } }, usage);
    if (values.from === undefined || values.to === undefined) throw new BridgeError('bad_request', '--from and --to are both required');
    const from = getFamily(values.from);
    const to = getFamily(values.to);
    const limits = readWorkLimits(values);
    const tensor = await readLatentFile(input, values.tensor);
    const latent = makeLatent(from.name, 'model', tensor.shape, tensor.data);
    const result = await runJob({ op: 'interpose', latent, to: to.name }, values, limits);
    await writeLatentFile(output, result.latent, { family: to.name, space: 'model', plan: result.summary });
    console.error(`${from.name} [${latent.shape.join(', ')}] -> ${to.name} [${result.latent.shape.join(', ')}] on ${result.device}: ${result.summary}`);
    return 0;
  },
};
