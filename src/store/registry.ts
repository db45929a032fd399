import { BridgeError } from '../errors.ts';
import type { FamilyName } from '../families.ts';

/** The networks the sidecar knows, with where the original weights live on the Hugging Face hub. */
export type ModelKind = 'interposer' | 'upscaler';

export interface ModelSpec {
  /** Stable name used by the CLI and the protocol, e.g. `interposer-xl-to-v1`, `upscaler-v1-x1.5`. */
  readonly name: string;
  readonly kind: ModelKind;
  readonly from: FamilyName;
  readonly to: FamilyName;
  /**
   * Spatial factor the network applies. It cannot be read from the weights: the original
   * code takes it from the file name (upscaler 1.25/1.5/2.0; interposer 0.5 for Cascade sources).
   */
  readonly factor: number;
  readonly repo: string;
  readonly revision: string;
  /** Path of the file inside the hub repository. */
  readonly path: string;
  /** Base name of the file, as other tools store it in a flat folder. */
  readonly fileName: string;
  /**
   * sha256 other projects pin for the file, when known. Only used to recognise the same bytes in
   * another snapshot of the Hugging Face cache (downloads are checked against what the hub reports).
   */
  readonly sha256?: string;
}

export const INTERPOSER_REPO = 'city96/SD-Latent-Interposer';
export const INTERPOSER_REVISION = 'main';
export const UPSCALER_REPO = 'city96/SD-Latent-Upscaler';
/** The revision other projects pin (efficiency-nodes, ersatzForge). */
export const UPSCALER_REVISION = '99c65021fa947dfe3d71ec4e24793fe7533a3322';
/** The sha256s efficiency-nodes pins for the upscaler files at that revision. */
const UPSCALER_SHA256: Readonly<Record<string, string>> = {
  'latent-upscaler-v2.1_SDv1-x1.25.safetensors': '13d41af7abb2b39b0c35742ac6d9e68137de933b188192bed9e00ff0f5dc6143',
  'latent-upscaler-v2.1_SDv1-x1.5.safetensors': '5681a6263c97a7b0b3c5051229d4438b270cff5ed95891a984e98cd193896a57',
  'latent-upscaler-v2.1_SDv1-x2.0.safetensors': '57ab5fe3429cafafe21aafe80c661ab2739ad837f58012a44e1f656670cd35f8',
  'latent-upscaler-v2.1_SDxl-x1.25.safetensors': '331db5b11494d4a3dd66f569d8c9531eca2302f4de4d03688665a62cc6a327de',
  'latent-upscaler-v2.1_SDxl-x1.5.safetensors': 'af84a4cc658069c46115bb28bd156a798289dd42f3dc72f1da6cf8bb0760aef2',
  'latent-upscaler-v2.1_SDxl-x2.0.safetensors': 'cedf7806b0b27f883ae3c0d0466d63594d431fa5468d7ef41e55a1bffe38fe1e',
};

/** Interposer v4.0 was trained for these sources and targets; nothing converts into fx or ca. */
export const INTERPOSER_SOURCES: readonly FamilyName[] = ['v1', 'xl', 'v3', 'fx', 'ca'];
export const INTERPOSER_TARGETS: readonly FamilyName[] = ['v1', 'xl', 'v3'];
export const UPSCALER_FAMILIES: readonly FamilyName[] = ['v1', 'xl'];
export const UPSCALER_FACTORS: readonly number[] = [1.25, 1.5, 2.0];

function interposer(from: FamilyName, to: FamilyName): ModelSpec {
  const fileName = `${from}-to-${to}_interposer-v4.0.safetensors`;
  return {
    name: `interposer-${from}-to-${to}`,
    kind: 'interposer',
    from,
    to,
    factor: from === 'ca' ? 0.5 : 1,
    repo: INTERPOSER_REPO,
    revision: INTERPOSER_REVISION,
    path: `v4.0/${fileName}`,
    fileName,
  };
}

function factorLabel(factor: number): string {
  return Number.isInteger(factor) ? factor.toFixed(1) : String(factor);
}

function upscaler(family: FamilyName, factor: number): ModelSpec {
  const fileName = `latent-upscaler-v2.1_SD${family}-x${factorLabel(factor)}.safetensors`;
  return {
    name: `upscaler-${family}-x${factorLabel(factor)}`,
    kind: 'upscaler',
    from: family,
    to: family,
    factor,
    repo: UPSCALER_REPO,
    revision: UPSCALER_REVISION,
    path: fileName,
    fileName,
    sha256: UPSCALER_SHA256[fileName],
  };
}

export const MODEL_SPECS: readonly ModelSpec[] = [
  ...INTERPOSER_SOURCES.flatMap((from) => INTERPOSER_TARGETS.filter((to) => to !== from).map((to) => interposer(from, to))),
  ...UPSCALER_FAMILIES.flatMap((family) => UPSCALER_FACTORS.map((factor) => upscaler(family, factor))),
];

export function findModelSpec(name: string): ModelSpec | undefined {
  return MODEL_SPECS.find((spec) => spec.name === name);
}

/** The interposer for a direction, or an `unsupported_direction` error that says which ones exist. */
export function interposerSpec(from: FamilyName, to: FamilyName): ModelSpec {
  const spec = MODEL_SPECS.find((s) => s.kind === 'interposer' && s.from === from && s.to === to);
  if (spec === undefined) {
    const targets = INTERPOSER_TARGETS.filter((t) => t !== from);
    throw new BridgeError(
      'unsupported_direction',
      from === to
        ? `${from} to ${to} needs no conversion`
        : `no interposer converts ${from} into ${to}: city96's interposer v4.0 only converts into ${INTERPOSER_TARGETS.join(', ')}` +
            ` (from ${from}: ${targets.join(', ')})`,
    );
  }
  return spec;
}

/** The trained upscaler factors for a family (empty when the family has no upscaler). */
export function upscalerSpecs(family: FamilyName): readonly ModelSpec[] {
  return MODEL_SPECS.filter((s) => s.kind === 'upscaler' && s.from === family);
}

export function hasUpscaler(family: FamilyName): boolean {
  return upscalerSpecs(family).length > 0;
}

/** The registry entries for the names a user typed; an unknown name is an error that lists the known ones. */
export function specsNamed(names: readonly string[]): ModelSpec[] {
  return names.map((name) => {
    const spec = findModelSpec(name);
    if (spec === undefined) {
      throw new BridgeError('bad_request', `unknown model "${name}"; known models: ${MODEL_SPECS.map((s) => s.name).join(', ')}`);
    }
    return spec;
  });
}
