import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { formatBytes } from '../src/console-log.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { specsNamed, UPSCALER_REVISION } from '../src/store/registry.ts';
import { ModelStore, type ModelStoreOptions } from '../src/store/store.ts';
import { storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { FakeHub, hostModel, pinnedTo, sha256Hex } from './support/fake-hub.ts';

const XL_TO_V1 = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-xl-to-v1.weights.safetensors'));
const UPSCALER = readFileSync(path.join(CONFORMANCE_DIR, 'upscaler-x1.25-small.weights.safetensors'));
const MAIN_COMMIT = 'c0ffee0000000000000000000000000000000001';

/** The same size, one byte different: what a mirror serving another version of a file sends. */
function altered(content: Buffer): Buffer {
  const other = Buffer.from(content);
  other[other.length - 1] ^= 0xff;
  return other;
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

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
  const [interposer, realUpscaler] = specsNamed(['interposer-xl-to-v1', 'upscaler-v1-x1.25']);
  // The registry pins the real upscaler's sha256; the stand-in weights play that file.
  const upscaler = pinnedTo(realUpscaler, UPSCALER);
  const registry = [interposer, upscaler];

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
      registry,
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
    const file = await new ModelStore({ ...options, progress: silentProgress, registry }).resolve(upscaler);
    expect(sha256Hex(await readFile(file))).toBe(sha256Hex(UPSCALER));
    for (const request of hub.requests) {
      expect(request.authorization).toBe('Bearer hf_test_token');
    }

    const anonymous = storeOptionsFromEnv({}, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(work, 'other'), XDG_STATE_HOME: work, HOME: work });
    const error = await rejection(new ModelStore({ ...anonymous, progress: silentProgress, registry }).resolve(upscaler));
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

  it('refuses, before transferring, a pinned file that a mirror reports with another self-consistent sha256', async () => {
    const mirror = await FakeHub.start();
    try {
      const other = altered(UPSCALER);
      hostModel(mirror, upscaler, other);
      const error = await rejection(store({ hubUrl: mirror.url }).resolve(upscaler));
      expect(error.code).toBe('model_unavailable');
      expect(error.message).toContain(`${mirror.url} reports sha256 ${sha256Hex(other)} for ${upscaler.repo}/${upscaler.path} at ${upscaler.revision}`);
      expect(error.message).toContain(`the sha256 latent-bridge pins is ${upscaler.sha256}; nothing was downloaded`);
      expect(mirror.count('/cdn/')).toBe(0);
      await expect(stat(path.join(cacheDir, 'models--city96--SD-Latent-Upscaler'))).rejects.toThrow();
    } finally {
      await mirror.close();
    }
  });

  it('refuses bytes that do not hash to the pin even when the hub reports the pinned sha256, and publishes nothing', async () => {
    hostModel(hub, upscaler, UPSCALER);
    hub.tamper(upscaler.repo, upscaler.path);
    const error = await rejection(store().resolve(upscaler));
    expect(error.message).toMatch(/sha256 .* reports .*discarded/);
    const repoDir = path.join(cacheDir, 'models--city96--SD-Latent-Upscaler');
    expect(await readdir(path.join(repoDir, 'blobs'))).toEqual([]);
    await expect(stat(path.join(repoDir, 'snapshots'))).rejects.toThrow();
  });

  it('trusts the first verified download of an unpinned file and holds later ones at that revision, through any mirror, to it', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    await store().resolve(interposer);
    const mirror = await FakeHub.start();
    try {
      const other = altered(XL_TO_V1);
      hostModel(mirror, interposer, other, MAIN_COMMIT);
      const mirrored = { hubUrl: mirror.url, cacheDir: path.join(work, 'other-cache') };
      const error = await rejection(store(mirrored).resolve(interposer));
      expect(error.code).toBe('model_unavailable');
      expect(error.message).toContain(`${mirror.url} reports sha256 ${sha256Hex(other)}`);
      expect(error.message).toContain(`the sha256 of its first verified download (${new Date().toISOString().slice(0, 10)}, from ${hub.url}) is ${sha}`);
      expect(error.message).toContain(`latent-bridge models forget ${interposer.name}`);
      expect(error.message).toContain(path.join(work, 'state', 'verified.json'));
      expect(mirror.count('/cdn/')).toBe(0);

      // Another revision of the file is another file: not held to it.
      const pinnedCommit = { ...interposer, revision: MAIN_COMMIT };
      const atCommit = await store({ ...mirrored, registry: [pinnedCommit] }).resolve(pinnedCommit);
      expect(sha256Hex(await readFile(atCommit))).toBe(sha256Hex(other));

      // Forgotten, the next verified download is trusted anew, and the first one is now the one refused.
      const [forgot] = await store().forgetTrusted([interposer]);
      expect(forgot.forgotten?.sha256).toBe(sha);
      const file = await store({ ...mirrored, cacheDir: path.join(work, 'third-cache') }).resolve(interposer);
      expect(sha256Hex(await readFile(file))).toBe(sha256Hex(other));
      const back = await rejection(store({ cacheDir: path.join(work, 'fourth-cache') }).resolve(interposer));
      expect(back.message).toContain(`from ${mirror.url}) is ${sha256Hex(other)}`);
    } finally {
      await mirror.close();
    }
  });

  it('close() cancels a download stalled mid-file, keeps only the .incomplete, and refuses new downloads', async () => {
    const sha = hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const stalled = hub.stallTransfers(1_000_000);
    const lines: string[] = [];
    const models = store({ logger: (line) => lines.push(line) });
    const download = rejection(models.resolve(interposer));
    await stalled;
    const blobs = path.join(cacheDir, 'models--city96--SD-Latent-Interposer', 'blobs');
    const incomplete = path.join(blobs, `${sha}.incomplete`);
    await until(async () => (await stat(incomplete).catch(() => undefined))?.size === 1_000_000);

    await models.close();
    const error = await download;
    expect(error.code).toBe('model_unavailable');
    const cancelled = `cancelled the download of ${interposer.name} at ${formatBytes(1_000_000)} of ${formatBytes(XL_TO_V1.length)}; the partial file ${incomplete} is kept to resume`;
    expect(error.message).toContain(cancelled);
    expect(lines.at(-1)).toBe(cancelled);
    expect(await readdir(blobs)).toEqual([`${sha}.incomplete`]);
    await expect(stat(path.join(cacheDir, 'models--city96--SD-Latent-Interposer', 'snapshots'))).rejects.toThrow();
    expect((await rejection(models.resolve(interposer))).message).toContain('no new downloads');

    // A later run resumes the partial file.
    const next = await FakeHub.start();
    try {
      hostModel(next, interposer, XL_TO_V1, MAIN_COMMIT);
      const file = await store({ hubUrl: next.url }).resolve(interposer);
      expect(sha256Hex(await readFile(file))).toBe(sha);
      expect(next.requests.find((r) => r.path.startsWith('/cdn/'))?.range).toBe('bytes=1000000-');
    } finally {
      await next.close();
    }
  });

  it('stops retrying once cancelled', async () => {
    hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    hub.cutTransfers(200_000, 100);
    const models: ModelStore = store({
      downloadAttempts: 50,
      logger: (line) => {
        if (line.includes('broke off')) void models.close();
      },
    });
    const error = await rejection(models.resolve(interposer));
    expect(error.message).toContain('cancelled the download');
    expect(hub.count('/cdn/')).toBe(1);
  });

  it('says in one line each when a download starts and ends (size, time, speed), and why one failed', async () => {
    hostModel(hub, interposer, XL_TO_V1, MAIN_COMMIT);
    const lines: string[] = [];
    await store({ logger: (line) => lines.push(line) }).resolve(interposer);
    const size = formatBytes(XL_TO_V1.length).replace('.', '\\.');
    expect(lines).toEqual([
      `downloading ${interposer.name}: ${formatBytes(XL_TO_V1.length)} from ${hub.url}`,
      expect.stringMatching(new RegExp(`^downloaded ${interposer.name}: ${size} in \\d+\\.\\d s \\([\\d.]+ (B|KiB|MiB|GiB)/s\\)$`)),
    ]);

    lines.length = 0;
    const error = await rejection(store({ logger: (line) => lines.push(line) }).resolve(upscaler));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^download of ${upscaler.name} failed after \\d+\\.\\d s: `));
    expect(lines[0]).toContain(error.message);
    expect(lines[0]).toContain('(404)');
    expect(lines[0]).not.toContain('\n');
  });
});
