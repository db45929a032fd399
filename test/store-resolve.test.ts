import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { type ModelSpec, specsNamed, UPSCALER_REVISION } from '../src/store/registry.ts';
import { ModelStore, type ModelStoreOptions } from '../src/store/store.ts';
import { PACKAGE_MODELS_DIR, hubCacheDir, resolveStoreOptions, storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel, sha256Hex } from './support/fake-hub.ts';

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
    expect(await store({ offline: true }).resolve(upscaler)).toBe(snapshot);
  });

  it('recognises the same bytes cached under another commit by their sha256', async () => {
    const otherCommit = 'abcdefabcdefabcdefabcdefabcdefabcdefabcd';
    const snapshot = await pythonCacheFile(cache, upscaler, otherCommit, UPSCALER, 'main');
    expect(upscaler.sha256).toMatch(/^[0-9a-f]{64}$/);
    const pinned = { ...upscaler, sha256: sha256Hex(UPSCALER) };
    expect(await store({ offline: true, registry: [pinned] }).resolve(pinned)).toBe(snapshot);
    await expect(store({ offline: true, registry: [{ ...upscaler, sha256: 'f'.repeat(64) }] }).resolve(upscaler)).rejects.toThrow(/downloads are off/);
  });

  it('does not use a cached blob whose bytes no longer match its sha256 name', async () => {
    await pythonCacheFile(cache, interposer, PYTHON_COMMIT, V1_TO_V3, 'main');
    await writeFile(path.join(cache, 'models--city96--SD-Latent-Interposer', 'blobs', sha256Hex(V1_TO_V3)), Buffer.from('damaged'));
    const error = await store({ offline: true }).resolve(interposer).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).message).toContain('does not match its sha256');
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
