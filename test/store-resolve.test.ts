import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { MODEL_SPECS, type ModelSpec, specsNamed, UPSCALER_REVISION } from '../src/store/registry.ts';
import { ModelStore, type ModelStatus, type ModelStoreOptions } from '../src/store/store.ts';
import { PACKAGE_MODELS_DIR, hubCacheDir, resolveStoreOptions, storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel, pinnedTo, sha256Hex } from './support/fake-hub.ts';

const V1_TO_V3 = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-v1-to-v3-small.weights.safetensors'));
const UPSCALER = readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.25-small.weights.safetensors'));
const PYTHON_COMMIT = '1234567890abcdef1234567890abcdef12345678';

/** Lays a file into `cache` exactly as Python's hf_hub_download(repo, subfolder, filename) does. */
async function pythonCacheFile(cache: string, model: ModelSpec, commit: string, content: Buffer, ref?: string): Promise<string> {
  const repoDir = path.join(cache, `models--${model.repo.replace('/', '--')}`);
  const sha = sha256Hex(content);
  await mkdir(path.join(repoDir, 'blobs'), { recursive: true });
  await writeFile(path.join(repoDir, 'blobs', sha), content);
  const snapshot = path.join(repoDir, 'snapshots', commit, ...model.path.split('/'));
  await mkdir(path.dirname(snapshot), { recursive: true });
  await symlink(path.relative(path.dirname(snapshot), path.join(repoDir, 'blobs', sha)), snapshot);
  if (ref !== undefined) {
    await mkdir(path.join(repoDir, 'refs'), { recursive: true });
    await writeFile(path.join(repoDir, 'refs', ref), commit);
  }
  return snapshot;
}

