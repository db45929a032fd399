import { BridgeError } from '../errors.ts';
import type { SafetensorsFile } from '../safetensors.ts';
import { buildInterposer } from './interposer.ts';
import type { Architecture, NetworkGraph } from './network-graph.ts';
import { StateDict } from './state-dict.ts';
import { buildTaesdDecoder } from './taesd-decoder.ts';
import { buildUpscaler } from './upscaler.ts';

/**
 * Builds a network from an original state dict. Channel counts, block count and depth come
 * from the keys and shapes. The interposer's and upscaler's factor cannot (the originals take it
 * from the file name), so the caller gives it; the TAESD decoder's is always 8 and takes none.
 */
export function buildNetwork(architecture: Architecture, weights: SafetensorsFile, factor: number | undefined, where: string): NetworkGraph {
  const stateDict = new StateDict(weights, where);
  if (architecture === 'taesd-decoder') {
    if (factor !== undefined) throw new BridgeError('bad_request', `the TAESD decoder always upsamples by 8 and takes no factor, got ${factor}`);
    return buildTaesdDecoder(stateDict);
  }
  if (factor === undefined) throw new BridgeError('bad_request', `the ${architecture} needs its factor: it is not stored in the weights`);
  return architecture === 'interposer' ? buildInterposer(stateDict, factor) : buildUpscaler(stateDict, factor);
}
