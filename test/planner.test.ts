import { describe, expect, it } from 'vitest';
import { checkTargetSize, planHires, planUpscalers, scaledSize } from '../src/planner.ts';

const factors = (family: 'v1' | 'xl', from: [number, number], to: [number, number]) =>
  planUpscalers(family, { height: from[0], width: from[1] }, { height: to[0], width: to[1] }).map((s) => s.factor);

describe('upscale planning', () => {
  it('uses exactly the trained factor when the target is one', () => {
    expect(factors('v1', [64, 64], [128, 128])).toEqual([2]);
    expect(factors('v1', [64, 64], [96, 96])).toEqual([1.5]);
    expect(factors('xl', [64, 64], [80, 80])).toEqual([1.25]);
  });

  it('picks the smallest factor that reaches an odd target (1280x720 -> 1920x1080)', () => {
    expect(factors('v1', [90, 160], [135, 240])).toEqual([1.5]);
    // 1024x576 -> 1920x1080 needs 1.875: x2.0, then a small exact resize down.
    expect(factors('xl', [72, 128], [135, 240])).toEqual([2]);
    expect(factors('xl', [100, 100], [101, 100])).toEqual([1.25]);
  });

  it('chains passes above 2x', () => {
    expect(factors('v1', [32, 32], [128, 128])).toEqual([2, 2]);
    expect(factors('v1', [32, 32], [150, 150])).toEqual([2, 2, 1.25]);
    expect(factors('v1', [30, 30], [90, 90])).toEqual([2, 1.5]);
  });

  it('does nothing when the target is not larger', () => {
    expect(factors('v1', [64, 64], [64, 64])).toEqual([]);
    expect(factors('v1', [64, 64], [32, 60])).toEqual([]);
  });

  it('computes sizes as nn.Upsample does', () => {
    expect(scaledSize({ height: 45, width: 31 }, 1.5)).toEqual({ height: 67, width: 46 });
    expect(scaledSize({ height: 77, width: 50 }, 0.5)).toEqual({ height: 38, width: 25 });
  });

  it('validates targets', () => {
    expect(() => checkTargetSize({ height: 0, width: 4 })).toThrow(/positive integer/);
    expect(() => checkTargetSize({ height: 1.5, width: 4 })).toThrow(/positive integer/);
    expect(() => checkTargetSize({ height: 4, width: 100000 })).toThrow(/exceeds/);
  });
});

describe('hires planning', () => {
  const size = (h: number, w: number) => ({ height: h, width: w });
  const kinds = (p: ReturnType<typeof planHires>) => p.steps.map((s) => (s.kind === 'interpose' ? s.spec.name : `${s.kind} ${s.target.height}x${s.target.width}`));

  it('same family with an upscaler: one upscale', () => {
    expect(kinds(planHires('v1', 'v1', size(64, 64), size(96, 96)))).toEqual(['upscale 96x96']);
  });

  it('interposes at low resolution when the target family has an upscaler', () => {
    expect(kinds(planHires('xl', 'v1', size(128, 128), size(192, 192)))).toEqual(['interposer-xl-to-v1', 'upscale 192x192']);
    expect(kinds(planHires('v3', 'xl', size(64, 64), size(128, 128)))).toEqual(['interposer-v3-to-xl', 'upscale 128x128']);
  });

  it('upscales first when only the source family has an upscaler', () => {
    expect(kinds(planHires('v1', 'v3', size(64, 64), size(128, 128)))).toEqual(['upscale 128x128', 'interposer-v1-to-v3']);
  });

  it('resizes with a warning when neither family has an upscaler', () => {
    const plan = planHires('fx', 'v3', size(64, 64), size(96, 96));
    expect(kinds(plan)).toEqual(['interposer-fx-to-v3', 'resize 96x96']);
    expect(plan.warnings[0]).toMatch(/no neural upscaler exists for fx or v3/);
    const same = planHires('v3', 'v3', size(64, 64), size(96, 96));
    expect(kinds(same)).toEqual(['resize 96x96']);
  });

  it('only converts when the size stays', () => {
    const plan = planHires('xl', 'v1', size(64, 64), size(64, 64));
    expect(kinds(plan)).toEqual(['interposer-xl-to-v1']);
    expect(plan.warnings).toEqual([]);
    expect(kinds(planHires('v3', 'v3', size(64, 64), size(64, 64)))).toEqual([]);
  });

  it('accounts for the Cascade interposer halving the size', () => {
    expect(kinds(planHires('ca', 'v1', size(128, 128), size(96, 96)))).toEqual(['interposer-ca-to-v1', 'upscale 96x96']);
    expect(kinds(planHires('ca', 'v3', size(128, 128), size(64, 64)))).toEqual(['interposer-ca-to-v3']);
  });

  it('refuses directions no model exists for', () => {
    expect(() => planHires('v1', 'fx', size(8, 8), size(8, 8))).toThrow(/no interposer converts v1 into fx/);
    expect(() => planHires('xl', 'ca', size(8, 8), size(8, 8))).toThrow(/into v1, xl, v3/);
  });
});
