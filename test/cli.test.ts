import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, toFloat32, writeSafetensors } from '../src/safetensors.ts';
import { TAESD_CASES, conformanceCase, conformanceIO, countOutOfTolerance, seededData, weightsPath } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';

const BIN = fileURLToPath(new URL('../bin/latent-bridge.js', import.meta.url));
let work: string;
let models: string;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      env: { ...process.env, HF_HUB_OFFLINE: '1', LATENT_BRIDGE_MODELS: '', HF_HOME: path.join(work, 'hf'), HF_HUB_CACHE: '', HUGGINGFACE_HUB_CACHE: '', XDG_STATE_HOME: path.join(work, 'state') },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function latentFile(name: string, shape: number[], tensorName = 'samples'): Promise<string> {
  const file = path.join(work, name);
  await writeSafetensors(file, { [tensorName]: { shape, data: seededData(shape.reduce((a, b) => a * b), 11) } });
  return file;
}

async function nanFile(): Promise<string> {
  const file = path.join(work, 'nan.safetensors');
  await writeSafetensors(file, { samples: { shape: [1, 4, 4, 4], data: new Float32Array(64).fill(Number.NaN) } });
  return file;
}

async function truncatedFile(): Promise<string> {
  const file = await latentFile('cut.safetensors', [1, 4, 8, 8]);
  const bytes = readFileSync(file);
  writeFileSync(file, bytes.subarray(0, bytes.length - 100));
  return file;
}

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-cli-'));
  models = makeModelsDir();
});

