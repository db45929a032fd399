import { describe, expect, it } from 'vitest';
import { FAMILIES, FAMILY_NAMES, getFamily } from '../src/families.ts';
import { makeLatent, toModelSpace, toRaw } from '../src/latent.ts';
import { seededData } from './support/conformance.ts';

describe('latent families and spaces', () => {
  it('has consistent tables', () => {
    for (const name of FAMILY_NAMES) {
      const f = FAMILIES[name];
      expect(f.name).toBe(name);
      expect(f.rgbFactors.length).toBe(f.channels);
      expect(f.rgbBias.length).toBe(3);
    }
    expect(FAMILIES.v3.channels).toBe(16);
    expect(FAMILIES.ca.downscale).toBe(4);
  });

  it('resolves aliases and refuses unknown names', () => {
    expect(getFamily('SDXL').name).toBe('xl');
    expect(getFamily('flux').name).toBe('fx');
    expect(() => getFamily('sd4')).toThrow(/unknown latent family "sd4"/);
  });

  it('converts model space to raw and back for every family', () => {
    for (const name of FAMILY_NAMES) {
      const c = FAMILIES[name].channels;
      const model = makeLatent(name, 'model', [2, c, 3, 5], seededData(2 * c * 15, 7));
      const raw = toRaw(model);
      expect(raw.space).toBe('raw');
      const back = toModelSpace(raw);
      for (let i = 0; i < model.data.length; i++) expect(back.data[i]).toBeCloseTo(model.data[i], 5);
    }
  });

  it('applies scale and shift as the webui does', () => {
    const flux = toModelSpace(makeLatent('fx', 'raw', [1, 16, 1, 1], new Float32Array(16).fill(1)));
    expect(flux.data[0]).toBeCloseTo((1 - 0.1159) * 0.3611, 6);
    const v1 = toRaw(makeLatent('v1', 'model', [1, 4, 1, 1], new Float32Array(4).fill(0.18215)));
    expect(v1.data[0]).toBeCloseTo(1, 6);
    const cascade = toRaw(makeLatent('ca', 'model', [1, 4, 1, 1], new Float32Array(4).fill(1)));
    expect(cascade.data[0]).toBeCloseTo(0.43, 6);
  });

  it('checks the channel count of the family', () => {
    expect(() => makeLatent('v3', 'model', [1, 4, 8, 8], new Float32Array(256))).toThrow(/a v3 latent has 16 channels, but this one has 4/);
  });
});