describe('model store lookup order', () => {
  let work: string;
  let models: string;
  let cache: string;
  const [interposer, upscaler] = specsNamed(['interposer-v1-to-v3', 'upscaler-v1-x1.25']);

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'store-resolve-'));
    models = path.join(work, 'models');
    cache = path.join(work, 'hub');
    await mkdir(models);
  });

  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function store(options: Partial<ModelStoreOptions> = {}): ModelStore {
    return new ModelStore({
      modelDirs: [models],
      // fetch refuses port 1 outright: any network use in these tests fails loudly.
      hubUrl: 'http://127.0.0.1:1',
      cacheDir: cache,
      stateDir: path.join(work, 'state'),
      offline: false,
      progress: silentProgress,
      ...options,
    });
  }

  it('reuses a file Python huggingface_hub downloaded for main, without network', async () => {
    const snapshot = await pythonCacheFile(cache, interposer, PYTHON_COMMIT, V1_TO_V3, 'main');
    expect(await store().resolve(interposer)).toBe(snapshot);
    const [status] = (await store().list()).filter((s) => s.name === interposer.name);
    expect(status).toMatchObject({ present: true, source: 'hf-cache', path: snapshot, size: V1_TO_V3.length, verified: true });
  });

  it('reuses a file cached for the pinned upscaler commit (no ref needed)', async () => {
    const snapshot = await pythonCacheFile(cache, upscaler, UPSCALER_REVISION, UPSCALER);
    const pinned = pinnedTo(upscaler, UPSCALER);
    expect(await store({ offline: true, registry: [pinned] }).resolve(pinned)).toBe(snapshot);
  });

  it('recognises the same bytes cached under another commit by their sha256', async () => {
    const otherCommit = 'abcdefabcdefabcdefabcdefabcdefabcdefabcd';
    const snapshot = await pythonCacheFile(cache, upscaler, otherCommit, UPSCALER, 'main');
    expect(upscaler.sha256).toMatch(/^[0-9a-f]{64}$/);
    const pinned = pinnedTo(upscaler, UPSCALER);
    expect(await store({ offline: true, registry: [pinned] }).resolve(pinned)).toBe(snapshot);
    await expect(store({ offline: true, registry: [{ ...upscaler, sha256: 'f'.repeat(64) }] }).resolve(upscaler)).rejects.toThrow(/downloads are off/);
  });

  it('does not use a cached blob whose bytes no longer match its sha256 name, and says where it is', async () => {
    const snapshot = await pythonCacheFile(cache, interposer, PYTHON_COMMIT, V1_TO_V3, 'main');
    await writeFile(path.join(cache, 'models--city96--SD-Latent-Interposer', 'blobs', sha256Hex(V1_TO_V3)), Buffer.from('damaged'));
    const error = await store({ offline: true }).resolve(interposer).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    const message = (error as BridgeError).message;
    expect(message).toContain(`the cached copy at ${snapshot} was rejected`);
    expect(message).toContain(`its sha256 is ${sha256Hex(Buffer.from('damaged'))}, not the sha256 its cache blob is named by (${sha256Hex(V1_TO_V3)})`);
    expect(message).toContain('downloads are off');
  });

  it('prefers the models folder over the cache, flat or under v4.0/', async () => {
    await pythonCacheFile(cache, interposer, PYTHON_COMMIT, V1_TO_V3, 'main');
    const nested = path.join(models, 'v4.0', interposer.fileName);
    await mkdir(path.dirname(nested), { recursive: true });
    await copyFile(path.join(CONFORMANCE_DIR, 'interposer-v1-to-v3-small.weights.safetensors'), nested);
    expect(await store().resolve(interposer)).toBe(nested);

    const flat = path.join(models, interposer.fileName);
    await copyFile(nested, flat);
    expect(await store().resolve(interposer)).toBe(flat);
    const [status] = (await store().list()).filter((s) => s.name === interposer.name);
    expect(status).toMatchObject({ present: true, source: 'models', path: flat });
  });

  it('searches the models folders in order', async () => {
    const second = path.join(work, 'more-models');
    await mkdir(second);
    await writeFile(path.join(second, upscaler.fileName), UPSCALER);
    expect(await store({ modelDirs: [models, second] }).resolve(upscaler)).toBe(path.join(second, upscaler.fileName));
  });

  it('takes a path given for the model before anything else, and names it when it is missing', async () => {
    await writeFile(path.join(models, upscaler.fileName), UPSCALER);
    const chosen = path.join(work, 'mine.safetensors');
    await writeFile(chosen, UPSCALER);
    expect(await store({ explicitPaths: { [upscaler.name]: chosen } }).resolve(upscaler)).toBe(chosen);

    const missing = path.join(work, 'nope.safetensors');
    const error = await store({ explicitPaths: { [upscaler.name]: missing } }).resolve(upscaler).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'model_unavailable' });
    expect((error as Error).message).toContain(missing);
  });

  it('offline and missing: says which command or file path fixes it', async () => {
    const error = await store({ offline: true }).resolve(upscaler).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    expect(error).toMatchObject({ code: 'model_unavailable' });
    const message = (error as Error).message;
    expect(message).toContain('HF_HUB_OFFLINE=1');
    expect(message).toContain(`latent-bridge models pull ${upscaler.name}`);
    expect(message).toContain(path.join(models, upscaler.fileName));
  });

  it('offline makes no network request even for a branch revision', async () => {
    const hub = await FakeHub.start();
    try {
      hostModel(hub, interposer, V1_TO_V3);
      await expect(store({ offline: true, hubUrl: hub.url }).resolve(interposer)).rejects.toThrow(/downloads are off/);
      expect(hub.requests).toEqual([]);
    } finally {
      await hub.close();
    }
  });

  it('rejects a damaged cached copy online, says where it is, and downloads it again', async () => {
    const snapshot = await pythonCacheFile(cache, interposer, PYTHON_COMMIT, V1_TO_V3, 'main');
    await writeFile(path.join(cache, 'models--city96--SD-Latent-Interposer', 'blobs', sha256Hex(V1_TO_V3)), Buffer.from('damaged'));
    const hub = await FakeHub.start();
    try {
      hostModel(hub, interposer, V1_TO_V3, PYTHON_COMMIT);
      const lines: string[] = [];
      const file = await store({ hubUrl: hub.url, logger: (line) => lines.push(line) }).resolve(interposer);
      expect(sha256Hex(readFileSync(file))).toBe(sha256Hex(V1_TO_V3));
      expect(lines[0]).toBe(
        `${interposer.name}: the cached copy at ${snapshot} was rejected: its sha256 is ${sha256Hex(Buffer.from('damaged'))}, ` +
          `not the sha256 its cache blob is named by (${sha256Hex(V1_TO_V3)}); downloading it again`,
      );
    } finally {
      await hub.close();
    }
  });

  it('writes a cache that the Python lookup (refs/main -> snapshots/<commit>/<path>) finds', async () => {
    const hub = await FakeHub.start();
    try {
      const sha = hostModel(hub, interposer, V1_TO_V3, PYTHON_COMMIT);
      await store({ hubUrl: hub.url }).resolve(interposer);
      const repoDir = path.join(cache, 'models--city96--SD-Latent-Interposer');
      const commit = readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8');
      expect(commit).toBe(PYTHON_COMMIT);
      expect(sha256Hex(readFileSync(path.join(repoDir, 'snapshots', commit, 'v4.0', interposer.fileName)))).toBe(sha);
    } finally {
      await hub.close();
    }
  });
});