describe('latent-bridge CLI', () => {
  it('lists commands and exits 2 without one', async () => {
    const result = await cli();
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/upscale/);
  });

  it('net runs a raw network exactly as the reference', async () => {
    const c = conformanceCase('upscaler-x1.5');
    const { input, output } = await conformanceIO(c);
    const inFile = path.join(work, 'conformance-in.safetensors');
    await writeSafetensors(inFile, { input: { shape: input.shape, data: input.data } });
    const outFile = path.join(work, 'net-out.safetensors');
    const result = await cli('net', '--arch', 'upscaler', '--weights', weightsPath(c), '--factor', '1.5', inFile, outFile);
    expect(result.code).toBe(0);
    const written = (await readSafetensors(outFile)).tensors;
    expect([...written.keys()]).toEqual(['latent']);
    expect(written.get('latent')?.shape).toEqual(c.output_shape);
    expect(countOutOfTolerance(toFloat32(written.get('latent')!), output.data)).toBe(0);
  });

  for (const c of TAESD_CASES) {
    it(`net decodes ${c.name} exactly as the reference, without a factor`, async () => {
      const { input, output } = await conformanceIO(c);
      const inFile = path.join(work, `${c.name}-in.safetensors`);
      await writeSafetensors(inFile, { input: { shape: input.shape, data: input.data } });
      const outFile = path.join(work, `${c.name}-out.safetensors`);
      const result = await cli('net', '--arch', 'taesd-decoder', '--weights', weightsPath(c), '--device', 'cpu', inFile, outFile);
      expect(result.stderr).toMatch(/TAESD decoder/);
      expect(result.code).toBe(0);
      const written = (await readSafetensors(outFile)).tensors;
      expect(written.get('latent')?.shape).toEqual(c.output_shape);
      expect(countOutOfTolerance(toFloat32(written.get('latent')!), output.data)).toBe(0);
    });
  }

  it('upscale reaches an exact size with the models folder', async () => {
    const inFile = await latentFile('v1.safetensors', [1, 4, 90, 160]);
    const outFile = path.join(work, 'up.safetensors');
    const result = await cli('upscale', '--family', 'v1', '--size', '135x240', '--models', models, inFile, outFile);
    expect(result.stderr).toMatch(/upscaler-v1-x1\.5/);
    expect(result.code).toBe(0);
    expect((await readSafetensors(outFile)).tensors.get('latent')?.shape).toEqual([1, 4, 135, 240]);
  });

  it('upscale --scale and a 3-D input', async () => {
    const inFile = await latentFile('chw.safetensors', [4, 20, 24]);
    const outFile = path.join(work, 'up-scale.safetensors');
    expect((await cli('upscale', '--family', 'sdxl', '--scale', '1.25', '--models', models, inFile, outFile)).code).toBe(0);
    expect((await readSafetensors(outFile)).tensors.get('latent')?.shape).toEqual([1, 4, 25, 30]);
  });

  it('interpose converts between families', async () => {
    const inFile = await latentFile('fx.safetensors', [1, 16, 12, 10]);
    const outFile = path.join(work, 'fx-xl.safetensors');
    expect((await cli('interpose', '--from', 'fx', '--to', 'xl', '--models', models, inFile, outFile)).code).toBe(0);
    expect((await readSafetensors(outFile)).tensors.get('latent')?.shape).toEqual([1, 4, 12, 10]);
  });

  const failures: [string, () => Promise<string[]>, RegExp][] = [
    ['an unknown family', async () => ['upscale', '--family', 'sd9', '--scale', '2', await latentFile('a.safetensors', [1, 4, 8, 8])], /unknown latent family "sd9"/],
    ['a direction into fx', async () => ['interpose', '--from', 'v1', '--to', 'fx', await latentFile('b.safetensors', [1, 4, 8, 8])], /no interposer converts v1 into fx/],
    ['a direction into ca', async () => ['interpose', '--from', 'xl', '--to', 'ca', await latentFile('c.safetensors', [1, 4, 8, 8])], /no interposer converts xl into ca/],
    ['the wrong channel count', async () => ['interpose', '--from', 'v3', '--to', 'v1', await latentFile('d.safetensors', [1, 4, 8, 8])], /a v3 latent has 16 channels/],
    ['a family without an upscaler', async () => ['upscale', '--family', 'fx', '--scale', '2', await latentFile('e.safetensors', [1, 16, 8, 8])], /no neural upscaler exists for fx/],
    ['a bad shape', async () => ['upscale', '--family', 'v1', '--scale', '2', await latentFile('f.safetensors', [4, 8])], /\[batch, channels, height, width\]/],
    ['a missing model offline', async () => ['interpose', '--from', 'xl', '--to', 'v3', await latentFile('g.safetensors', [1, 4, 8, 8])], /interposer-xl-to-v3/],
    ['a missing input', async () => ['upscale', '--family', 'v1', '--scale', '2', path.join(work, 'missing.safetensors')], /does not exist/],
    ['a truncated input', async () => ['upscale', '--family', 'v1', '--scale', '2', await truncatedFile()], /truncated/],
    ['both --scale and --size', async () => ['upscale', '--family', 'v1', '--scale', '2', '--size', '4x4', await latentFile('h.safetensors', [1, 4, 8, 8])], /exactly one of/],
    ['a factor that leaves no output', async () => ['net', '--arch', 'upscaler', '--weights', weightsPath(conformanceCase('upscaler-x2.0')), '--factor', '0.01', await latentFile('j.safetensors', [1, 4, 8, 8])], /height must be a positive integer, got 0/],
    ['a factor beyond the size limit', async () => ['net', '--arch', 'upscaler', '--weights', weightsPath(conformanceCase('upscaler-x2.0')), '--factor', '1000', await latentFile('k.safetensors', [1, 4, 8, 8])], /beyond the limit of 1024 \(--max-side\)/],
    // The same limits and checks as the server's, from the same place (src/limits.ts, src/planner.ts).
    ['a scale beyond the server\'s', async () => ['upscale', '--family', 'v1', '--scale', '20', await latentFile('l.safetensors', [1, 4, 8, 8])], /scale 20 is, beyond the limit of 16 \(--max-scale\)/],
    ['a size that would take minutes, unless asked', async () => ['upscale', '--family', 'v1', '--size', '2000x2000', await latentFile('m.safetensors', [1, 4, 8, 8])], /target height 2000 latent pixels is, beyond the limit of 1024 \(--max-side\)/],
    ['a latent of NaN', async () => ['upscale', '--family', 'v1', '--scale', '2', await nanFile()], /non-finite value \(NaN\).*--allow-nonfinite/],
    ['an I64 input tensor', async () => ['net', '--arch', 'interposer', '--weights', weightsPath(conformanceCase('interposer-ca-to-v1-small')), '--factor', '1', '--tensor', 'core.1.norm.num_batches_tracked', weightsPath(conformanceCase('interposer-ca-to-v1-small'))], /num_batches_tracked/],
    ['weights of the other architecture', async () => ['net', '--arch', 'interposer', '--weights', weightsPath(conformanceCase('upscaler-x2.0')), '--factor', '1', await latentFile('i.safetensors', [1, 4, 8, 8])], /missing key "head\.short\.weight"/],
    ['a factor for the TAESD decoder', async () => ['net', '--arch', 'taesd-decoder', '--weights', weightsPath(conformanceCase('taesd-decoder-4ch')), '--factor', '8', await latentFile('m.safetensors', [1, 4, 8, 8])], /--factor is not taken by --arch taesd-decoder/],
    ['an upscaler without a factor', async () => ['net', '--arch', 'upscaler', '--weights', weightsPath(conformanceCase('upscaler-x2.0')), await latentFile('n.safetensors', [1, 4, 8, 8])], /--factor must be a positive number, got nothing/],
    ['upscaler weights as a TAESD decoder', async () => ['net', '--arch', 'taesd-decoder', '--weights', weightsPath(conformanceCase('upscaler-x2.0')), await latentFile('o.safetensors', [1, 4, 8, 8])], /missing key "1\.weight"/],
    ['a latent beyond the size limit for the TAESD decoder', async () => ['net', '--arch', 'taesd-decoder', '--weights', weightsPath(conformanceCase('taesd-decoder-4ch')), await latentFile('q.safetensors', [1, 4, 1025, 1])], /target height 1025 latent pixels is, beyond the limit of 1024 \(--max-side\)/],
    ['a latent of the wrong family for the TAESD decoder', async () => ['net', '--arch', 'taesd-decoder', '--weights', weightsPath(conformanceCase('taesd-decoder-16ch')), await latentFile('p.safetensors', [1, 4, 8, 8])], /TAESD decoder: 16->64->3 channels, x8 takes 16 channels, but the input has 4/],
  ];
  it('refuses an output folder that does not exist, without a stack trace', async () => {
    const result = await cli('upscale', '--family', 'v1', '--scale', '0.5', '--models', models, await latentFile('l.safetensors', [1, 4, 8, 8]), path.join(work, 'absent', 'out.safetensors'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot write .*absent/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(path.join(work, 'absent'))).toBe(false);
  });

  it('writes over its own input when asked', async () => {
    const file = await latentFile('same.safetensors', [1, 4, 8, 8]);
    expect((await cli('upscale', '--family', 'v1', '--size', '10x10', '--models', models, file, file)).code).toBe(0);
    expect((await readSafetensors(file)).tensors.get('latent')?.shape).toEqual([1, 4, 10, 10]);
  });

  it('interpose into the same family copies the latent, as the server answers it', async () => {
    const file = await latentFile('xl.safetensors', [1, 4, 8, 8]);
    const outFile = path.join(work, 'xl-to-xl.safetensors');
    const result = await cli('interpose', '--from', 'xl', '--to', 'xl', '--models', models, file, outFile);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/xl \[1, 4, 8, 8\] -> xl \[1, 4, 8, 8\] on cpu: unchanged/);
    const [read, written] = [await readSafetensors(file), await readSafetensors(outFile)];
    expect(toFloat32(written.tensors.get('latent')!, 'latent')).toEqual(toFloat32(read.tensors.get('samples')!, 'samples'));
  });

  it('runs what its limits refused once they are raised, saying each step', async () => {
    const file = await latentFile('small.safetensors', [1, 4, 8, 8]);
    const outFile = path.join(work, 'raised.safetensors');
    const refused = await cli('upscale', '--family', 'v1', '--size', '16x16', '--max-side', '12', '--models', models, file, outFile);
    expect([refused.code, existsSync(outFile)]).toEqual([1, false]);
    expect(refused.stderr).toMatch(/beyond the limit of 12 \(--max-side\)/);
    const result = await cli('upscale', '--family', 'v1', '--size', '16x16', '--max-side', '16', '--models', models, file, outFile);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/running upscaler-v1-x2.0 8x8 -> 16x16\n/);
    expect((await readSafetensors(outFile)).tensors.get('latent')?.shape).toEqual([1, 4, 16, 16]);
  });

  for (const [what, args, message] of failures) {
    it(`refuses ${what}, exits non-zero and writes nothing`, async () => {
      const outFile = path.join(work, `never-${what.replace(/\W+/g, '-')}.safetensors`);
      const argv = await args();
      const result = await cli(...argv, ...(argv[0] === 'net' ? [] : ['--models', models]), outFile);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(existsSync(outFile)).toBe(false);
    });
  }
});
