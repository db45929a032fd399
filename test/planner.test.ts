import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { FAMILIES, FAMILY_NAMES, type FamilyName } from '../src/families.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { DEFAULT_WORK_LIMITS, scaledTarget, type WorkLimits } from '../src/limits.ts';
import { describePlan, describeStep, planJob, type Job, type Plan } from '../src/planner.ts';
import { scaledSize, type Size } from '../src/tensor.ts';

const limits = DEFAULT_WORK_LIMITS;
const size = (height: number, width: number): Size => ({ height, width });

/** A latent of zeros of the family and size. */
function latent(family: FamilyName, height: number, width: number): Latent {
  const shape = [1, FAMILIES[family].channels, height, width];
  return makeLatent(family, 'model', shape, new Float32Array(shape.reduce((a, b) => a * b)));
}

const steps = (plan: Plan) => plan.steps.map(describeStep);
const upscale = (family: FamilyName, from: Size, to: Size) => planJob({ op: 'upscale', latent: latent(family, from.height, from.width), target: to }, limits);
const hires = (from: FamilyName, to: FamilyName, source: Size, target: Size) =>
  planJob({ op: 'hires', latent: latent(from, source.height, source.width), to, target }, limits);

function refusal(job: Job, within: WorkLimits = limits): BridgeError {
  try {
    planJob(job, within);
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return error as BridgeError;
  }
  throw new Error('expected the planner to refuse the job');
}

describe('upscale plans', () => {
  const factors = (family: FamilyName, from: [number, number], to: [number, number]) =>
    upscale(family, size(...from), size(...to)).steps.flatMap((step) => (step.kind === 'network' ? [step.network.factor] : []));

  it('use exactly the trained factor when the target is one, and nothing else', () => {
    expect(steps(upscale('v1', size(64, 64), size(128, 128)))).toEqual(['upscaler-v1-x2.0 64x64 -> 128x128']);
    expect(steps(upscale('v1', size(64, 64), size(96, 96)))).toEqual(['upscaler-v1-x1.5 64x64 -> 96x96']);
    expect(steps(upscale('xl', size(64, 64), size(80, 80)))).toEqual(['upscaler-xl-x1.25 64x64 -> 80x80']);
  });

  it('pick the smallest factor that reaches an odd target, then resize exactly (1280x720 -> 1920x1080)', () => {
    expect(factors('v1', [90, 160], [135, 240])).toEqual([1.5]);
    expect(steps(upscale('xl', size(72, 128), size(135, 240)))).toEqual(['upscaler-xl-x2.0 72x128 -> 144x256', 'bilinear 144x256 -> 135x240']);
    expect(factors('xl', [100, 100], [101, 100])).toEqual([1.25]);
  });

  it('chain passes above 2x', () => {
    expect(factors('v1', [32, 32], [128, 128])).toEqual([2, 2]);
    expect(factors('v1', [32, 32], [150, 150])).toEqual([2, 2, 1.25]);
    expect(factors('v1', [30, 30], [90, 90])).toEqual([2, 1.5]);
  });

  it('run no network when the target is not larger', () => {
    expect(steps(upscale('v1', size(64, 64), size(64, 64)))).toEqual([]);
    expect(steps(upscale('v1', size(64, 64), size(32, 60)))).toEqual(['bilinear 64x64 -> 32x60']);
    expect(upscale('v3', size(64, 64), size(32, 32)).warnings).toEqual([]);
  });

  it('refuse to enlarge a family without an upscaler', () => {
    expect(refusal({ op: 'upscale', latent: latent('v3', 8, 8), target: size(16, 16) }).code).toBe('unsupported_direction');
  });
});

