import type { SafetensorsFile } from '../safetensors.ts';
import { buildInterposer } from './interposer.ts';
import { StateDict } from './state-dict.ts';
import { buildUpscaler } from './upscaler.ts';

export const ARCHITECTURES = ['interposer', 'upscaler'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** Name of the graph's input and output values. */
export const INPUT_NAME = 'latent';
export const OUTPUT_NAME = 'out';

/**
 * A network as an ONNX graph plus what callers must know to feed it: channel counts, the
 * spatial factor, and its receptive field, which tiling needs to cut tiles that overlap enough.
 * The graphs are fully convolutional: conv layers (radius `inputRadius`, in input pixels), one
 * nearest resize by `factor`, then conv layers (radius `outputRadius`, in output pixels).
 */
export interface NetworkGraph {
  readonly architecture: Architecture;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly factor: number;
  readonly inputRadius: number;
  readonly outputRadius: number;
  readonly description: string;
  readonly onnx: Uint8Array;
}

/**
 * Builds a network from an original city96 state dict. Channel counts, block count and depth
 * come from the keys and shapes; the factor cannot (the originals take it from the file name).
 */
export function buildNetwork(architecture: Architecture, weights: SafetensorsFile, factor: number, where: string): NetworkGraph {
  const stateDict = new StateDict(weights, where);
  return architecture === 'interposer' ? buildInterposer(stateDict, factor) : buildUpscaler(stateDict, factor);
}
