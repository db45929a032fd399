import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine } from '../src/engine.ts';
import { BridgeError } from '../src/errors.ts';
import { FAMILIES, type FamilyName } from '../src/families.ts';
import { makeLatent, toRaw, toSpace, type Latent } from '../src/latent.ts';
import { DEFAULT_WORK_LIMITS } from '../src/limits.ts';
import { describeStep, planJob, type Job, type Plan } from '../src/planner.ts';
import { imageFromDecoded } from '../src/preview.ts';
import { resizeBilinear } from '../src/resize.ts';
import { LoadedNetwork, Runtime } from '../src/runtime.ts';
import { ModelStore } from '../src/store/store.ts';
import type { Size, Tensor4 } from '../src/tensor.ts';
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

afterEach(() => {
  vi.restoreAllMocks();
});

function modelSpace(family: FamilyName, raw: Tensor4): Latent {
  const { scale, shift } = FAMILIES[family];
  return makeLatent(family, 'model', raw.shape, raw.data.map((v) => (v - shift) * scale));
}

const size = (height: number, width: number): Size => ({ height, width });
const perform = (job: Job, on = engine) => on.perform(job, DEFAULT_WORK_LIMITS);
const upscale = (latent: Latent, target: Size, on = engine) => perform({ op: 'upscale', latent, target }, on);
const interpose = async (latent: Latent, to: FamilyName, on = engine) => (await perform({ op: 'interpose', latent, to }, on)).latent;
const hires = (latent: Latent, to: FamilyName, target: Size) => perform({ op: 'hires', latent, to, target });
const steps = (result: { plan: Plan }) => result.plan.steps.map(describeStep);

async function failure(promise: Promise<unknown>): Promise<BridgeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return error as BridgeError;
  }
  throw new Error('expected an error');
}

