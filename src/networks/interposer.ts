import { LayerBuilder } from './layers.ts';
import { INPUT_NAME, OUTPUT_NAME, type NetworkGraph } from './network-graph.ts';
import type { StateDict } from './state-dict.ts';

/**
 * city96 SD-Latent-Interposer v4 (`InterposerModel`):
 *   head = relu(short(x) + long(x)), long = conv, SiLU, conv, SiLU, conv
 *   core = Upsample(scale), blocks x ResBlock, BatchNorm, SiLU
 *          ResBlock(x) = relu(long(n) + n) with n = BatchNorm(x)
 *   tail = conv
 * Dropout is the identity in eval mode and has no node.
 */
export function buildInterposer(weights: StateDict, factor: number): NetworkGraph {
  const layers = new LayerBuilder(weights);
  const [channelsMid, channelsIn] = weights.shape('head.short.weight');
  const x = layers.graph.input(INPUT_NAME, ['batch', channelsIn, 'height', 'width']);

  const short = layers.conv(x, 'head.short', channelsIn);
  const long = threeConvs(layers, x, 'head.long', channelsIn, channelsMid);
  let y = layers.relu(layers.add(long.y, short.y));
  const inputRadius = Math.max(long.radius, Math.floor(short.kernel / 2));

  if (factor !== 1) y = layers.upsampleNearest(y, factor, 'core.0.scales');

  let blocks = 0;
  let outputRadius = 0;
  while (weights.has(`core.${blocks + 1}.long.0.weight`)) {
    const prefix = `core.${blocks + 1}`;
    const normed = layers.batchNorm(y, `${prefix}.norm`, channelsMid);
    const block = threeConvs(layers, normed, `${prefix}.long`, channelsMid, channelsMid);
    y = layers.relu(layers.add(block.y, normed));
    outputRadius += block.radius;
    blocks++;
  }
  y = layers.silu(layers.batchNorm(y, `core.${blocks + 1}`, channelsMid));

  const [channelsOut] = weights.shape('tail.weight');
  const tail = layers.conv(y, 'tail', channelsMid);
  outputRadius += Math.floor(tail.kernel / 2);
  layers.graph.node('Identity', [tail.y], {}, OUTPUT_NAME);
  layers.graph.output(OUTPUT_NAME, ['batch', channelsOut, 'out_height', 'out_width']);
  weights.assertAllUsed('interposer v4');

  return {
    architecture: 'interposer',
    inChannels: channelsIn,
    outChannels: channelsOut,
    factor,
    inputRadius,
    outputRadius,
    description: `interposer v4: ${channelsIn}->${channelsMid}->${channelsOut} channels, ${blocks} blocks, x${factor}`,
    onnx: layers.graph.toBytes('latent-bridge interposer'),
  };
}

function threeConvs(layers: LayerBuilder, x: string, prefix: string, channelsIn: number, channels: number): { y: string; radius: number } {
  const a = layers.conv(x, `${prefix}.0`, channelsIn, channels);
  const b = layers.conv(layers.silu(a.y), `${prefix}.2`, channels, channels);
  const c = layers.conv(layers.silu(b.y), `${prefix}.4`, channels, channels);
  return { y: c.y, radius: [a, b, c].reduce((r, conv) => r + Math.floor(conv.kernel / 2), 0) };
}
