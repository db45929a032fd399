/** The architectures the sidecar builds as ONNX graphs from their original state dicts. */
export const ARCHITECTURES = ['interposer', 'upscaler', 'taesd-decoder'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** Name of the graph's input and output values. */
export const INPUT_NAME = 'latent';
export const OUTPUT_NAME = 'out';

/**
 * A network as an ONNX graph plus what callers must know to feed it: channel counts, the
 * spatial factor, and its receptive field, which tiling needs to cut tiles that overlap enough.
 * The graphs are fully convolutional: conv layers before the first nearest resize reach
 * `inputRadius` input pixels; everything from that resize on reaches `outputRadius` output pixels,
 * where a radius-1 conv that runs at 1/s of the output resolution (between two resizes) counts s.
 * An output pixel thus depends on input pixels within `inputRadius + outputRadius / factor`.
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
