import { BridgeError } from '../errors.ts';
import { LayerBuilder } from './layers.ts';
import { INPUT_NAME, OUTPUT_NAME, type NetworkGraph } from './network-graph.ts';
import type { StateDict } from './state-dict.ts';

/**
 * city96 SD-Latent-Upscaler v2 (`Upscaler`), one nn.Sequential:
 *   0 conv, 1 ReLU, 2 Upsample(fac, nearest), 3 ReLU, then depth x (conv, ReLU) at 4, 6, ..., then a conv.
 * The ReLU at 3 acts on the non-negative output of 1 moved by a nearest resize, so it is the
 * identity and gets no node.
 */
export function buildUpscaler(weights: StateDict, factor: number): NetworkGraph {
  if (!(factor > 0)) throw new BridgeError('bad_request', `the upscaler factor must be positive, got ${factor}`);
  const layers = new LayerBuilder(weights);
  const [size, channels] = weights.shape('sequential.0.weight');
  const x = layers.graph.input(INPUT_NAME, ['batch', channels, 'height', 'width']);

  const head = layers.conv(x, 'sequential.0', channels);
  let y = layers.upsampleNearest(layers.relu(head.y), factor, 'sequential.2.scales');

  const indices: number[] = [];
  for (let i = 4; weights.has(`sequential.${i}.weight`); i += 2) indices.push(i);
  if (indices.length < 1) weights.shape('sequential.4.weight');
  const tailIndex = indices.pop() as number;

  let outputRadius = 0;
  for (const i of indices) {
    const conv = layers.conv(y, `sequential.${i}`, size, size);
    y = layers.relu(conv.y);
    outputRadius += Math.floor(conv.kernel / 2);
  }
  const [channelsOut] = weights.shape(`sequential.${tailIndex}.weight`);
  const tail = layers.conv(y, `sequential.${tailIndex}`, size);
  outputRadius += Math.floor(tail.kernel / 2);
  layers.graph.node('Identity', [tail.y], {}, OUTPUT_NAME);
  layers.graph.output(OUTPUT_NAME, ['batch', channelsOut, 'out_height', 'out_width']);
  weights.assertAllUsed('upscaler v2');

  return {
    architecture: 'upscaler',
    inChannels: channels,
    outChannels: channelsOut,
    factor,
    inputRadius: Math.floor(head.kernel / 2),
    outputRadius,
    description: `upscaler v2: ${channels}->${size}->${channelsOut} channels, depth ${indices.length}, x${factor}`,
    onnx: layers.graph.toBytes('latent-bridge upscaler'),
  };
}
