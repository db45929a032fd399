import { describe, expect, it } from 'vitest';
import { resizeBilinear } from '../src/resize.ts';
import { tensor4 } from '../src/tensor.ts';

const plane = (h: number, w: number, f: (y: number, x: number) => number) =>
  tensor4([1, 1, h, w], Float32Array.from({ length: h * w }, (_, i) => f(Math.floor(i / w), i % w)));

describe('bilinear resize', () => {
  it('returns the input unchanged at the same size', () => {
    const t = plane(3, 4, (y, x) => y * 4 + x);
    expect(resizeBilinear(t, 3, 4)).toBe(t);
  });

  it('matches torch interpolate(bilinear, align_corners=False) when enlarging', () => {
    // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4), mode='bilinear') == [0, .25, .75, 1]
    expect([...resizeBilinear(plane(1, 2, (_, x) => x), 1, 4).data]).toEqual([0, 0.25, 0.75, 1]);
  });

  it('keeps constants when shrinking', () => {
    const constant = resizeBilinear(plane(10, 10, () => 2.5), 7, 3);
    for (const v of constant.data) expect(v).toBeCloseTo(2.5, 6);
  });

  it('matches torch interpolate(bilinear, antialias=True) when shrinking', () => {
    // Values printed by torch 1.13 for arange(8) -> 4 and arange(12) -> 5.
    const round = (t: { data: Float32Array }) => [...t.data].map((v) => +v.toFixed(4));
    expect(round(resizeBilinear(plane(1, 8, (_, x) => x), 1, 4))).toEqual([0.7143, 2.5, 4.5, 6.2857]);
    expect(round(resizeBilinear(plane(1, 12, (_, x) => x), 1, 5))).toEqual([0.92, 3.1017, 5.5, 7.8983, 10.08]);
  });

  it('resizes every channel and batch item', () => {
    const t = tensor4([2, 3, 4, 4], Float32Array.from({ length: 96 }, (_, i) => Math.floor(i / 16)));
    const out = resizeBilinear(t, 5, 6);
    expect(out.shape).toEqual([2, 3, 5, 6]);
    for (let p = 0; p < 6; p++) for (const v of out.data.subarray(p * 30, (p + 1) * 30)) expect(v).toBeCloseTo(p, 6);
  });
});
