import { describe, expect, it } from 'vitest';
import { FAMILIES, FAMILY_NAMES, type FamilyName } from '../src/families.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { gridLayout, renderPreview } from '../src/preview.ts';
import { seededData } from './support/conformance.ts';

/** The anchor formula written out the slow way: rgb = x·F + b, ((rgb + 1) / 2) clamped to [0, 1], * 255, rounded. */
function referencePixel(latent: Latent, item: number, y: number, x: number): number[] {
  const [, c, h, w] = latent.shape;
  const family = FAMILIES[latent.family];
  return [0, 1, 2].map((j) => {
    let v = family.rgbBias[j];
    for (let k = 0; k < c; k++) v += latent.data[((item * c + k) * h + y) * w + x] * family.rgbFactors[k][j];
    return Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
  });
}

function pixel(image: { width: number; data: Uint8Array }, y: number, x: number): number[] {
  const o = (y * image.width + x) * 3;
  return [image.data[o], image.data[o + 1], image.data[o + 2]];
}

function latentOf(family: FamilyName, shape: [number, number, number, number], seed: number, amplitude = 2): Latent {
  return makeLatent(family, 'model', shape, seededData(shape.reduce((a, b) => a * b), seed, amplitude));
}

describe('renderPreview', () => {
  for (const family of FAMILY_NAMES) {
    it(`${family}: every pixel follows the latent->RGB approximation with bias`, () => {
      const latent = latentOf(family, [2, FAMILIES[family].channels, 7, 11], 5);
      for (const index of [0, 1]) {
        const image = renderPreview(latent, { index });
        expect([image.width, image.height, image.data.length]).toEqual([11, 7, 7 * 11 * 3]);
        for (let y = 0; y < 7; y++) {
          for (let x = 0; x < 11; x++) {
            const got = pixel(image, y, x);
            const want = referencePixel(latent, index, y, x);
            // float32 inputs summed in float64 here and there: a value may land on the other side of .5
            got.forEach((v, j) => expect(Math.abs(v - want[j])).toBeLessThanOrEqual(1));
          }
        }
      }
    });
  }

  it('clamps large values to 0 and 255 and draws NaN as black', () => {
    const latent = makeLatent('v1', 'model', [1, 4, 1, 3], new Float32Array([100, -100, NaN, 100, -100, NaN, 100, -100, NaN, 100, -100, NaN]));
    const image = renderPreview(latent);
    // Channel 0 and 1 push red up for positive values; the sum over the four v1 rows decides.
    const expected = [0, 1, 2].map((x) => referencePixel(latent, 0, 0, x));
    expect(pixel(image, 0, 0)).toEqual(expected[0]);
    expect(pixel(image, 0, 1)).toEqual(expected[1]);
    expect(pixel(image, 0, 2)).toEqual([0, 0, 0]);
    expect([...image.data.slice(0, 6)].every((v) => v === 0 || v === 255)).toBe(true);
  });

  it('a zero latent shows the bias alone (mid grey for v1, shifted for xl)', () => {
    const zeros = (family: FamilyName) => makeLatent(family, 'model', [1, FAMILIES[family].channels, 2, 2], new Float32Array(FAMILIES[family].channels * 4));
    expect(pixel(renderPreview(zeros('v1')), 1, 1)).toEqual([128, 128, 128]);
    const bias = FAMILIES.xl.rgbBias.map((b) => Math.round(((b + 1) / 2) * 255));
    expect(pixel(renderPreview(zeros('xl')), 0, 1)).toEqual(bias);
  });

  it('tiles a batch into a near-square grid, item i at column i % columns', () => {
    expect(gridLayout(1)).toEqual({ columns: 1, rows: 1 });
    expect(gridLayout(3)).toEqual({ columns: 2, rows: 2 });
    expect(gridLayout(4)).toEqual({ columns: 2, rows: 2 });
    expect(gridLayout(5)).toEqual({ columns: 3, rows: 2 });
    const latent = latentOf('xl', [3, 4, 5, 6], 9);
    const image = renderPreview(latent, { grid: true });
    expect([image.width, image.height]).toEqual([12, 10]);
    for (let item = 0; item < 3; item++) {
      const single = renderPreview(latent, { index: item });
      const left = (item % 2) * 6;
      const top = Math.floor(item / 2) * 5;
      for (let y = 0; y < 5; y++) for (let x = 0; x < 6; x++) expect(pixel(image, top + y, left + x)).toEqual(pixel(single, y, x));
    }
    // The fourth cell has no item and stays black.
    expect(pixel(image, 9, 11)).toEqual([0, 0, 0]);
  });
});
