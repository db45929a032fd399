import { BridgeError } from './errors.ts';

/**
 * Latent families: one per VAE latent space. Names follow city96's interposer
 * (v1 = SD1.x/2.x, xl = SDXL, v3 = SD3, fx = Flux.1, ca = Stable Cascade stage A/B).
 */
export const FAMILY_NAMES = ['v1', 'xl', 'v3', 'fx', 'ca'] as const;
export type FamilyName = (typeof FAMILY_NAMES)[number];

export interface LatentFamily {
  readonly name: FamilyName;
  readonly label: string;
  readonly channels: number;
  /** Pixels per latent pixel along each axis. */
  readonly downscale: number;
  /** Model space = (raw - shift) * scale; the diffusion model and the webui hold model space. */
  readonly scale: number;
  readonly shift: number;
  /** Latent->RGB linear approximation on model-space latents: one [R, G, B] row per channel. */
  readonly rgbFactors: readonly (readonly [number, number, number])[];
  readonly rgbBias: readonly [number, number, number];
}

// Scale, shift and preview factors are ComfyUI's latent_formats.py (see shared/design/anchors-and-latent-formats.md §1).
export const FAMILIES: Readonly<Record<FamilyName, LatentFamily>> = {
  v1: {
    name: 'v1',
    label: 'Stable Diffusion 1.x / 2.x',
    channels: 4,
    downscale: 8,
    scale: 0.18215,
    shift: 0,
    rgbFactors: [
      [0.3512, 0.2297, 0.3227],
      [0.325, 0.4974, 0.235],
      [-0.2829, 0.1762, 0.2721],
      [-0.212, -0.2616, -0.7177],
    ],
    rgbBias: [0, 0, 0],
  },
  xl: {
    name: 'xl',
    label: 'Stable Diffusion XL',
    channels: 4,
    downscale: 8,
    scale: 0.13025,
    shift: 0,
    rgbFactors: [
      [0.3651, 0.4232, 0.4341],
      [-0.2533, -0.0042, 0.1068],
      [0.1076, 0.1111, -0.0362],
      [-0.3165, -0.2492, -0.2188],
    ],
    rgbBias: [0.1084, -0.0175, -0.0011],
  },
  v3: {
    name: 'v3',
    label: 'Stable Diffusion 3 / 3.5',
    channels: 16,
    downscale: 8,
    scale: 1.5305,
    shift: 0.0609,
    rgbFactors: [
      [-0.0922, -0.0175, 0.0749],
      [0.0311, 0.0633, 0.0954],
      [0.1994, 0.0927, 0.0458],
      [0.0856, 0.0339, 0.0902],
      [0.0587, 0.0272, -0.0496],
      [-0.0006, 0.1104, 0.0309],
      [0.0978, 0.0306, 0.0427],
      [-0.0042, 0.1038, 0.1358],
      [-0.0194, 0.002, 0.0669],
      [-0.0488, 0.013, -0.0268],
      [0.0922, 0.0988, 0.0951],
      [-0.0278, 0.0524, -0.0542],
      [0.0332, 0.0456, 0.0895],
      [-0.0069, -0.003, -0.081],
      [-0.0596, -0.0465, -0.0293],
      [-0.1448, -0.1463, -0.1189],
    ],
    rgbBias: [0.2394, 0.2135, 0.1925],
  },
  fx: {
    name: 'fx',
    label: 'Flux.1',
    channels: 16,
    downscale: 8,
    scale: 0.3611,
    shift: 0.1159,
    rgbFactors: [
      [-0.0346, 0.0244, 0.0681],
      [0.0034, 0.021, 0.0687],
      [0.0275, -0.0668, -0.0433],
      [-0.0174, 0.016, 0.0617],
      [0.0859, 0.0721, 0.0329],
      [0.0004, 0.0383, 0.0115],
      [0.0405, 0.0861, 0.0915],
      [-0.0236, -0.0185, -0.0259],
      [-0.0245, 0.025, 0.118],
      [0.1008, 0.0755, -0.0421],
      [-0.0515, 0.0201, 0.0011],
      [0.0428, -0.0012, -0.0036],
      [0.0817, 0.0765, 0.0749],
      [-0.1264, -0.0522, -0.1103],
      [-0.028, -0.0881, -0.0499],
      [-0.1262, -0.0982, -0.0778],
    ],
    rgbBias: [-0.0329, -0.0718, -0.0851],
  },
  ca: {
    name: 'ca',
    label: 'Stable Cascade stage A/B',
    channels: 4,
    downscale: 4,
    scale: 1 / 0.43,
    shift: 0,
    rgbFactors: [
      [0.1121, 0.2006, 0.1023],
      [-0.2093, -0.0222, -0.0195],
      [-0.3087, -0.1535, 0.0366],
      [0.029, -0.1574, -0.4078],
    ],
    rgbBias: [0, 0, 0],
  },
};

/** Names other tools use for the same latent spaces. */
const ALIASES: Readonly<Record<string, FamilyName>> = {
  sd1: 'v1',
  sd15: 'v1',
  sd2: 'v1',
  sdxl: 'xl',
  ssd: 'xl',
  sd3: 'v3',
  flux: 'fx',
  cascade: 'ca',
};

export function isFamilyName(name: unknown): name is FamilyName {
  return typeof name === 'string' && (FAMILY_NAMES as readonly string[]).includes(name);
}

/** Resolves a family name or alias; anything else is an `unknown_family` error. */
export function getFamily(name: string): LatentFamily {
  const key = name.trim().toLowerCase();
  // Own properties only: a client's "constructor" or "__proto__" is an unknown name, not Object's.
  const canonical = isFamilyName(key) ? key : Object.hasOwn(ALIASES, key) ? ALIASES[key] : undefined;
  if (canonical === undefined) {
    throw new BridgeError(
      'unknown_family',
      `unknown latent family "${name}"; known families: ${FAMILY_NAMES.join(', ')} (aliases: ${Object.keys(ALIASES).join(', ')})`,
    );
  }
  return FAMILIES[canonical];
}