describe('hires plans', () => {
  it('same family with an upscaler: one upscale', () => {
    expect(steps(hires('v1', 'v1', size(64, 64), size(96, 96)))).toEqual(['upscaler-v1-x1.5 64x64 -> 96x96']);
  });

  it('interpose at low resolution when the target family has an upscaler', () => {
    expect(steps(hires('xl', 'v1', size(128, 128), size(192, 192)))).toEqual(['interposer-xl-to-v1 128x128 -> 128x128', 'upscaler-v1-x1.5 128x128 -> 192x192']);
    expect(steps(hires('v3', 'xl', size(64, 64), size(128, 128)))).toEqual(['interposer-v3-to-xl 64x64 -> 64x64', 'upscaler-xl-x2.0 64x64 -> 128x128']);
  });

  it('upscale first when only the source family has an upscaler', () => {
    expect(steps(hires('v1', 'v3', size(64, 64), size(128, 128)))).toEqual(['upscaler-v1-x2.0 64x64 -> 128x128', 'interposer-v1-to-v3 128x128 -> 128x128']);
  });

  it('resize with a warning when neither family has an upscaler', () => {
    const plan = hires('fx', 'v3', size(64, 64), size(96, 96));
    expect(steps(plan)).toEqual(['interposer-fx-to-v3 64x64 -> 64x64', 'bilinear 64x64 -> 96x96']);
    expect(plan.warnings).toEqual([{ code: 'no_upscaler', message: 'no neural upscaler exists for fx or v3 latents; resized bilinearly' }]);
    expect(steps(hires('v3', 'v3', size(64, 64), size(96, 96)))).toEqual(['bilinear 64x64 -> 96x96']);
  });

  it('only convert when the size stays', () => {
    const plan = hires('xl', 'v1', size(64, 64), size(64, 64));
    expect(steps(plan)).toEqual(['interposer-xl-to-v1 64x64 -> 64x64']);
    expect(plan.warnings).toEqual([]);
    expect(steps(hires('v3', 'v3', size(64, 64), size(64, 64)))).toEqual([]);
  });

  it('account for the Cascade interposer halving the size', () => {
    expect(steps(hires('ca', 'v1', size(128, 128), size(96, 96)))).toEqual(['interposer-ca-to-v1 128x128 -> 64x64', 'upscaler-v1-x1.5 64x64 -> 96x96']);
    expect(steps(hires('ca', 'v3', size(128, 128), size(64, 64)))).toEqual(['interposer-ca-to-v3 128x128 -> 64x64']);
  });

  it('refuse directions no model exists for', () => {
    expect(refusal({ op: 'hires', latent: latent('v1', 8, 8), to: 'fx', target: size(8, 8) }).message).toMatch(/no interposer converts v1 into fx/);
    expect(refusal({ op: 'hires', latent: latent('xl', 8, 8), to: 'ca', target: size(8, 8) }).message).toMatch(/into v1, xl, v3/);
  });

  it('refuse a Cascade latent the interposer halves to nothing, instead of looping (it crashed the sidecar)', () => {
    const tiny = refusal({ op: 'hires', latent: latent('ca', 1, 1), to: 'v1', target: size(1, 1) });
    expect(tiny.code).toBe('bad_request');
    expect(tiny.message).toMatch(/1x1 ca latent is too small: interposer-ca-to-v1 scales it by 0.5 to 0x0/);
    expect(refusal({ op: 'hires', latent: latent('ca', 1, 64), to: 'xl', target: size(64, 64) }).code).toBe('bad_request');
    expect(refusal({ op: 'interpose', latent: latent('ca', 64, 1), to: 'v3' }).code).toBe('bad_request');
  });
});

describe('plans of interpose jobs', () => {
  it('are one interposer, or nothing for the same family', () => {
    expect(steps(planJob({ op: 'interpose', latent: latent('fx', 10, 12), to: 'xl' }, limits))).toEqual(['interposer-fx-to-xl 10x12 -> 10x12']);
    expect(steps(planJob({ op: 'interpose', latent: latent('ca', 21, 30), to: 'v1' }, limits))).toEqual(['interposer-ca-to-v1 21x30 -> 10x15']);
    const same = planJob({ op: 'interpose', latent: latent('xl', 8, 8), to: 'xl' }, limits);
    expect(same.steps).toEqual([]);
    expect(same.target).toEqual(size(8, 8));
  });
});

describe('the limits every entry point shares', () => {
  it('refuse sizes beyond max_side and results beyond max_elements as too_large, naming the flag', () => {
    const wide = refusal({ op: 'upscale', latent: latent('v1', 8, 8), target: size(8, 1025) });
    expect([wide.code, wide.message]).toEqual(['too_large', 'target width 1025 latent pixels is, beyond the limit of 1024 (--max-side)']);
    const small = { ...limits, maxElements: 4 * 32 * 32 };
    expect(refusal({ op: 'upscale', latent: latent('v1', 8, 8), target: size(32, 33) }, small).message).toMatch(/--max-elements/);
    expect(refusal({ op: 'interpose', latent: latent('v1', 32, 32), to: 'v3' }, small).code).toBe('too_large');
    expect(refusal({ op: 'upscale', latent: latent('v1', 8, 8), target: size(0, 8) }).code).toBe('bad_request');
  });

  it('bound the scale of an upscale', () => {
    expect(scaledTarget(size(45, 31), 1.5, limits)).toEqual(size(67, 46));
    expect(() => scaledTarget(size(8, 8), 20, limits)).toThrow(/scale 20 is, beyond the limit of 16 \(--max-scale\)/);
    expect(() => scaledTarget(size(8, 8), 0.05, limits)).toThrow(/shrinks 8x8 latent pixels to nothing/);
    expect(() => scaledTarget(size(600, 8), 2, limits)).toThrow(/--max-side/);
  });

  it('refuse NaN and infinity unless allowed', () => {
    const broken = makeLatent('v1', 'model', [1, 4, 2, 2], Float32Array.from({ length: 16 }, (_, i) => (i === 5 ? Number.NaN : 0)));
    const error = refusal({ op: 'upscale', latent: broken, target: size(4, 4) });
    expect([error.code, error.message]).toEqual(['bad_tensor', expect.stringMatching(/non-finite value \(NaN\) at element 5.*--allow-nonfinite/)]);
    expect(steps(planJob({ op: 'upscale', latent: broken, target: size(4, 4) }, { ...limits, checkFinite: false }))).toEqual(['upscaler-v1-x2.0 2x2 -> 4x4']);
  });

  it('compute sizes as nn.Upsample does', () => {
    expect(scaledSize(size(45, 31), 1.5)).toEqual(size(67, 46));
    expect(scaledSize(size(77, 50), 0.5)).toEqual(size(38, 25));
  });
});

