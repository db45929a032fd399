import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BridgeError } from '../errors.ts';
import { type ProgressReporter, progressFor } from './download-progress.ts';
import { MODEL_SPECS, type ModelSpec } from './registry.ts';

/** The repository's own `models/` folder, wherever the package is installed or run from. */
export const PACKAGE_MODELS_DIR = fileURLToPath(new URL('../../models/', import.meta.url));

export const DEFAULT_HUB_URL = 'https://huggingface.co';

/** Where the store says what it does (a download starting, ending, failing, cancelled): one line per call. */
export type StoreLogger = (line: string) => void;

/**
 * The folders of a ComfyUI install that hold weight files latent-bridge can use: `models/vae_approx`
 * (TAESD decoders, matched by name prefix as ComfyUI does) and the `models/` folders of city96's
 * interposer and upscaler nodes.
 */
export function comfyUiFolders(comfyUiDir: string): string[] {
  return [
    path.join(comfyUiDir, 'models', 'vae_approx'),
    path.join(comfyUiDir, 'custom_nodes', 'SD-Latent-Interposer', 'models'),
    path.join(comfyUiDir, 'custom_nodes', 'SD-Latent-Upscaler', 'models'),
  ];
}

export interface ModelStoreOptions {
  /** Folders searched in order, each flat or with the original `v4.0/` subfolder. */
  readonly modelDirs: readonly string[];
  /** No network at all. Default: `HF_HUB_OFFLINE` set to 1/true/yes/on. */
  readonly offline?: boolean;
  /** Hub or mirror base URL. Default: `HF_ENDPOINT`, else https://huggingface.co. */
  readonly hubUrl?: string;
  /** Default: `HF_TOKEN`, else the token file `huggingface-cli login` writes. */
  readonly token?: string;
  /** Hugging Face hub cache. Default: the same folder Python's `huggingface_hub` uses. */
  readonly cacheDir?: string;
  /** Where the record of verified files is kept. Default: `$XDG_STATE_HOME/latent-bridge`. */
  readonly stateDir?: string;
  /** Model name -> weight file chosen by the user; checked before anything else. */
  readonly explicitPaths?: Readonly<Record<string, string>>;
  /** Default: bars on stderr when it is a terminal, plain lines otherwise. */
  readonly progress?: ProgressReporter;
  /** Default: silent. */
  readonly logger?: StoreLogger;
  /** A ComfyUI install whose model folders are searched after the models folders (see `comfyUiFolders`). */
  readonly comfyUiDir?: string;
  /** Tries per download before giving up; later tries resume where the last one stopped. Default 3. */
  readonly downloadAttempts?: number;
  /** Where each network's weights come from. Default: the registry (src/store/registry.ts). */
  readonly registry?: readonly ModelSpec[];
}

export interface ResolvedStoreOptions {
  readonly modelDirs: readonly string[];
  readonly offline: boolean;
  readonly hubUrl: string;
  readonly token: string | undefined;
  readonly cacheDir: string;
  readonly stateDir: string;
  readonly explicitPaths: Readonly<Record<string, string>>;
  readonly progress: ProgressReporter;
  readonly logger: StoreLogger;
  readonly comfyUiDir: string | undefined;
  readonly downloadAttempts: number;
  readonly registry: readonly ModelSpec[];
}

type Env = Readonly<Record<string, string | undefined>>;

function expandHome(value: string): string {
  return value === '~' || value.startsWith(`~${path.sep}`) || value.startsWith('~/')
    ? path.join(os.homedir(), value.slice(1))
    : value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Python's `huggingface_hub` reads booleans this way. */
export function envFlag(value: string | undefined): boolean {
  return ['1', 'on', 'yes', 'true'].includes((value ?? '').trim().toLowerCase());
}

function hfHome(env: Env): string {
  return expandHome(
    nonEmpty(env.HF_HOME) ?? path.join(nonEmpty(env.XDG_CACHE_HOME) ?? path.join(os.homedir(), '.cache'), 'huggingface'),
  );
}

/** `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`: Python's order. */
export function hubCacheDir(env: Env): string {
  const explicit = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return explicit !== undefined ? expandHome(explicit) : path.join(hfHome(env), 'hub');
}

function hubToken(env: Env): string | undefined {
  const fromEnv = nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
  if (fromEnv !== undefined) return fromEnv;
  const tokenFile = expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome(env), 'token'));
  try {
    return nonEmpty(readFileSync(tokenFile, 'utf8'));
  } catch {
    return undefined;
  }
}

