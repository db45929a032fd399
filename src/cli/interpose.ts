import { BridgeError } from '../errors.ts';
import { getFamily } from '../families.ts';
import { makeLatent } from '../latent.ts';
import { interposerSpec } from '../store/registry.ts';
import { createEngine, ENGINE_OPTIONS, ENGINE_USAGE, parseFiles } from './engine-setup.ts';
import { readLatentFile, writeLatentFile } from './latent-file.ts';
import type { Command } from './main.ts';

const usage = `usage: latent-bridge interpose --from A --to B [options] IN OUT

Converts a model-space latent (as the webui holds it) from one family's latent space into
another's with city96's latent interposer v4.0.

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
    interposerSpec(from.name, to.name);
    const tensor = await readLatentFile(input, values.tensor);
    const latent = makeLatent(from.name, 'model', tensor.shape, tensor.data);
    const engine = await createEngine(values);
    const result = await engine.interpose(latent, to.name);
    await writeLatentFile(output, result, { family: to.name, space: 'model' });
    console.error(`${from.name} [${latent.shape.join(', ')}] -> ${to.name} [${result.shape.join(', ')}] on ${engine.device}`);
    return 0;
  },
};