describe('files users already have under the names other tools use', () => {
  let work: string;
  let models: string;
  let comfy: string;
  let vaeApprox: string;
  const [base] = specsNamed(['interposer-v1-to-v3']);
  // Shaped like the TAESD decoder entries: ComfyUI finds taesd_decoder* in models/vae_approx/.
  const decoder: ModelSpec = {
    ...base,
    name: 'taesd-decoder-v1',
    repo: 'madebyollin/taesd',
    revision: 'main',
    path: 'taesd_decoder.safetensors',
    fileName: 'taesd_decoder.safetensors',
    localPrefixes: ['taesd_decoder'],
  };

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'store-local-'));
    models = path.join(work, 'models');
    comfy = path.join(work, 'ComfyUI');
    vaeApprox = path.join(comfy, 'models', 'vae_approx');
    await mkdir(models);
    await mkdir(vaeApprox, { recursive: true });
  });

  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function store(options: Partial<ModelStoreOptions> = {}): ModelStore {
    return new ModelStore({
      modelDirs: [models],
      comfyUiDir: comfy,
      hubUrl: 'http://127.0.0.1:1',
      cacheDir: path.join(work, 'hub'),
      stateDir: path.join(work, 'state'),
      offline: true,
      progress: silentProgress,
      registry: [decoder],
      ...options,
    });
  }

  it('takes the first .safetensors file in sorted order whose name starts with the prefix, as ComfyUI does', async () => {
    await mkdir(path.join(vaeApprox, 'taesd_decoder.0.safetensors'));
    // Written out of order: the folder's own order must not decide.
    for (const name of ['taesd_decoder.c.safetensors', 'taesd_decoder.b.safetensors', 'taesd_decoder_fp16.safetensors', 'taesd_decoder.a.pth', 'taesdxl_decoder.safetensors']) {
      await writeFile(path.join(vaeApprox, name), UPSCALER);
    }
    const chosen = path.join(vaeApprox, 'taesd_decoder.b.safetensors');
    expect(await store().resolve(decoder)).toBe(chosen);
    expect(await store().list()).toEqual([expect.objectContaining({ name: decoder.name, present: true, source: 'models', path: chosen, size: UPSCALER.length })]);

    // The file under the registry's own name comes first in its folder.
    await writeFile(path.join(vaeApprox, decoder.fileName), UPSCALER);
    expect(await store().resolve(decoder)).toBe(path.join(vaeApprox, decoder.fileName));
  });

  it('searches the models folders, by name then by prefix, before the ComfyUI install', async () => {
    await writeFile(path.join(vaeApprox, decoder.fileName), UPSCALER);
    const mine = path.join(models, 'taesd_decoder_mine.safetensors');
    await writeFile(mine, UPSCALER);
    expect(await store().resolve(decoder)).toBe(mine);
    // Without the install, the ComfyUI folder is not searched.
    await rm(mine);
    await expect(store({ comfyUiDir: undefined }).resolve(decoder)).rejects.toThrow(/downloads are off/);
  });

  it('finds the TAESD decoders of the real registry in a ComfyUI install, each under its own prefix', async () => {
    for (const name of ['taesdxl_decoder_v1.3.safetensors', 'taef1_decoder.safetensors', 'taesd3_decoder.pth']) await writeFile(path.join(vaeApprox, name), UPSCALER);
    const registryStore = store({ registry: MODEL_SPECS });
    const [xl, fx, v3] = specsNamed(['taesd-decoder-xl', 'taesd-decoder-fx', 'taesd-decoder-v3']);
    expect(await registryStore.resolve(xl)).toBe(path.join(vaeApprox, 'taesdxl_decoder_v1.3.safetensors'));
    expect(await registryStore.resolve(fx)).toBe(path.join(vaeApprox, 'taef1_decoder.safetensors'));
    // A pickle is no weight file for the sidecar: taesd3 is still missing (the webui extension converts its own).
    await expect(registryStore.resolve(v3)).rejects.toThrow(/taesd-decoder-v3 is not on disk/);
  });

  it("finds city96's interposer and upscaler node folders in the ComfyUI install", async () => {
    const nodeModels = path.join(comfy, 'custom_nodes', 'SD-Latent-Interposer', 'models', 'v4.0');
    await mkdir(nodeModels, { recursive: true });
    await writeFile(path.join(nodeModels, base.fileName), V1_TO_V3);
    expect(await store({ registry: [base] }).resolve(base)).toBe(path.join(nodeModels, base.fileName));
  });

  it('reads the install from LATENT_BRIDGE_COMFYUI, the flag first, and refuses a folder without models/', () => {
    expect(storeOptionsFromEnv({}, { LATENT_BRIDGE_COMFYUI: comfy }).comfyUiDir).toBe(comfy);
    expect(storeOptionsFromEnv({ comfyUiDir: comfy }, { LATENT_BRIDGE_COMFYUI: work }).comfyUiDir).toBe(comfy);
    expect(storeOptionsFromEnv({}, {}).comfyUiDir).toBeUndefined();
    expect(() => storeOptionsFromEnv({}, { LATENT_BRIDGE_COMFYUI: models })).toThrow(`the ComfyUI folder ${models} has no models/ folder`);
  });
});