function stateDir(env: Env): string {
  return path.join(expandHome(nonEmpty(env.XDG_STATE_HOME) ?? path.join(os.homedir(), '.local', 'state')), 'latent-bridge');
}

function checkedHubUrl(value: string, origin: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BridgeError('bad_request', `${origin} is not a URL: "${value}" (expected e.g. https://hf-mirror.com)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BridgeError('bad_request', `${origin} must be an http(s) URL, got "${value}"`);
  }
  return url.href.replace(/\/+$/, '');
}

/** A ComfyUI folder must hold `models/`: a typo would otherwise silently find nothing. */
function checkedComfyUiDir(dir: string): string {
  if (statSync(path.join(dir, 'models'), { throwIfNoEntry: false })?.isDirectory() !== true) {
    throw new BridgeError('bad_request', `the ComfyUI folder ${dir} has no models/ folder; give the folder that holds ComfyUI's main.py and models/`);
  }
  return dir;
}

/**
 * Fills what the caller left out from the environment, as Python's `huggingface_hub` would,
 * and checks everything a user could have typed.
 */
export function resolveStoreOptions(options: ModelStoreOptions, env: Env = process.env): ResolvedStoreOptions {
  const hubUrl = checkedHubUrl(
    options.hubUrl ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_HUB_URL,
    options.hubUrl !== undefined ? 'the hub URL' : 'HF_ENDPOINT',
  );
  const explicitPaths = options.explicitPaths ?? {};
  const registry = options.registry ?? MODEL_SPECS;
  for (const name of Object.keys(explicitPaths)) {
    if (!registry.some((spec) => spec.name === name)) {
      throw new BridgeError('bad_request', `a weight file was given for "${name}", which is not a known model; run \`latent-bridge models list\``);
    }
  }
  const downloadAttempts = options.downloadAttempts ?? 3;
  if (!Number.isInteger(downloadAttempts) || downloadAttempts < 1) {
    throw new BridgeError('bad_request', `downloadAttempts must be a positive integer, got ${downloadAttempts}`);
  }
  return {
    modelDirs: options.modelDirs.map((dir) => path.resolve(expandHome(dir))),
    comfyUiDir: options.comfyUiDir === undefined ? undefined : checkedComfyUiDir(path.resolve(expandHome(options.comfyUiDir))),
    offline: options.offline ?? envFlag(env.HF_HUB_OFFLINE),
    hubUrl,
    token: options.token ?? hubToken(env),
    cacheDir: path.resolve(options.cacheDir ?? hubCacheDir(env)),
    stateDir: path.resolve(options.stateDir ?? stateDir(env)),
    explicitPaths: Object.fromEntries(Object.entries(explicitPaths).map(([name, file]) => [name, path.resolve(expandHome(file))])),
    progress: options.progress ?? progressFor(process.stderr),
    logger: options.logger ?? (() => undefined),
    downloadAttempts,
    registry,
  };
}

export interface StoreFlags {
  /** `--models DIR` given on the command line; searched before the others. */
  readonly modelDirs?: readonly string[];
  /** `--offline`; when absent `HF_HUB_OFFLINE` decides. */
  readonly offline?: boolean;
  readonly explicitPaths?: Readonly<Record<string, string>>;
  /** `--comfyui DIR`; when absent `LATENT_BRIDGE_COMFYUI` decides. */
  readonly comfyUiDir?: string;
}

/**
 * The options every command (`serve`, `upscale`, `interpose`, `models`) builds its store from,
 * so they all look in the same places: `--models` folders, then the folders in
 * `LATENT_BRIDGE_MODELS` (path-list separated), then the package's `models/`, then the ComfyUI
 * install of `--comfyui` or `LATENT_BRIDGE_COMFYUI`.
 */
export function storeOptionsFromEnv(flags: StoreFlags = {}, env: Env = process.env): ResolvedStoreOptions {
  const userDirs = (nonEmpty(env.LATENT_BRIDGE_MODELS) ?? '').split(path.delimiter).filter((dir) => dir.trim() !== '');
  const modelDirs = [...new Set([...(flags.modelDirs ?? []), ...userDirs, PACKAGE_MODELS_DIR].map((dir) => path.resolve(expandHome(dir))))];
  return resolveStoreOptions(
    {
      modelDirs,
      ...(flags.offline === true ? { offline: true } : {}),
      ...(flags.explicitPaths !== undefined ? { explicitPaths: flags.explicitPaths } : {}),
      comfyUiDir: flags.comfyUiDir ?? nonEmpty(env.LATENT_BRIDGE_COMFYUI),
    },
    env,
  );
}
