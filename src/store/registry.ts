import { factorLabel, NETWORKS, networksNamed, TAESD_DECODERS, type NetworkEntry } from '../catalogue.ts';

/** Where a network's original weights live on the Hugging Face hub. */
export interface WeightSource {
  readonly repo: string;
  readonly revision: string;
  /** Path of the file inside the hub repository. */
  readonly path: string;
  /** Base name of the file, as other tools store it in a flat folder. */
  readonly fileName: string;
  /**
   * sha256 other projects pin for the file, when known. A download must match it (whatever the hub
   * or a mirror reports), and the same bytes are recognised in another snapshot of the Hugging Face
   * cache. Without a pin, the first verified download is trusted and later ones are held to it.
   */
  readonly sha256?: string;
  /**
   * Names other tools give the file: in each searched folder, when the file is not there under
   * `fileName`, the first name in sorted order that starts with one of these prefixes and ends in
   * `.safetensors` is taken, the way ComfyUI picks its `models/vae_approx/` files.
   */
  readonly localPrefixes?: readonly string[];
}

/** A network of the catalogue together with where its weights come from: what the store handles. */
export interface ModelSpec extends NetworkEntry, WeightSource {}

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

/**
 * madebyollin publishes each TAESD decoder as a plain safetensors of its nn.Sequential (F16) at the
 * root of its own repository. Only taesd's revision is pinned by others (with this file in it);
 * the others follow `main`. No sha256 is published for any of them: the first verified download
 * is trusted and later ones are held to it (docs/models.md).
 */
const TAESD_REVISIONS: Readonly<Record<string, string>> = { taesd: '614f76814bbe30edbe2e627ace1c2234c81a2c0e' };

/** The original file names: city96's interposer and upscaler loaders build them the same way. */
function weightSource(entry: NetworkEntry): WeightSource {
  if (entry.kind === 'taesd-decoder') {
    const model = TAESD_DECODERS[entry.from] as string;
    const fileName = `${model}_decoder.safetensors`;
    // Users of ComfyUI and of the webui keep them as `<model>_decoder.<ext>` (ComfyUI by prefix).
    return { repo: `madebyollin/${model}`, revision: TAESD_REVISIONS[model] ?? 'main', path: fileName, fileName, localPrefixes: [`${model}_decoder`] };
  }
  if (entry.kind === 'interposer') {
    const fileName = `${entry.from}-to-${entry.to}_interposer-v4.0.safetensors`;
    return { repo: INTERPOSER_REPO, revision: INTERPOSER_REVISION, path: `v4.0/${fileName}`, fileName };
  }
  const fileName = `latent-upscaler-v2.1_SD${entry.from}-x${factorLabel(entry.factor)}.safetensors`;
  return { repo: UPSCALER_REPO, revision: UPSCALER_REVISION, path: fileName, fileName, sha256: UPSCALER_SHA256[fileName] };
}

const SPECS = new Map(NETWORKS.map((entry) => [entry.name, { ...entry, ...weightSource(entry) }]));

/** Every network with where its weights come from, in catalogue order. */
export const MODEL_SPECS: readonly ModelSpec[] = [...SPECS.values()];

export function findModelSpec(name: string): ModelSpec | undefined {
  return SPECS.get(name);
}

/** The specs for the names a user typed; an unknown name is an error that lists the known ones. */
export function specsNamed(names: readonly string[]): ModelSpec[] {
  return networksNamed(names).map((entry) => SPECS.get(entry.name) as ModelSpec);
}
