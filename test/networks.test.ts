import { beforeAll, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { LayerBuilder } from '../src/networks/layers.ts';
import { buildNetwork, INPUT_NAME, OUTPUT_NAME } from '../src/networks/network.ts';
import { StateDict } from '../src/networks/state-dict.ts';
import { Runtime } from '../src/runtime.ts';
import { parseSafetensors, readSafetensors, type SafetensorsFile } from '../src/safetensors.ts';
import { tensor4 } from '../src/tensor.ts';
import { conformanceCase, conformanceIO, factorOf, maxAbsDiff, weightsPath } from './support/conformance.ts';
import { convertFloats, editableTensors, rawSafetensors, type RawTensor } from './support/raw-safetensors.ts';

let runtime: Runtime;
let interposer: SafetensorsFile;
let upscaler: SafetensorsFile;

beforeAll(async () => {
  runtime = await Runtime.create({ device: 'cpu' });
  interposer = await readSafetensors(weightsPath(conformanceCase('interposer-v1-to-v3-small')));
  upscaler = await readSafetensors(weightsPath(conformanceCase('upscaler-x1.25-small')));
});

function rebuilt(tensors: Record<string, RawTensor>): SafetensorsFile {
  return parseSafetensors(rawSafetensors(tensors));
}

function layoutError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).code).toBe('bad_weights');
    return (error as BridgeError).message;
  }
  throw new Error('expected a bad_weights error');
}

describe('network layouts', () => {
  it('reports the receptive field of each architecture', () => {
    const i = buildNetwork('interposer', interposer, 1, 'i');
    expect([i.inputRadius, i.outputRadius]).toEqual([3, 3 * 3 + 1]);
    const u = buildNetwork('upscaler', upscaler, 1.25, 'u');
    expect([u.inputRadius, u.outputRadius]).toEqual([1, 3 + 1]);
  });

  it('names the first missing key', () => {
    const tensors = editableTensors(interposer);
    delete tensors['core.2.long.2.bias'];
    expect(layoutError(() => buildNetwork('interposer', rebuilt(tensors), 1, 'w.safetensors'))).toMatch(/w\.safetensors .*missing key "core\.2\.long\.2\.bias"/);
  });

  it('names a key with the wrong shape', () => {
    const tensors = editableTensors(upscaler);
    const bias = tensors['sequential.4.bias'];
    tensors['sequential.4.bias'] = { ...bias, shape: [bias.shape[0] / 2, 2] };
    expect(layoutError(() => buildNetwork('upscaler', rebuilt(tensors), 1.25, 'u'))).toMatch(/"sequential\.4\.bias" has shape \[32, 2\], expected \[64\]/);
  });

  it('rejects the other architecture\'s weights', () => {
    expect(layoutError(() => buildNetwork('upscaler', interposer, 2, 'i'))).toMatch(/missing key "sequential\.0\.weight"/);
    expect(layoutError(() => buildNetwork('interposer', upscaler, 1, 'u'))).toMatch(/missing key "head\.short\.weight"/);
  });

  it('rejects keys the layout does not use', () => {
    const tensors = editableTensors(upscaler);
    tensors['extra.weight'] = { dtype: 'F32', shape: [1], bytes: new Uint8Array(4) };
    expect(layoutError(() => buildNetwork('upscaler', rebuilt(tensors), 1.25, 'u'))).toMatch(/unexpected key "extra\.weight"/);
  });

  it('needs no num_batches_tracked bookkeeping', async () => {
    const tensors = Object.fromEntries(Object.entries(editableTensors(interposer)).filter(([k]) => !k.endsWith('num_batches_tracked')));
    expect(buildNetwork('interposer', rebuilt(tensors), 1, 'i').description).toContain('3 blocks');
  });

  // PyTorch's NCHW nearest kernel reads input floor(o * float(1 / s)) on every axis, even where
  // floor(n * s) = n, so an output as large as its input is not a copy of it.
  for (const [factor, height, width] of [[1.25, 3, 3], [1.25, 2, 3], [1.25, 2, 8], [1.5, 5, 1], [0.5, 5, 7], [1.1, 10, 9], [0.7, 10, 3]]) {
    it(`upsamples ${height}x${width} by ${factor} as PyTorch's nearest does`, async () => {
      const layers = new LayerBuilder(new StateDict(rebuilt({}), 'none'));
      const x = layers.graph.input(INPUT_NAME, ['batch', 64, 'height', 'width']);
      layers.graph.node('Identity', [layers.upsampleNearest(x, factor, 'up')], {}, OUTPUT_NAME);
      layers.graph.output(OUTPUT_NAME, ['batch', 64, 'out_height', 'out_width']);
      const graph = { architecture: 'upscaler', inChannels: 64, outChannels: 64, factor, inputRadius: 0, outputRadius: 0, description: 'up', onnx: layers.graph.toBytes('t') } as const;
      const input = tensor4([1, 64, height, width], Float32Array.from({ length: 64 * height * width }, (_, i) => i));
      const got = await (await runtime.load(graph)).run(input);
      const source = (o: number, n: number) => Math.min(Math.floor(o * Math.fround(1 / factor)), n - 1);
      const [outHeight, outWidth] = [Math.floor(height * factor), Math.floor(width * factor)];
      const expected = Float32Array.from({ length: 64 * outHeight * outWidth }, (_, i) => {
        const [c, y, x] = [Math.floor(i / (outHeight * outWidth)), Math.floor(i / outWidth) % outHeight, i % outWidth];
        return (c * height + source(y, height)) * width + source(x, width);
      });
      expect(got.shape).toEqual([1, 64, outHeight, outWidth]);
      expect([...got.data]).toEqual([...expected]);
    });
  }

  it('refuses an input that the factor shrinks to nothing', async () => {
    const c = conformanceCase('interposer-ca-to-v1-small');
    const network = await runtime.load(buildNetwork('interposer', await readSafetensors(weightsPath(c)), factorOf(c), 'w'));
    const run = network.run(tensor4([1, 4, 1, 6], new Float32Array(24)));
    await expect(run).rejects.toThrow(BridgeError);
    await expect(run).rejects.toThrow(/1x6 input .* 0x3/);
  });

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`runs ${dtype} weights close to the F32 reference`, async () => {
      const c = conformanceCase('interposer-xl-to-v1');
      const weights = rebuilt(convertFloats(editableTensors(await readSafetensors(weightsPath(c))), dtype));
      const network = await runtime.load(buildNetwork('interposer', weights, factorOf(c), 'w'));
      const { input, output } = await conformanceIO(c);
      const got = await network.run(input);
      // Rounding the weights to 11 (F16) or 8 (BF16) significant bits moves the output by that order.
      const scale = Math.max(...output.data.map(Math.abs));
      expect(maxAbsDiff(got.data, output.data) / scale).toBeLessThan(dtype === 'F16' ? 2e-3 : 2e-2);
    });
  }
});
