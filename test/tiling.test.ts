import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork } from '../src/networks/network.ts';
import type { NetworkGraph } from '../src/networks/network-graph.ts';
import { Runtime, type LoadedNetwork } from '../src/runtime.ts';
import { readSafetensors } from '../src/safetensors.ts';
import { tensor4 } from '../src/tensor.ts';
import { alignmentOf, runTiled } from '../src/tiling.ts';
import { conformanceCase, factorOf, maxAbsDiff, seededData, weightsPath } from './support/conformance.ts';

let runtime: Runtime;
beforeAll(async () => {
  runtime = await Runtime.create({ device: 'cpu' });
});

async function load(name: string, factor?: number): Promise<LoadedNetwork> {
  const c = conformanceCase(name);
  const graph = buildNetwork(c.kind, await readSafetensors(weightsPath(c)), factor ?? factorOf(c), c.weights);
  return runtime.load(graph);
}

describe('tiling', () => {
  it('aligns tile starts to the factor denominator', () => {
    expect([1, 2, 0.5, 1.25, 1.5, 1.1].map(alignmentOf)).toEqual([1, 1, 2, 4, 2, 10]);
    expect(alignmentOf(1.3333)).toBeUndefined();
  });

  const cases: [string, number | undefined, [number, number, number, number], number][] = [
    ['interposer-v1-to-v3-small', undefined, [2, 4, 61, 47], 32],
    ['interposer-fx-to-xl-small', undefined, [2, 16, 40, 33], 32],
    ['interposer-ca-to-v1-small', undefined, [1, 4, 77, 50], 24],
    ['upscaler-x1.25-small', undefined, [1, 4, 53, 38], 24],
    ['upscaler-x1.5', undefined, [1, 4, 45, 31], 64],
    ['upscaler-x2.0', undefined, [1, 4, 37, 29], 64],
    // Tiles of 60 latent rows: 20 kept between margins of 20, the decoder's receptive field.
    ['taesd-decoder-4ch', undefined, [1, 4, 70, 9], 256],
    ['taesd-decoder-16ch', undefined, [1, 16, 9, 64], 256],
  ];
  for (const [name, factor, shape, tile] of cases) {
    it(`${name} on [${shape.join(', ')}] in ${tile}-pixel tiles equals the untiled run`, async () => {
      const network = await load(name, factor);
      const input = tensor4(shape, seededData(shape.reduce((a, b) => a * b), shape[2]));
      let runs = 0;
      const counted = (t: typeof input) => {
        runs++;
        expect(Math.floor(t.shape[2] * network.graph.factor)).toBeLessThanOrEqual(Math.max(tile, minimumTile(network.graph)));
        return network.run(t);
      };
      const tiled = await runTiled(counted, network.graph, input, tile);
      const whole = await network.run(input);
      expect(runs).toBeGreaterThan(1);
      expect(tiled.shape).toEqual(whole.shape);
      // Same arithmetic on the same values: only float summation order inside the runtime may differ.
      expect(maxAbsDiff(tiled.data, whole.data)).toBeLessThan(1e-5);
    });
  }

  it('runs batch items one at a time, each as the whole batch would have it', async () => {
    const network = await load('upscaler-x1.5');
    const input = tensor4([3, 4, 20, 14], seededData(3 * 4 * 20 * 14, 12));
    const batches: number[] = [];
    const split = await runTiled((t) => (batches.push(t.shape[0]), network.run(t)), network.graph, input, 256);
    expect(batches).toEqual([1, 1, 1]);
    const whole = await network.run(input);
    expect(split.shape).toEqual(whole.shape);
    expect(maxAbsDiff(split.data, whole.data)).toBeLessThan(1e-5);
  });

  it('runs a factor with no small denominator whole, as tiles could not line up', async () => {
    const network = await load('upscaler-x1.25-small', 1.3333);
    const input = tensor4([2, 4, 150, 30], seededData(2 * 4 * 150 * 30, 5));
    const shapes: number[][] = [];
    const tiled = await runTiled((t) => (shapes.push([...t.shape]), network.run(t)), network.graph, input, 24);
    expect(shapes).toEqual([[1, 4, 150, 30], [1, 4, 150, 30]]);
    const whole = await network.run(input);
    expect(maxAbsDiff(tiled.data, whole.data)).toBeLessThan(1e-5);
  });

  it('does not tile inputs that fit one tile', async () => {
    const network = await load('upscaler-x2.0');
    let runs = 0;
    const input = tensor4([1, 4, 16, 16], seededData(1024));
    await runTiled((t) => (runs++, network.run(t)), network.graph, input, 32);
    expect(runs).toBe(1);
  });
});

/** The smallest tile (in output pixels) the tiler uses: a core as wide as a margin, and two margins. */
function minimumTile(graph: NetworkGraph): number {
  const q = alignmentOf(graph.factor) ?? 1;
  const margin = Math.ceil((graph.inputRadius + Math.ceil(graph.outputRadius / graph.factor) + 1) / q) * q;
  return Math.ceil(3 * margin * graph.factor);
}