describe('listing models', () => {
  let work: string;
  let models: string;
  const [realInterposer, realUpscaler] = specsNamed(['interposer-v1-to-v3', 'upscaler-v1-x1.25']);
  // Both pinned, so that verifying them offline records them.
  const upscaler = pinnedTo(realUpscaler, UPSCALER);
  const interposer = pinnedTo(realInterposer, V1_TO_V3);

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'store-list-'));
    models = path.join(work, 'models');
    await mkdir(models);
  });

  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function store(): ModelStore {
    return new ModelStore({
      modelDirs: [models],
      hubUrl: 'http://127.0.0.1:1',
      cacheDir: path.join(work, 'hub'),
      stateDir: path.join(work, 'state'),
      offline: true,
      progress: silentProgress,
      registry: [interposer, upscaler],
    });
  }

  const statusOf = async (listing: Promise<ModelStatus[]>, name: string) => (await listing).find((s) => s.name === name);

  it('follows files dropped in, replaced and deleted, and what another store records, between calls on one store', async () => {
    const models1 = store();
    expect(await statusOf(models1.list(), upscaler.name)).toMatchObject({ present: false });
    const file = path.join(models, upscaler.fileName);
    await writeFile(file, UPSCALER);
    await writeFile(path.join(models, interposer.fileName), V1_TO_V3);
    expect(await statusOf(models1.list(), upscaler.name)).toMatchObject({ present: true, verified: false, path: file });

    // Another store (another process, say) verifies one file, then the other: each record it writes shows.
    expect((await store().verify([upscaler]))[0].outcome).toBe('verified');
    expect(await statusOf(models1.list(), upscaler.name)).toMatchObject({ present: true, verified: true });
    expect(await statusOf(models1.list(), interposer.name)).toMatchObject({ present: true, verified: false });
    expect((await store().verify([interposer]))[0].outcome).toBe('verified');
    expect(await statusOf(models1.list(), interposer.name)).toMatchObject({ present: true, verified: true });

    await writeFile(file, V1_TO_V3);
    expect(await statusOf(models1.list(), upscaler.name)).toMatchObject({ present: true, verified: false, size: V1_TO_V3.length });
    await rm(file);
    expect(await statusOf(models1.list(), upscaler.name)).toMatchObject({ present: false });
  });

  it('answers a burst of concurrent calls with at most two listings, each one the same for every call it serves', async () => {
    await writeFile(path.join(models, interposer.fileName), V1_TO_V3);
    const models1 = store();
    const listings = await Promise.all(Array.from({ length: 50 }, () => models1.list()));
    expect(new Set(listings).size).toBeLessThanOrEqual(2);
    for (const listing of listings) expect(listing).toEqual(listings[0]);
    expect(await statusOf(Promise.resolve(listings[0]), interposer.name)).toMatchObject({ present: true });
  });
});

