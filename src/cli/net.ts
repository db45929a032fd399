import { BridgeError } from '../errors.ts';
import { checkElements, checkFinite, checkTargetSize } from '../limits.ts';
import { buildNetwork } from '../networks/network.ts';
import { ARCHITECTURES, type Architecture } from '../networks/network-graph.ts';
import { DEVICE_CHOICES } from '../runtime.ts';
import { readSafetensors } from '../safetensors.ts';
import { scaledSize, sizeOf } from '../tensor.ts';
import { runTiled } from '../tiling.ts';
import { createRuntime, parseFiles, positiveNumber, readWorkLimits, WORK_LIMIT_OPTIONS, WORK_LIMIT_USAGE } from './engine-setup.ts';
import { readLatentFile, writeLatentFile } from './latent-file.ts';
import type { Command } from './command.ts';

const usage = `usage: latent-bridge net --arch interposer|upscaler --weights FILE --factor F [options] IN OUT
       latent-bridge net --arch taesd-decoder --weights FILE [options] IN OUT

Runs one network on raw values, exactly as the original PyTorch module would, for people
training their own weights. No family, no model-space conversion.

  --arch A            ${ARCHITECTURES.join('|')} (city96 interposer v4 / upscaler v2 layouts,
                      madebyollin's TAESD decoder: latents to RGB at 8x, raw output, not clamped)
  --weights FILE      the network's state dict as .safetensors (F32, F16 or BF16)
  --factor F          the spatial factor the interposer or upscaler was trained with (it is not in
                      the weights); the TAESD decoder's is always 8 and takes none
  --tensor NAME       the input tensor to read (default: the file's only tensor)
  --device D          ${DEVICE_CHOICES.join('|')} (default auto)
${WORK_LIMIT_USAGE}`;

function isArchitecture(value: unknown): value is Architecture {
  return typeof value === 'string' && (ARCHITECTURES as readonly string[]).includes(value);
}

/** The tile side `net` runs a network in: the decoder's receptive field needs larger tiles. */

function factorOption(arch: Architecture, text: string | undefined): number | undefined {
  if (arch !== 'taesd-decoder') return positiveNumber('--factor', text);
  if (text !== undefined) throw new BridgeError('bad_request', '--factor is not taken by --arch taesd-decoder: the TAESD decoder always upsamples by 8');
  return undefined;
}

export const command: Command = {
  summary: 'run an interposer, upscaler or TAESD decoder network on raw latent values',
  usage,
  async run(args) {
    const { values, input, output } = parseFiles(
      args,
      {
        arch: { type: 'string' },
        weights: { type: 'string' },
        factor: { type: 'string' },
        tensor: { type: 'string' },
        device: { type: 'string' },
        ...WORK_LIMIT_OPTIONS,
      },
      usage,
    );
    if (!isArchitecture(values.arch)) throw new BridgeError('bad_request', `--arch must be one of ${ARCHITECTURES.join(', ')}`);
    if (values.weights === undefined) throw new BridgeError('bad_request', '--weights FILE is required');
    const factor = factorOption(values.arch, values.factor);
    const limits = readWorkLimits(values);
    const graph = buildNetwork(values.arch, await readSafetensors(values.weights), factor, values.weights);
    const latent = await readLatentFile(input, values.tensor);
    if (latent.shape[1] !== graph.inChannels) {
      throw new BridgeError('bad_tensor', `${graph.description} takes ${graph.inChannels} channels, but the input has ${latent.shape[1]}`);
    }
    // The same bounds as the server's: a typo in --factor must not start hours of tiles. The
    // decoder's output is in image pixels, 8 per latent pixel, so its latent is held to the side bound.
    checkTargetSize(factor === undefined ? sizeOf(latent) : scaledSize(sizeOf(latent), factor), limits);
    const out = scaledSize(sizeOf(latent), graph.factor);
    checkElements('the result', [latent.shape[0], graph.outChannels, out.height, out.width], limits);
    checkFinite('the input', latent.data, limits);
    const runtime = await createRuntime(values);
    const network = await runtime.load(graph);
    const result = await runTiled((tile) => network.run(tile), graph, latent);
    await writeLatentFile(output, result, { network: graph.description });
    console.error(`${graph.description} on ${runtime.device}: [${latent.shape.join(', ')}] -> [${result.shape.join(', ')}]`);
    return 0;
  },
};
