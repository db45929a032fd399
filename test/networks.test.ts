import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { LayerBuilder } from '../src/networks/layers.ts';
import { buildNetwork } from '../src/networks/network.ts';
import { INPUT_NAME, OUTPUT_NAME } from '../src/networks/network-graph.ts';
import { StateDict } from '../src/networks/state-dict.ts';
import { Runtime } from '../src/runtime.ts';
import { parseSafetensors, readSafetensors, type SafetensorsFile } from '../src/safetensors.ts';
import { tensor4 } from '../src/tensor.ts';
import { conformanceCase, conformanceIO, countOutOfTolerance, factorOf, maxAbsDiff, seededData, weightsPath } from './support/conformance.ts';
import { convertFloats, editableTensors, rawSafetensors, type RawTensor } from './support/raw-safetensors.ts';

let runtime: Runtime;
let interposer: SafetensorsFile;
let upscaler: SafetensorsFile;
let decoder: SafetensorsFile;

beforeAll(async () => {
  runtime = await Runtime.create({ device: 'cpu' });
  interposer = await readSafetensors(weightsPath(conformanceCase('interposer-v1-to-v3-small')));
  upscaler = await readSafetensors(weightsPath(conformanceCase('upscaler-x1.25-small')));
  decoder = await readSafetensors(weightsPath(conformanceCase('taesd-decoder-4ch')));
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
    // Conv 1 and three Blocks at the input resolution; after each x2 upsample a conv and, at 2x
    // and 4x, three Blocks (radius 1 there reaches 4 and 2 output pixels), at 8x one Block and conv 19.
    const d = buildNetwork('taesd-decoder', decoder, undefined, 'd');
    expect([d.factor, d.inputRadius, d.outputRadius]).toEqual([8, 1 + 9, 4 * 10 + 2 * 10 + 5]);
  });

  // Tiling is exact only if the reported field covers what the network sees; too wide only costs time.
  it('reports the TAESD decoder\'s true receptive field, measured by cropping its input', async () => {
    const graph = buildNetwork('taesd-decoder', decoder, undefined, 'd');
    const network = await runtime.load(graph);
    const [height, width, kept] = [48, 4, 40];
    const full = tensor4([1, 4, height, width], seededData(4 * height * width, 7, 4));
    const top = tensor4([1, 4, kept, width], Float32Array.from({ length: 4 * kept * width }, (_, i) => full.data[Math.floor(i / (kept * width)) * height * width + (i % (kept * width))]));
    const [whole, cropped] = [await network.run(full), await network.run(top)];
    const outWidth = width * graph.factor;
    const rowDiff = (row: number) => {
      let max = 0;
      for (let c = 0; c < 3; c++) {
        for (let x = 0; x < outWidth; x++) {
          max = Math.max(max, Math.abs(whole.data[(c * height * graph.factor + row) * outWidth + x] - cropped.data[(c * kept * graph.factor + row) * outWidth + x]));
        }
      }
      return max;
    };
    // Output rows within this reach of the crop see the zero padding that replaced the rows cut off.
    const reach = graph.inputRadius * graph.factor + graph.outputRadius;
    const edge = kept * graph.factor;
    expect(Math.max(...Array.from({ length: edge - reach }, (_, row) => rowDiff(row)))).toBe(0);
    expect(rowDiff(edge - reach)).toBeGreaterThan(0);
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
    expect(layoutError(() => buildNetwork('taesd-decoder', upscaler, undefined, 'u'))).toMatch(/missing key "1\.weight"/);
    expect(layoutError(() => buildNetwork('upscaler', decoder, 2, 'd'))).toMatch(/missing key "sequential\.0\.weight"/);
  });

  it('names the first missing, misshapen or unexpected key of a TAESD decoder', () => {
    const missing = editableTensors(decoder);
    delete missing['9.conv.2.bias'];
    expect(layoutError(() => buildNetwork('taesd-decoder', rebuilt(missing), undefined, 'd.safetensors'))).toMatch(/d\.safetensors .*missing key "9\.conv\.2\.bias"/);

    const misshapen = editableTensors(decoder);
    misshapen['12.weight'] = { ...misshapen['12.weight'], shape: [64, 32, 3, 6] };
    expect(layoutError(() => buildNetwork('taesd-decoder', rebuilt(misshapen), undefined, 'd'))).toMatch(/"12\.weight" has shape \[64, 32, 3, 6\], expected \[64, 64, 3, 3\]/);

    // The convs after the upsamples have no bias: a file with one is some other network.
    const unexpected = editableTensors(decoder);
    unexpected['17.bias'] = { dtype: 'F32', shape: [64], bytes: new Uint8Array(256) };
    expect(layoutError(() => buildNetwork('taesd-decoder', rebuilt(unexpected), undefined, 'd'))).toMatch(/unexpected key "17\.bias" for the TAESD decoder layout/);
  });

  it('takes a factor for the interposer and upscaler only', () => {
    for (const [architecture, weights, factor] of [['taesd-decoder', decoder, 8], ['upscaler', upscaler, undefined], ['interposer', interposer, undefined]] as const) {
      expect(() => buildNetwork(architecture, weights, factor, 'w')).toThrow(expect.objectContaining({ code: 'bad_request', message: expect.stringMatching(/factor/) }));
    }
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
  for (const [factor, height, width] of [[1.25, 3, 3], [1.25, 2, 3], [1.25, 2, 8], [1.5, 5, 1], [0.5, 5, 7], [1.1, 10, 9], [0.7, 10, 3], [2, 5, 7], [2, 1, 1], [3, 2, 3]]) {
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

  // A real .safetensors file of F16 (the hub's TAESD files) or BF16 tensors must run exactly as
  // the same rounded values stored as F32, rounded here without the project's converters.
  for (const [dtype, mantissaBits, minExponent] of [['F16', 10, -14], ['BF16', 7, -126]] as const) {
    it(`loads ${dtype} TAESD weights as the same rounded weights in F32`, async () => {
      const c = conformanceCase('taesd-decoder-4ch');
      const original = editableTensors(await readSafetensors(weightsPath(c)));
      const dir = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-weights-'));
      const halfFile = path.join(dir, `decoder.${dtype}.safetensors`);
      writeFileSync(halfFile, rawSafetensors(convertFloats(original, dtype)));
      const rounded = Object.fromEntries(
        Object.entries(original).map(([name, t]) => {
          const values = Float32Array.from(new Float32Array(new Uint8Array(t.bytes).buffer), (v) => roundToBits(v, mantissaBits, minExponent));
          return [name, { ...t, bytes: new Uint8Array(values.buffer) }];
        }),
      );
      const roundedFile = path.join(dir, 'decoder.rounded-F32.safetensors');
      writeFileSync(roundedFile, rawSafetensors(rounded));

      const halfWeights = await readSafetensors(halfFile);
      expect(halfWeights.tensors.get('3.conv.0.weight')?.dtype).toBe(dtype);
      const { input, output } = await conformanceIO(c);
      const fromHalf = await (await runtime.load(buildNetwork('taesd-decoder', halfWeights, undefined, halfFile))).run(input);
      const fromRounded = await (await runtime.load(buildNetwork('taesd-decoder', await readSafetensors(roundedFile), undefined, roundedFile))).run(input);
      expect(fromHalf.shape).toEqual(c.output_shape);
      expect(maxAbsDiff(fromHalf.data, fromRounded.data)).toBeLessThanOrEqual(1e-6);
      // The rounding is real: the output moves away from the F32 reference, though not by much.
      expect(countOutOfTolerance(fromHalf.data, output.data)).toBeGreaterThan(0);
      expect(maxAbsDiff(fromHalf.data, output.data)).toBeLessThan(dtype === 'F16' ? 5e-3 : 5e-2);
    });
  }
});

/** v rounded to the nearest float with `bits` mantissa bits (ties to even), as F16 (10) or BF16 (7) hold it. */
function roundToBits(v: number, bits: number, minExponent: number): number {
  if (v === 0) return v;
  const step = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v))), minExponent) - bits);
  const steps = v / step;
  return (Math.abs(steps % 1) === 0.5 ? 2 * Math.round(steps / 2) : Math.round(steps)) * step;
}