describe('engine', () => {
  it('at exactly a trained factor, equals the reference network (through model space)', async () => {
    const { input, output } = await conformanceIO(conformanceCase('upscaler-x2.0'));
    const result = await upscale(modelSpace('v1', input), size(48, 48));
    expect(steps(result)).toEqual(['upscaler-v1-x2.0 24x24 -> 48x48']);
    expect(result.latent.space).toBe('model');
    expect(countOutOfTolerance(result.latent.data, modelSpace('v1', output).data)).toBe(0);
  });

  it('upscales to an exact odd size (1280x720 -> 1920x1080 in latent pixels)', async () => {
    const latent = makeLatent('xl', 'model', [1, 4, 90, 160], seededData(4 * 90 * 160, 3));
    const result = await upscale(latent, size(135, 240));
    expect(result.latent.shape).toEqual([1, 4, 135, 240]);
    expect(steps(result)).toEqual(['upscaler-xl-x1.5 90x160 -> 135x240']);
    const odd = await upscale(latent, size(131, 233));
    expect(odd.latent.shape).toEqual([1, 4, 131, 233]);
    expect(steps(odd)).toEqual(['upscaler-xl-x1.5 90x160 -> 135x240', 'bilinear 135x240 -> 131x233']);
  });

  it('chains networks above 2x', async () => {
    const latent = makeLatent('v1', 'model', [1, 4, 16, 20], seededData(4 * 16 * 20, 4));
    const result = await upscale(latent, size(70, 87));
    expect(result.latent.shape).toEqual([1, 4, 70, 87]);
    expect(steps(result).map((p) => p.split(' ')[0])).toEqual(['upscaler-v1-x2.0', 'upscaler-v1-x2.0', 'upscaler-v1-x1.25', 'bilinear']);
  });

  it('treats each batch item independently', async () => {
    const one = seededData(4 * 12 * 12, 5);
    const batch = new Float32Array(3 * one.length);
    for (let i = 0; i < 3; i++) batch.set(one, i * one.length);
    const single = await upscale(makeLatent('v1', 'model', [1, 4, 12, 12], one), size(18, 18));
    const triple = await upscale(makeLatent('v1', 'model', [3, 4, 12, 12], batch), size(18, 18));
    expect(triple.latent.shape).toEqual([3, 4, 18, 18]);
    for (let i = 0; i < 3; i++) {
      expect(countOutOfTolerance(triple.latent.data.subarray(i * single.latent.data.length, (i + 1) * single.latent.data.length), single.latent.data)).toBe(0);
    }
  });

  it('interposes xl into v1 exactly as the reference network, in model space', async () => {
    const { input, output } = await conformanceIO(conformanceCase('interposer-xl-to-v1'));
    const result = await interpose(modelSpace('xl', input), 'v1');
    expect(result.family).toBe('v1');
    expect(countOutOfTolerance(result.data, modelSpace('v1', output).data)).toBe(0);
  });

  it('converts 16-channel and Cascade latents, and leaves a latent of the target family as it is', async () => {
    const fx = await interpose(makeLatent('fx', 'model', [1, 16, 10, 12], seededData(16 * 120, 6)), 'xl');
    expect(fx.shape).toEqual([1, 4, 10, 12]);
    const ca = await interpose(makeLatent('ca', 'model', [1, 4, 21, 30], seededData(4 * 630, 7)), 'v1');
    expect(ca.shape).toEqual([1, 4, 10, 15]);
    const v3 = await interpose(makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 8)), 'v3');
    expect(v3.shape).toEqual([1, 16, 8, 8]);
    const xl = makeLatent('xl', 'model', [1, 4, 8, 8], seededData(256, 9));
    expect((await interpose(xl, 'xl')).data).toEqual(xl.data);
  });

  it('does hires in one call: interpose at low resolution, then upscale', async () => {
    const latent = makeLatent('xl', 'model', [2, 4, 32, 32], seededData(2 * 4 * 32 * 32, 9));
    const result = await hires(latent, 'v1', size(48, 48));
    expect(result.latent.family).toBe('v1');
    expect(result.latent.shape).toEqual([2, 4, 48, 48]);
    expect(steps(result)).toEqual(['interposer-xl-to-v1 32x32 -> 32x32', 'upscaler-v1-x1.5 32x32 -> 48x48']);
    expect(result.plan.warnings).toEqual([]);
    const viaSteps = await upscale(await interpose(latent, 'v1'), size(48, 48));
    expect(countOutOfTolerance(result.latent.data, viaSteps.latent.data)).toBe(0);
  });

  it('hires where neither family has an upscaler resizes bilinearly, in raw space, and warns', async () => {
    const latent = makeLatent('v3', 'model', [1, 16, 8, 8], seededData(1024, 10));
    const result = await hires(latent, 'v3', size(12, 12));
    expect(steps(result)).toEqual(['bilinear 8x8 -> 12x12']);
    expect(result.plan.warnings).toEqual([{ code: 'no_upscaler', message: 'no neural upscaler exists for v3 latents; resized bilinearly' }]);
    const resized = resizeBilinear(toRaw(latent), 12, 12);
    const expected = toSpace(makeLatent('v3', 'raw', resized.shape, resized.data), 'model');
    expect(result.latent.shape).toEqual([1, 16, 12, 12]);
    expect(countOutOfTolerance(result.latent.data, expected.data)).toBe(0);
  });

  it('gives clear errors', async () => {
    expect((await failure(upscale(makeLatent('v3', 'model', [1, 16, 8, 8], new Float32Array(1024)), size(16, 16)))).code).toBe('unsupported_direction');
    expect((await failure(interpose(makeLatent('v1', 'model', [1, 4, 8, 8], new Float32Array(256)), 'fx'))).code).toBe('unsupported_direction');
    expect((await failure(interpose(makeLatent('v3', 'model', [1, 16, 8, 8], new Float32Array(1024)), 'v1'))).code).toBe('model_unavailable');
    expect((await failure(upscale(makeLatent('v1', 'model', [1, 4, 8, 8], new Float32Array(256)), size(0, 8)))).code).toBe('bad_request');
  });

  it('refuses weights whose channels do not fit the direction', async () => {
    const dir = makeModelsDir([]);
    copyFileSync(path.join(modelsDir, 'v1-to-v3_interposer-v4.0.safetensors'), path.join(dir, 'xl-to-v1_interposer-v4.0.safetensors'));
    const wrong = new Engine({ source: isolatedStore(dir), runtime });
    expect((await failure(interpose(makeLatent('xl', 'model', [1, 4, 8, 8], new Float32Array(256)), 'v1', wrong))).code).toBe('bad_weights');
  });

  it('names every missing network of a job in one error, with the command that fetches them all', async () => {
    const empty = new Engine({ source: isolatedStore(makeModelsDir(['upscaler-v1-x1.5'])), runtime });
    const plan = planJob({ op: 'hires', latent: makeLatent('v3', 'model', [1, 16, 8, 8], new Float32Array(1024)), to: 'v1', target: size(24, 24) }, DEFAULT_WORK_LIMITS);
    expect(plan.steps.map((step) => (step.kind === 'network' ? step.network.name : step.kind))).toEqual(['interposer-v3-to-v1', 'upscaler-v1-x2.0', 'upscaler-v1-x1.5']);
    const error = await failure(empty.prepare(plan));
    expect(error.code).toBe('model_unavailable');
    expect(error.message).toMatch(
      /^2 networks this job needs are missing: v3-to-v1_interposer-v4\.0\.safetensors \(interposer-v3-to-v1\), latent-upscaler-v2\.1_SDv1-x2\.0\.safetensors \(upscaler-v1-x2\.0\); fetch them all with `latent-bridge models pull interposer-v3-to-v1 upscaler-v1-x2\.0`/,
    );
  });

  it('prepare loads exactly the networks the plan names, and run loads nothing more', async () => {
    const load = vi.spyOn(runtime, 'load');
    const fresh = new Engine({ source: isolatedStore(modelsDir), runtime });
    const job: Job = { op: 'hires', latent: makeLatent('xl', 'model', [1, 4, 32, 32], seededData(4096, 12)), to: 'v1', target: size(70, 70) };
    const plan = planJob(job, DEFAULT_WORK_LIMITS);
    await fresh.prepare(plan);
    expect(fresh.loadedModels().sort()).toEqual(['interposer-xl-to-v1', 'upscaler-v1-x1.25', 'upscaler-v1-x2.0']);
    expect(load).toHaveBeenCalledTimes(3);
    await fresh.run(plan, job.latent);
    expect(load).toHaveBeenCalledTimes(3);
  });

  it('loads each network once, however many requests ask for it at the same time', async () => {
    const load = vi.spyOn(runtime, 'load');
    const fresh = new Engine({ source: isolatedStore(modelsDir), runtime });
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 13));
    await Promise.all([upscale(latent, size(16, 16), fresh), upscale(latent, size(16, 16), fresh), upscale(latent, size(12, 12), fresh)]);
    expect(load.mock.calls.map(([graph]) => graph.description).length).toBe(2);
    expect(fresh.loadedModels().sort()).toEqual(['upscaler-v1-x1.5', 'upscaler-v1-x2.0']);
  });

  it('keeps at most maxLoaded networks, releasing the least recently used', async () => {
    const release = vi.spyOn(LoadedNetwork.prototype, 'release');
    const small = new Engine({ source: isolatedStore(modelsDir), runtime, pool: { maxLoaded: 1, idleMs: 60_000 } });
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 14));
    await upscale(latent, size(16, 16), small);
    expect(small.loadedModels()).toEqual(['upscaler-v1-x2.0']);
    await upscale(latent, size(12, 12), small);
    expect(small.loadedModels()).toEqual(['upscaler-v1-x1.5']);
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(1));
  });

  it('decodes TAESD previews as the reference decoder does, from the model-space latent, clamped to bytes', async () => {
    for (const [name, family] of [['taesd-decoder-4ch', 'xl'], ['taesd-decoder-16ch', 'fx']] as const) {
      const { input, output } = await conformanceIO(conformanceCase(name));
      const latent = makeLatent(family, 'model', input.shape, input.data);
      const image = await engine.decodePreview(latent, {});
      const [, , height, width] = output.shape;
      expect([image.width, image.height]).toEqual([width, height]);
      // The reference output's bytes the way previews make them: clamped to [0, 1], * 255, rounded.
      const expected = imageFromDecoded(output, {});
      let worst = 0;
      for (let i = 0; i < expected.data.length; i++) worst = Math.max(worst, Math.abs(image.data[i] - expected.data[i]));
      expect(worst).toBeLessThanOrEqual(1);
      // The same latent given in raw space is the same picture: decoders take model space.
      const again = await engine.decodePreview(toRaw(latent), {});
      expect(again.data.every((v, i) => Math.abs(v - image.data[i]) <= 1)).toBe(true);
    }
  });

  it('decodes one batch item or the grid, and refuses a family without a decoder', async () => {
    const latent = makeLatent('v1', 'model', [3, 4, 4, 5], seededData(3 * 4 * 20, 16, 2));
    const second = await engine.decodePreview(latent, { index: 1 });
    expect([second.width, second.height]).toEqual([40, 32]);
    const alone = await engine.decodePreview(makeLatent('v1', 'model', [1, 4, 4, 5], latent.data.slice(80, 160)), {});
    expect(second.data).toEqual(alone.data);
    const grid = await engine.decodePreview(latent, { grid: true });
    expect([grid.width, grid.height]).toEqual([80, 64]);
    const rowOf = (image: { width: number; data: Uint8Array }, y: number, x0: number, w: number) => image.data.slice((y * image.width + x0) * 3, (y * image.width + x0 + w) * 3);
    expect(rowOf(grid, 5, 40, 40)).toEqual(rowOf(second, 5, 0, 40));
    expect((await failure(engine.decodePreview(makeLatent('ca', 'model', [1, 4, 4, 4], new Float32Array(64)), {}))).code).toBe('unsupported_direction');
  });

  it('releases networks nobody used for idleMs', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    try {
      const release = vi.spyOn(LoadedNetwork.prototype, 'release');
      const idle = new Engine({ source: isolatedStore(modelsDir), runtime, pool: { maxLoaded: 8, idleMs: 5 * 60_000 } });
      await upscale(makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 15)), size(16, 16), idle);
      vi.advanceTimersByTime(4 * 60_000);
      expect(idle.loadedModels()).toEqual(['upscaler-v1-x2.0']);
      vi.advanceTimersByTime(2 * 60_000);
      expect(idle.loadedModels()).toEqual([]);
      await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(1));
    } finally {
      vi.useRealTimers();
    }
  });
});