/**
 * What every accepted plan must be: each step at least one pixel a side, chained from the source
 * to the target, networks joining families correctly, and a number of steps bounded by the sizes.
 */
function expectWellFormed(job: Job, plan: Plan): void {
  // node:assert rather than expect: this runs for tens of thousands of plans.
  const where = `${job.op} ${job.latent.family} [${job.latent.shape.join(', ')}] -> ${describePlan(plan)}`;
  let current = { family: job.latent.family, size: size(job.latent.shape[2], job.latent.shape[3]) };
  assert.ok(plan.steps.length <= 2 + 2 * Math.ceil(Math.log2(limits.maxSide)), where);
  for (const step of plan.steps) {
    assert.deepEqual(step.in, current.size, where);
    assert.ok(step.out.height >= 1 && step.out.width >= 1, where);
    if (step.kind === 'network') {
      assert.equal(step.network.from, current.family, where);
      assert.deepEqual(step.out, scaledSize(step.in, step.network.factor), where);
      current = { family: step.network.to, size: step.out };
    } else {
      assert.equal(step.family, current.family, where);
      current = { family: step.family, size: step.out };
    }
  }
  const to = job.op === 'upscale' ? job.latent.family : job.to;
  assert.equal(current.family, to, where);
  assert.equal(plan.to, to, where);
  assert.deepEqual(current.size, plan.target, where);
  if (job.op !== 'interpose') assert.deepEqual(plan.target, job.target, where);
}

/** Either a well-formed plan or a refusal with a code a client can act on: never a hang, never a crash. */
function planOrRefuse(job: Job): void {
  let plan: Plan;
  try {
    plan = planJob(job, limits);
  } catch (error) {
    assert.ok(error instanceof BridgeError && ['bad_request', 'too_large', 'unsupported_direction'].includes(error.code), String(error));
    return;
  }
  expectWellFormed(job, plan);
}

describe('every job the wire accepts', () => {
  // Tiny, odd and huge sources; the largest ones are few because each accepted plan scans the values.
  const sources: [number, number][] = [[1, 1], [1, 2], [2, 1], [1, 3], [3, 3], [2, 5], [7, 3], [1, 64], [64, 1], [63, 65], [127, 2], [1, 1024], [1024, 3], [1000, 1000], [1024, 1024]];
  const targets = [1, 2, 3, 4, 9, 65, 128, 1023, 1024, 1025, 4096];

  it('plans to a bounded number of steps or is refused: all ops x families x tiny/odd/huge sizes', () => {
    for (const from of FAMILY_NAMES) {
      for (const [height, width] of sources) {
        const source = latent(from, height, width);
        for (const to of FAMILY_NAMES) planOrRefuse({ op: 'interpose', latent: source, to });
        const large = height * width > 4096;
        for (const th of large ? [1, 1024, 4096] : targets) {
          for (const tw of large ? [1, 1025] : [1, 2, 65, 1024, 1025]) {
            planOrRefuse({ op: 'upscale', latent: source, target: size(th, tw) });
            for (const to of FAMILY_NAMES) planOrRefuse({ op: 'hires', latent: source, to, target: size(th, tw) });
          }
        }
      }
    }
  });

  it('plans to a bounded number of steps or is refused: random sizes and scales (fast-check)', () => {
    const family = fc.constantFrom(...FAMILY_NAMES);
    const side = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 200 }));
    const targetSide = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 1100 }), fc.constant(1_000_000));
    fc.assert(
      fc.property(family, family, side, side, targetSide, targetSide, fc.double({ min: 0.001, max: 20, noNaN: true }), (from, to, h, w, th, tw, scale) => {
        const source = latent(from, h, w);
        planOrRefuse({ op: 'hires', latent: source, to, target: size(th, tw) });
        planOrRefuse({ op: 'interpose', latent: source, to });
        let target: Size;
        try {
          target = scaledTarget(size(h, w), scale, limits);
        } catch (error) {
          assert.ok(error instanceof BridgeError && ['bad_request', 'too_large'].includes(error.code), String(error));
          return;
        }
        planOrRefuse({ op: 'upscale', latent: source, target });
      }),
      { numRuns: 2000 },
    );
  });
});
