import { LayerBuilder } from './layers.ts';
import { INPUT_NAME, OUTPUT_NAME, type NetworkGraph } from './network-graph.ts';
import type { StateDict } from './state-dict.ts';

const STAGES = 3;
const BLOCKS_PER_STAGE = 3;
/** Each stage ends in a nearest upsample by 2. */
const FACTOR = 2 ** STAGES;

/**
 * Largest tile side, in output (image) pixels, for running the decoder tiled. Its receptive field
 * reaches 145 output pixels, so each tile carries a margin of 20 latent pixels on every side, and
 * 256-pixel tiles (the latent networks') would recompute 9x. Measured on a 256x256 latent, 2 CPU
 * threads: 1024-pixel tiles 66 s and 1.3 GB peak, untiled 77 s and 4.5 GB, 512-pixel tiles 201 s
 * and 0.5 GB.
 */
export const TAESD_TILE_SIZE = 1024;

/**
 * madebyollin's TAESD decoder (`taesd.py` `Decoder`), a bare nn.Sequential, so keys have no prefix:
 *   0 clamp tanh(x / 3) * 3, 1 conv latent->64, 2 ReLU,
 *   3 stages [3 Blocks, Upsample(2, nearest), conv 64->64 without bias] at 3..7, 8..12, 13..17,
 *   18 Block, 19 conv 64->3.
 * The output is the raw decoder output: users clamp it to [0, 1] themselves.
 */
export function buildTaesdDecoder(weights: StateDict): NetworkGraph {
  const layers = new LayerBuilder(weights);
  const g = layers.graph;
  const [width, latentChannels] = weights.shape('1.weight');
  const x = g.input(INPUT_NAME, ['batch', latentChannels, 'height', 'width']);
  const three = g.constant('0.three', [], Float32Array.of(3));
  const clamped = g.node('Mul', [g.node('Tanh', [g.node('Div', [x, three])]), three]);

  const field = new ReceptiveField();
  const head = layers.conv(clamped, '1', latentChannels, width);
  field.conv(head.kernel);
  let y = layers.relu(head.y);
  let slot = 3;
  for (let stage = 0; stage < STAGES; stage++) {
    for (let i = 0; i < BLOCKS_PER_STAGE; i++) y = block(layers, field, y, `${slot++}`, width);
    y = layers.upsampleNearest(y, 2, `${slot++}.scales`);
    field.upsample(2);
    const conv = layers.conv(y, `${slot++}`, width, width, { bias: false });
    field.conv(conv.kernel);
    y = conv.y;
  }
  y = block(layers, field, y, `${slot++}`, width);
  const [channelsOut] = weights.shape(`${slot}.weight`);
  const tail = layers.conv(y, `${slot}`, width);
  field.conv(tail.kernel);
  g.node('Identity', [tail.y], {}, OUTPUT_NAME);
  g.output(OUTPUT_NAME, ['batch', channelsOut, 'out_height', 'out_width']);
  weights.assertAllUsed('TAESD decoder');

  return {
    architecture: 'taesd-decoder',
    inChannels: latentChannels,
    outChannels: channelsOut,
    factor: FACTOR,
    inputRadius: field.inputRadius,
    outputRadius: field.outputRadius,
    description: `TAESD decoder: ${latentChannels}->${width}->${channelsOut} channels, x${FACTOR}`,
    onnx: g.toBytes('latent-bridge taesd-decoder'),
  };
}

/**
 * Block(x) = relu(conv.4(relu(conv.2(relu(conv.0(x))))) + x). Its skip is the identity (it has
 * no weights) since every decoder Block is width->width.
 */
function block(layers: LayerBuilder, field: ReceptiveField, x: string, prefix: string, width: number): string {
  let y = x;
  for (const i of [0, 2, 4]) {
    if (i > 0) y = layers.relu(y);
    const conv = layers.conv(y, `${prefix}.conv.${i}`, width, width);
    field.conv(conv.kernel);
    y = conv.y;
  }
  return layers.relu(layers.add(y, x));
}

/**
 * The receptive field as NetworkGraph counts it, for a network with several resizes: conv radii
 * before the first resize in input pixels, every later one in output pixels (a radius-r conv at
 * 1/s of the output resolution reaches r * s of them).
 */
class ReceptiveField {
  inputRadius = 0;
  outputRadius = 0;
  #scale = 1;

  conv(kernel: number): void {
    const radius = Math.floor(kernel / 2);
    if (this.#scale === 1) this.inputRadius += radius;
    else this.outputRadius += (radius * FACTOR) / this.#scale;
  }

  upsample(factor: number): void {
    this.#scale *= factor;
  }
}