describe('store options from the environment', () => {
  it('follows Python huggingface_hub for the cache folder', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' })).toBe('/a');
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c' })).toBe('/b');
    expect(hubCacheDir({ HF_HOME: '/c', XDG_CACHE_HOME: '/x' })).toBe(path.join('/c', 'hub'));
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(path.join('/x', 'huggingface', 'hub'));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });

  it('reads HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN and orders the models folders', () => {
    const options = storeOptionsFromEnv(
      { modelDirs: ['/flag'] },
      { HF_HUB_OFFLINE: 'YES', HF_ENDPOINT: 'https://hf-mirror.com/', HF_TOKEN: 'hf_abc', LATENT_BRIDGE_MODELS: `/one${path.delimiter}/two` },
    );
    expect(options.offline).toBe(true);
    expect(options.hubUrl).toBe('https://hf-mirror.com');
    expect(options.token).toBe('hf_abc');
    expect(options.modelDirs).toEqual(['/flag', '/one', '/two', path.resolve(PACKAGE_MODELS_DIR)]);
    expect(storeOptionsFromEnv({ offline: true }, {}).offline).toBe(true);
    expect(storeOptionsFromEnv({}, { HF_HUB_OFFLINE: '0' }).offline).toBe(false);
  });

  it('reads the token file huggingface-cli login writes', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'hf-home-'));
    try {
      await writeFile(path.join(home, 'token'), 'hf_from_file\n');
      expect(storeOptionsFromEnv({}, { HF_HOME: home }).token).toBe('hf_from_file');
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('the package models folder is the repository models/ whatever the cwd', () => {
    expect(PACKAGE_MODELS_DIR).toBe(fileURLToPath(new URL('../models/', import.meta.url)));
  });

  it('rejects a malformed HF_ENDPOINT and unknown model names', () => {
    expect(() => resolveStoreOptions({ modelDirs: [] }, { HF_ENDPOINT: 'hf-mirror.com' })).toThrow(/HF_ENDPOINT is not a URL/);
    expect(() => resolveStoreOptions({ modelDirs: [], explicitPaths: { 'upscaler-v1-x3.0': '/x' } }, {})).toThrow(/not a known model/);
  });
});
