import { describe, expect, it } from 'vitest';
import { FAMILIES, FAMILY_NAMES, type FamilyName } from '../src/families.ts';

/**
 * The published values, transcribed separately from src/families.ts and in their published form:
 * ComfyUI's comfy/latent_formats.py (commit 040a324, see ../shared/design/anchors-and-latent-formats.md
 * section 1), only the lines that matter here, parsed below. A typo on either side fails the test.
 */
const LATENT_FORMATS_PY = `
class SD15(LatentFormat):
    def __init__(self, scale_factor=0.18215):
        self.scale_factor = scale_factor
        self.latent_rgb_factors = [
                    #   R        G        B
                    [ 0.3512,  0.2297,  0.3227],
                    [ 0.3250,  0.4974,  0.2350],
                    [-0.2829,  0.1762,  0.2721],
                    [-0.2120, -0.2616, -0.7177]
                ]

class SDXL(LatentFormat):
    scale_factor = 0.13025
    def __init__(self):
        self.latent_rgb_factors = [
                    #   R        G        B
                    [ 0.3651,  0.4232,  0.4341],
                    [-0.2533, -0.0042,  0.1068],
                    [ 0.1076,  0.1111, -0.0362],
                    [-0.3165, -0.2492, -0.2188]
                ]
        self.latent_rgb_factors_bias = [ 0.1084, -0.0175, -0.0011]

class SD3(LatentFormat):
    latent_channels = 16
    def __init__(self):
        self.scale_factor = 1.5305
        self.shift_factor = 0.0609
        self.latent_rgb_factors = [
            [-0.0922, -0.0175,  0.0749],
            [ 0.0311,  0.0633,  0.0954],
            [ 0.1994,  0.0927,  0.0458],
            [ 0.0856,  0.0339,  0.0902],
            [ 0.0587,  0.0272, -0.0496],
            [-0.0006,  0.1104,  0.0309],
            [ 0.0978,  0.0306,  0.0427],
            [-0.0042,  0.1038,  0.1358],
            [-0.0194,  0.0020,  0.0669],
            [-0.0488,  0.0130, -0.0268],
            [ 0.0922,  0.0988,  0.0951],
            [-0.0278,  0.0524, -0.0542],
            [ 0.0332,  0.0456,  0.0895],
            [-0.0069, -0.0030, -0.0810],
            [-0.0596, -0.0465, -0.0293],
            [-0.1448, -0.1463, -0.1189]
        ]
        self.latent_rgb_factors_bias = [0.2394, 0.2135, 0.1925]

class Flux(SD3):
    latent_channels = 16
    def __init__(self):
        self.scale_factor = 0.3611
        self.shift_factor = 0.1159
        self.latent_rgb_factors =[
            [-0.0346,  0.0244,  0.0681],
            [ 0.0034,  0.0210,  0.0687],
            [ 0.0275, -0.0668, -0.0433],
            [-0.0174,  0.0160,  0.0617],
            [ 0.0859,  0.0721,  0.0329],
            [ 0.0004,  0.0383,  0.0115],
            [ 0.0405,  0.0861,  0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245,  0.0250,  0.1180],
            [ 0.1008,  0.0755, -0.0421],
            [-0.0515,  0.0201,  0.0011],
            [ 0.0428, -0.0012, -0.0036],
            [ 0.0817,  0.0765,  0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778]
        ]
        self.latent_rgb_factors_bias = [-0.0329, -0.0718, -0.0851]

class SC_B(LatentFormat):
    def __init__(self):
        self.scale_factor = 1.0 / 0.43
        self.latent_rgb_factors = [
                    [ 0.1121,  0.2006,  0.1023],
                    [-0.2093, -0.0222, -0.0195],
                    [-0.3087, -0.1535,  0.0366],
                    [ 0.0290, -0.1574, -0.4078]
                ]
`;

/** Which published class each family is. */
const CLASS_OF: Readonly<Record<FamilyName, string>> = { v1: 'SD15', xl: 'SDXL', v3: 'SD3', fx: 'Flux', ca: 'SC_B' };

interface Published {
  readonly scale: number;
  readonly shift: number;
  readonly factors: number[][];
  readonly bias: number[];
}

function published(className: string): Published {
  const start = LATENT_FORMATS_PY.indexOf(`class ${className}(`);
  const end = LATENT_FORMATS_PY.indexOf('\nclass ', start + 1);
  const body = LATENT_FORMATS_PY.slice(start, end < 0 ? undefined : end);
  const number = (pattern: RegExp): number | undefined => {
    const match = pattern.exec(body);
    if (match === null) return undefined;
    const [numerator, denominator] = match[1].split('/').map((part) => Number(part.trim()));
    return denominator === undefined ? numerator : numerator / denominator;
  };
  const rows = (text: string): number[][] => [...text.matchAll(/\[([^[\]]+)\]/g)].map((row) => row[1].split(',').map(Number));
  const factors = /latent_rgb_factors\s*=\s*\[([\s\S]*?)\]\s*\n\s*(?:self|\n|$)/.exec(body)?.[1] ?? '';
  const bias = /latent_rgb_factors_bias\s*=\s*\[([^\]]*)\]/.exec(body);
  return {
    scale: number(/scale_factor\s*=\s*([\d./ ]+)/) as number,
    shift: number(/shift_factor\s*=\s*([\d.]+)/) ?? 0,
    factors: rows(factors),
    bias: bias === null ? [0, 0, 0] : bias[1].split(',').map(Number),
  };
}

describe('latent families', () => {
  for (const name of FAMILY_NAMES) {
    it(`${name}: scale, shift, latent->RGB factors and bias are the published ones (${CLASS_OF[name]})`, () => {
      const family = FAMILIES[name];
      const source = published(CLASS_OF[name]);
      expect(source.factors.length).toBe(family.channels);
      expect(family.scale).toBeCloseTo(source.scale, 12);
      expect(family.shift).toBe(source.shift);
      expect(family.rgbFactors.map((row) => [...row])).toEqual(source.factors);
      expect([...family.rgbBias]).toEqual(source.bias);
    });
  }
});
