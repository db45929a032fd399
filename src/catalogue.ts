import { BridgeError } from './errors.ts';
import { FAMILY_NAMES, type FamilyName } from './families.ts';

/**
 * The networks the sidecar knows: what each one does to a latent. Where their weights come from
 * (hub repository, revision, file, sha256) is the model store's business (src/store/registry.ts).
 * Interposers and upscalers make latents and run in plans; TAESD decoders make preview pictures.
 */
export type NetworkKind = 'interposer' | 'upscaler' | 'taesd-decoder';

export interface NetworkEntry {
  /** Stable name used by the CLI and the protocol, e.g. `interposer-xl-to-v1`, `upscaler-v1-x1.5`. */
  readonly name: string;
  readonly kind: NetworkKind;
  /** Family of the latents it takes and of those it returns. */
  readonly from: FamilyName;
  readonly to: FamilyName;
  /**
   * Spatial factor the network applies. It cannot be read from the weights: the original code
   * takes it from the file name (upscaler 1.25/1.5/2.0; interposer 0.5 for Cascade sources). A
   * TAESD decoder always turns one latent pixel into 8x8 image pixels.
   */
  readonly factor: number;
}

/** A network whose output is a latent: what plans are made of. */
export type LatentNetwork = NetworkEntry & { readonly kind: 'interposer' | 'upscaler' };

/**
 * madebyollin's TAESD decoders, by the family whose latents they decode, as the webui (Forge for
 * Flux) and ComfyUI pick them; Stable Cascade has none. They take the latent the diffusion model
 * holds (model space), not raw VAE latents.
 */
export const TAESD_DECODERS: Readonly<Partial<Record<FamilyName, string>>> = { v1: 'taesd', xl: 'taesdxl', v3: 'taesd3', fx: 'taef1' };

/** Interposer v4.0 was trained for these sources and targets; nothing converts into fx or ca. */
export const INTERPOSER_SOURCES: readonly FamilyName[] = ['v1', 'xl', 'v3', 'fx', 'ca'];
export const INTERPOSER_TARGETS: readonly FamilyName[] = ['v1', 'xl', 'v3'];
export const UPSCALER_FAMILIES: readonly FamilyName[] = ['v1', 'xl'];
export const UPSCALER_FACTORS: readonly number[] = [1.25, 1.5, 2.0];

/** `2.0` and `1.25`, as city96's file names write the factors. */
export function factorLabel(factor: number): string {
  return Number.isInteger(factor) ? factor.toFixed(1) : String(factor);
}

function interposer(from: FamilyName, to: FamilyName): LatentNetwork {
  // Stable Cascade stage A latents are at 1/4 of the image size, the others at 1/8.
  return { name: `interposer-${from}-to-${to}`, kind: 'interposer', from, to, factor: from === 'ca' ? 0.5 : 1 };
}

function upscaler(family: FamilyName, factor: number): LatentNetwork {
  return { name: `upscaler-${family}-x${factorLabel(factor)}`, kind: 'upscaler', from: family, to: family, factor };
}

function taesdDecoder(family: FamilyName): NetworkEntry {
  return { name: `taesd-decoder-${family}`, kind: 'taesd-decoder', from: family, to: family, factor: 8 };
}

export const NETWORKS: readonly NetworkEntry[] = [
  ...INTERPOSER_SOURCES.flatMap((from) => INTERPOSER_TARGETS.filter((to) => to !== from).map((to) => interposer(from, to))),
  ...UPSCALER_FAMILIES.flatMap((family) => UPSCALER_FACTORS.map((factor) => upscaler(family, factor))),
  ...FAMILY_NAMES.filter((family) => TAESD_DECODERS[family] !== undefined).map(taesdDecoder),
];

/** The TAESD decoder for a family's latents, if there is one. */
export function previewDecoderFor(family: FamilyName): NetworkEntry | undefined {
  return NETWORKS.find((n) => n.kind === 'taesd-decoder' && n.from === family);
}

export function findNetwork(name: string): NetworkEntry | undefined {
  return NETWORKS.find((entry) => entry.name === name);
}

/** The entries for the names a user typed; an unknown name is an error that lists the known ones. */
export function networksNamed(names: readonly string[]): NetworkEntry[] {
  return names.map((name) => {
    const entry = findNetwork(name);
    if (entry === undefined) {
      throw new BridgeError('bad_request', `unknown model "${name}"; known models: ${NETWORKS.map((n) => n.name).join(', ')}`);
    }
    return entry;
  });
}

/** The interposer for a direction, or an `unsupported_direction` error that says which ones exist. */
function isLatentNetwork(entry: NetworkEntry): entry is LatentNetwork {
  return entry.kind === 'interposer' || entry.kind === 'upscaler';
}

export function interposerFor(from: FamilyName, to: FamilyName): LatentNetwork {
  const entry = NETWORKS.filter(isLatentNetwork).find((n) => n.kind === 'interposer' && n.from === from && n.to === to);
  if (entry === undefined) {
    const targets = INTERPOSER_TARGETS.filter((t) => t !== from);
    throw new BridgeError(
      'unsupported_direction',
      from === to
        ? `${from} to ${to} needs no conversion`
        : `no interposer converts ${from} into ${to}: city96's interposer v4.0 only converts into ${INTERPOSER_TARGETS.join(', ')}` +
            ` (from ${from}: ${targets.join(', ')})`,
    );
  }
  return entry;
}

/** The trained upscalers of a family, smallest factor first (empty when the family has none). */
export function upscalersFor(family: FamilyName): readonly LatentNetwork[] {
  return NETWORKS.filter(isLatentNetwork).filter((n) => n.kind === 'upscaler' && n.from === family).sort((a, b) => a.factor - b.factor);
}

export function hasUpscaler(family: FamilyName): boolean {
  return upscalersFor(family).length > 0;
}
