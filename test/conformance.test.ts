import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork } from '../src/networks/network.ts';
import { Runtime } from '../src/runtime.ts';
import { readSafetensors } from '../src/safetensors.ts';
import { runTiled } from '../src/tiling.ts';
import { CONFORMANCE_CASES, TAESD_CASES, conformanceIO, countOutOfTolerance, factorOf, weightsPath, type ConformanceCase } from './support/conformance.ts';

let runtime: Runtime;
beforeAll(async () => {
  runtime = await Runtime.create({ device: 'cpu' });
});

function expectedDescription(c: ConformanceCase): string {
  switch (c.kind) {
    case 'interposer':
      return `interposer v4: ${c.config.ch_in}->${c.config.ch_mid}->${c.config.ch_out} channels, ${c.config.blocks} blocks, x${c.config.scale}`;
    case 'upscaler':
      return `upscaler v2: 4->64->4 channels, depth ${c.config.depth}, x${c.config.fac}`;
    case 'taesd-decoder':
      return `TAESD decoder: ${c.config.latent_channels}->64->3 channels, x8`;
  }
}

describe('conformance with the original PyTorch networks', () => {
  it('has cases to check', () => {
    expect(CONFORMANCE_CASES.length).toBeGreaterThanOrEqual(7);
    expect(TAESD_CASES.length).toBeGreaterThanOrEqual(2);
  });

  for (const c of [...CONFORMANCE_CASES, ...TAESD_CASES]) {
    it(`${c.name} reproduces the reference output`, async () => {
      const graph = buildNetwork(c.kind, await readSafetensors(weightsPath(c)), factorOf(c), c.weights);
      const { input, output } = await conformanceIO(c);
      const network = await runtime.load(graph);
      // The path the `net` command and the engine take.
      const got = await runTiled((tile) => network.run(tile), graph, input);
      expect(got.shape).toEqual(c.output_shape);
      expect(countOutOfTolerance(got.data, output.data)).toBe(0);
    });

    it(`${c.name}: layout inferred from the weights matches the original constructor`, async () => {
      const graph = buildNetwork(c.kind, await readSafetensors(weightsPath(c)), factorOf(c), c.weights);
      expect(graph.description).toBe(expectedDescription(c));
    });
  }
});
