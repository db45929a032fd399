import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { specsNamed, UPSCALER_REVISION } from '../src/store/registry.ts';
import { ModelStore, type ModelStoreOptions } from '../src/store/store.ts';
import { storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel, sha256Hex } from './support/fake-hub.ts';

const XL_TO_V1 = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-xl-to-v1.weights.safetensors'));
const UPSCALER = readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.25-small.weights.safetensors'));
const MAIN_COMMIT = 'c0ffee0000000000000000000000000000000001';

async function rejection(promise: Promise<unknown>): Promise<BridgeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BridgeError);
  return error as BridgeError;
}

describe('model store downloads from a hub', () => {
  let hub: FakeHub;
  let work: string;
  let cacheDir: string;
  const [interposer, upscaler] = specsNamed(['interposer-xl-to-v1', 'upscaler-v1-x1.25']);

  beforeEach(async () => {
    hub = await FakeHub.start();
    work = await mkdtemp(path.join(os.tmpdir(), 'store-download-'));
    cacheDir = path.join(work, 'hub');
  });

  afterEach(async () => {
    await hub.close();
    await rm(work, { recursive: true, force: true });
  });

  function store(options: Partial<ModelStoreOptions> = {}): ModelStore {
    return new ModelStore({
      modelDirs: [path.join(work, 'models')],
      hubUrl: hub.url,
      cacheDir,
      stateDir: path.join(work, 'state'),
      offline: false,
      progress: silentProgress,
      ...options,
    });
  }

  it('downloads into an empty cache in the layout Python huggingface_hub reads', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const file = await store().resolve(interposer);

    const repoDir = path.join(cacheDir, 'models--city96--SD-Latent-Interposer');
    expect(file).toBe(path.join(repoDir, 'snapshots', MAIN_COMMIT, 'v4.0', interposer.fileName));
    expect(await readFile(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(MAIN_COMMIT);
    expect(await readlink(file)).toBe(`../../../blobs/${sha}`);
    expect(await readdir(path.join(repoDir, 'blobs'))).toEqual([sha]);
    expect(sha256Hex(await readFile(file))).toBe(sha);
    // One metadata round (commit of main, paths-info) and one transfer: paths-info already gave the size.
    expect(hub.count('/api/models/city96/SD-Latent-Interposer/revision/main')).toBe(1);
    expect(hub.count('/api/models/city96/SD-Latent-Interposer/paths-info/')).toBe(1);
    expect(hub.count('/city96/SD-Latent-Interposer/resolve/')).toBe(1);
    expect(hub.count('/cdn/')).toBe(1);
  });

  it('downloads from a bare mirror that serves only paths-info and resolve', async () => {
    hub.bare = true;
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const file = await store().resolve(interposer);
    expect(sha256Hex(await readFile(file))).toBe(sha);
    // Without the revision endpoint, the snapshot is named after the X-Repo-Commit of resolve, as Python names it.
    const repoDir = path.join(cacheDir, 'models--city96--SD-Latent-Interposer');
    expect(await readFile(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(MAIN_COMMIT);
    expect(file).toBe(path.join(repoDir, 'snapshots', MAIN_COMMIT, 'v4.0', interposer.fileName));
    // A second store finds it offline through refs/main, as Python would.
    expect(await store({ offline: true }).resolve(interposer)).toBe(file);
  });

  it('asks nothing about a pinned commit and writes no ref for it', async () => {
    hostModel(hub, upscaler, UPSCALER);
    const file = await store().resolve(upscaler);
    expect(file).toContain(path.join('snapshots', UPSCALER_REVISION, upscaler.fileName));
    expect(hub.count('/api/models/city96/SD-Latent-Upscaler/revision/')).toBe(0);
    await expect(readdir(path.join(cacheDir, 'models--city96--SD-Latent-Upscaler', 'refs'))).rejects.toThrow();
  });

  it('uses the cached file afterwards without any network', async () => {
    hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const first = await store().resolve(interposer);
    await hub.close();
    expect(await store().resolve(interposer)).toBe(first);
    hub = await FakeHub.start();
  });

  it('shares one download between concurrent requests for the same model', async () => {
    hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const models = store();
    const paths = await Promise.all([models.resolve(interposer), models.resolve(interposer), models.resolve(interposer)]);
    expect(new Set(paths).size).toBe(1);
    expect(hub.count('/api/models/city96/SD-Latent-Interposer/paths-info/')).toBe(1);
    expect(hub.requests.filter((r) => r.path.startsWith('/cdn/') && r.range === undefined)).toHaveLength(1);
  });

  it('rejects a file whose sha256 differs from the hub LFS oid and leaves nothing to trust', async () => {
    hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    hub.tamper(interposer.repo, interposer.path);
    const error = await rejection(store().resolve(interposer));
    expect(error.code).toBe('model_unavailable');
    expect(error.message).toMatch(/sha256 .* reports .*discarded/);
    const repoDir = path.join(cacheDir, 'models--city96--SD-Latent-Interposer');
    expect(await readdir(path.join(repoDir, 'blobs'))).toEqual([]);
    await expect(stat(path.join(repoDir, 'snapshots'))).rejects.toThrow();
    await expect(stat(path.join(repoDir, 'refs'))).rejects.toThrow();
  });

  it('keeps a cut transfer as .incomplete only, then resumes it with a range request', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const cutAt = 1_000_000;
    hub.cutTransfers(cutAt);
    const error = await rejection(store({ downloadAttempts: 1 }).resolve(interposer));
    expect(error.code).toBe('model_unavailable');
    expect(error.message).toMatch(/connection .* broke|interrupted/);
    expect(error.message).toContain('resumes');

    const blobs = path.join(cacheDir, 'models--city96--SD-Latent-Interposer', 'blobs');
    expect(await readdir(blobs)).toEqual([`${sha}.incomplete`]);
    const partial = (await stat(path.join(blobs, `${sha}.incomplete`))).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThanOrEqual(cutAt);

    const file = await store().resolve(interposer);
    expect(sha256Hex(await readFile(file))).toBe(sha);
    expect(hub.requests.at(-1)?.range).toBe(`bytes=${partial}-`);
    expect(await readdir(blobs)).toEqual([sha]);
  });

  it('retries a dropped connection within one request, resuming where it stopped', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    hub.cutTransfers(500_000, 2);
    const file = await store().resolve(interposer);
    expect(sha256Hex(await readFile(file))).toBe(sha);
    expect(hub.requests.filter((r) => r.path.startsWith('/cdn/') && r.range !== undefined && r.range !== 'bytes=0-0').length).toBe(2);
  });

  it('restarts cleanly when the leftover partial file does not hash right', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    hub.cutTransfers(700_000);
    await rejection(store({ downloadAttempts: 1 }).resolve(interposer));
    const incomplete = path.join(cacheDir, 'models--city96--SD-Latent-Interposer', 'blobs', `${sha}.incomplete`);
    await writeFile(incomplete, Buffer.alloc((await stat(incomplete)).size, 7));
    const file = await store().resolve(interposer);
    expect(sha256Hex(await readFile(file))).toBe(sha);
  });

  it('honours HF_ENDPOINT and HF_TOKEN, sending the token to the hub only', async () => {
    hostModel(hub, upscaler, UPSCALER);
    hub.requiredToken = 'hf_test_token';
    const env = { HF_ENDPOINT: `${hub.url}/`, HF_TOKEN: 'hf_test_token', HF_HUB_CACHE: cacheDir, XDG_STATE_HOME: work, HOME: work };
    const options = storeOptionsFromEnv({ modelDirs: [path.join(work, 'models')] }, env);
    expect(options.hubUrl).toBe(hub.url);
    const file = await new ModelStore({ ...options, progress: silentProgress }).resolve(upscaler);
    expect(sha256Hex(await readFile(file))).toBe(sha256Hex(UPSCALER));
    for (const request of hub.requests) {
      expect(request.authorization).toBe('Bearer hf_test_token');
    }

    const anonymous = storeOptionsFromEnv({}, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(work, 'other'), XDG_STATE_HOME: work, HOME: work });
    const error = await rejection(new ModelStore({ ...anonymous, progress: silentProgress }).resolve(upscaler));
    expect(error.message).toContain('(401): set HF_TOKEN');
  });

  it('accepts a mirror token that does not start with hf_', async () => {
    hostModel(hub, upscaler, UPSCALER);
    hub.requiredToken = 'mirror-secret';
    const file = await store({ token: 'mirror-secret' }).resolve(upscaler);
    expect(sha256Hex(await readFile(file))).toBe(sha256Hex(UPSCALER));
  });

  it('says the mirror lacks the file on 404', async () => {
    const error = await rejection(store().resolve(upscaler));
    expect(error.code).toBe('model_unavailable');
    expect(error.message).toContain('(404)');
    expect(error.message).toContain('HF_ENDPOINT');
    expect(error.message).toContain(path.join(work, 'models', upscaler.fileName));
  });

  it('says when nothing answers at the hub URL', async () => {
    const url = hub.url;
    await hub.close();
    const error = await rejection(store({ hubUrl: url }).resolve(upscaler));
    expect(error.message).toContain('connection refused');
    expect(error.message).toContain(`save it as ${path.join(work, 'models', upscaler.fileName)}`);
    hub = await FakeHub.start();
  });

  it('explains an unknown host', async () => {
    const error = await rejection(store({ hubUrl: 'http://no-such-host.invalid' }).resolve(upscaler));
    expect(error.message).toMatch(/cannot look up no-such-host\.invalid \((ENOTFOUND|EAI_AGAIN)\)/);
  });

  it('reports a full disk in words', async () => {
    hostModel(hub, upscaler, UPSCALER);
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    const full = '/dev/full';
    const blobs = path.join(cacheDir, 'models--city96--SD-Latent-Upscaler', 'blobs');
    await mkdir(blobs, { recursive: true });
    await symlink(full, path.join(blobs, `${sha256Hex(UPSCALER)}.incomplete`));
    const error = await rejection(store().resolve(upscaler));
    expect(error.message).toContain('the disk is full');
    expect(error.message).toContain('HF_HUB_CACHE');
  });
});
