import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine.ts';
import { BridgeError } from '../src/errors.ts';
import { FAMILIES, type FamilyName } from '../src/families.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { Runtime } from '../src/runtime.ts';
import { ModelStore } from '../src/store/store.ts';
import type { Tensor4 } from '../src/tensor.ts';
import { conformanceCase, conformanceIO, countOutOfTolerance, seededData } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';

let engine: Engine;
/** Offline, with an empty cache of its own: only the stand-in files are ever found. */
const isolatedStore = (dir: string) =>
  new ModelStore({ modelDirs: [dir], offline: true, cacheDir: path.join(dir, '.hf-cache'), stateDir: path.join(dir, '.state') });
let runtime: Runtime;
let modelsDir: string;

beforeAll(async () => {
  modelsDir = makeModelsDir();
  runtime = await Runtime.create({ device: 'cpu' });
  engine = new Engine({ source: isolatedStore(modelsDir), runtime });
});

function modelSpace(family: FamilyName, raw: Tensor4): Latent {
  const { scale, shift } = FAMILIES[family];
  return makeLatent(family, 'model', raw.shape, raw.data.map((v) => (v - shift) * scale));
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return (error as BridgeError).code;
  }
  throw new Error('expected an error');
}

describe('engine', () => {
  it('at exactly a trained factor, equals the reference network (through model space)', async () => {
    const { input, output } = await conformanceIO(conformanceCase('upscaler-x2.0'));
    const result = await engine.upscale(modelSpace('v1', input), { height: 48, width: 48 });
    expect(result.plan).toEqual(['upscaler-v1-x2.0 24x24 -> 48x48']);
    expect(result.latent.space).toBe('model');
    expect(countOutOfTolerance(result.latent.data, modelSpace('v1', output).data)).toBe(0);
  });

  it('upscales to an exact odd size (1280x720 -> 1920x1080 in latent pixels)', async () => {
    const latent = makeLatent('xl', 'model', [1, 4, 90, 160], seededData(4 * 90 * 160, 3));
    const result = await engine.upscale(latent, { height: 135, width: 240 });
    expect(result.latent.shape).toEqual([1, 4, 135, 240]);
    expect(result.plan).toEqual(['upscaler-xl-x1.5 90x160 -> 135x240']);
    const odd = await engine.upscale(latent, { height: 131, width: 233 });
    expect(odd.latent.shape).toEqual([1, 4, 131, 233]);
    expect(odd.plan).toEqual(['upscaler-xl-x1.5 90x160 -> 135x240', 'bilinear 135x240 -> 131x233']);
  });

  it('chains networks above 2x', async () => {
    const latent = makeLatent('v1', 'model', [1, 4, 16, 20], seededData(4 * 16 * 20, 4));
    const result = await engine.upscale(latent, { height: 70, width: 87 });
    expect(result.latent.shape).toEqual([1, 4, 70, 87]);
    expect(result.plan.map((p) => p.split(' ')[0])).toEqual(['upscaler-v1-x2.0', 'upscaler-v1-x2.0', 'upscaler-v1-x1.25', 'bilinear']);
  });

  it('treats each batch item independently', async () => {
    const one = seededData(4 * 12 * 12, 5);
    const batch = new Float32Array(3 * one.length);
    for (let i = 0; i < 3; i++) batch.set(one, i * one.length);
    const single = await engine.upscale(makeLatent('v1', 'model', [1, 4, 12, 12], one), { height: 18, width: 18 });
    const triple = await engine.upscale(makeLatent('v1', 'model', [3, 4, 12, 12], batch), { height: 18, width: 18 });
    expect(triple.latent.shape).toEqual([3, 4, 18, 18]);
    for (let i = 0; i < 3; i++) {
      expect(countOutOfTolerance(triple.latent.data.subarray(i * single.latent.data.length, (i + 1) * single.latent.data.length), single.latent.data)).toBe(0);
    }
  });

  it('interposes xl into v1 exactly as the reference network, in model space', async () => {
    const { input, output } = await conformanceIO(conformanceCase('interposer-xl-to-v1'));
    const result = await engine.interpose(modelSpace('xl', input), 'v1');
    expect(result.family).toBe('v1');
    expect(countOutOfTolerance(result.data, modelSpace('v1', output).data)).toBe(0);
  });

  it('converts 16-channel and Cascade latents', async () => {
    const fx = await engine.interpose(makeLatent('fx', 'model', [1, 16, 10, 12], seededData(16 * 120, 6)), 'xl');
    expect(fx.shape).toEqual([1, 4, 10, 12]);
    const ca = await engine.interpose(makeLatent('ca', 'model', [1, 4, 21, 30], seededData(4 * 630, 7)), 'v1');
    expect(ca.shape).toEqual([1, 4, 10, 15]);
    const v3 = await engine.interpose(makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 8)), 'v3');
    expect(v3.shape).toEqual([1, 16, 8, 8]);
  });

  it('does hires in one call: interpose at low resolution, then upscale', async () => {
    const latent = makeLatent('xl', 'model', [2, 4, 32, 32], seededData(2 * 4 * 32 * 32, 9));
    const result = await engine.hires(latent, 'v1', { height: 48, width: 48 });
    expect(result.latent.family).toBe('v1');
    expect(result.latent.shape).toEqual([2, 4, 48, 48]);
    expect(result.plan).toEqual(['interposer-xl-to-v1 32x32 -> 32x32', 'upscaler-v1-x1.5 32x32 -> 48x48']);
    expect(result.warnings).toEqual([]);
    const viaSteps = await engine.upscale(await engine.interpose(latent, 'v1'), { height: 48, width: 48 });
    expect(countOutOfTolerance(result.latent.data, viaSteps.latent.data)).toBe(0);
  });

  it('hires without any upscaler resizes and warns', async () => {
    const result = await engine.hires(makeLatent('fx', 'model', [1, 16, 8, 8], seededData(1024, 10)), 'xl', { height: 12, width: 12 });
    expect(result.latent.shape).toEqual([1, 4, 12, 12]);
    expect(result.plan[0]).toBe('interposer-fx-to-xl 8x8 -> 8x8');
    expect(result.latent.family).toBe('xl');
  });

  it('gives clear errors', async () => {
    expect(await code(engine.upscale(makeLatent('v3', 'model', [1, 16, 8, 8], new Float32Array(1024)), { height: 16, width: 16 }))).toBe('unsupported_direction');
    expect(await code(engine.interpose(makeLatent('v1', 'model', [1, 4, 8, 8], new Float32Array(256)), 'fx'))).toBe('unsupported_direction');
    expect(await code(engine.interpose(makeLatent('v3', 'model', [1, 16, 8, 8], new Float32Array(1024)), 'v1'))).toBe('model_unavailable');
    expect(await code(engine.upscale(makeLatent('v1', 'model', [1, 4, 8, 8], new Float32Array(256)), { height: 0, width: 8 }))).toBe('bad_request');
  });

  it('refuses weights whose channels do not fit the direction', async () => {
    const dir = makeModelsDir([]);
    copyFileSync(path.join(modelsDir, 'v1-to-v3_interposer-v4.0.safetensors'), path.join(dir, 'xl-to-v1_interposer-v4.0.safetensors'));
    const wrong = new Engine({ source: isolatedStore(dir), runtime });
    expect(await code(wrong.interpose(makeLatent('xl', 'model', [1, 4, 8, 8], new Float32Array(256)), 'v1'))).toBe('bad_weights');
  });

  it('prepares exactly the networks a request will run', async () => {
    const fresh = new Engine({ source: isolatedStore(modelsDir), runtime });
    await fresh.prepare('xl', 'v1', { height: 32, width: 32 }, { height: 48, width: 48 });
    expect(fresh.loadedModels().sort()).toEqual(['interposer-xl-to-v1', 'upscaler-v1-x1.5']);
    await fresh.prepare('v1', 'v1', { height: 16, width: 16 }, { height: 70, width: 70 });
    expect(fresh.loadedModels()).toContain('upscaler-v1-x1.25');
    await fresh.prepare('fx', 'xl', { height: 8, width: 8 });
    expect(fresh.loadedModels()).toContain('interposer-fx-to-xl');
    // Refused requests load nothing and report nothing here: the request itself fails later.
    await fresh.prepare('v1', 'fx', { height: 8, width: 8 });
    expect(fresh.loadedModels()).toHaveLength(5);
  });

  it('loads each network once', async () => {
    expect(engine.loadedModels()).toContain('upscaler-v1-x2.0');
    expect(new Set(engine.loadedModels()).size).toBe(engine.loadedModels().length);
  });
});
