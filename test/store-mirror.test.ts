import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../src/errors.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { type ModelSpec, specsNamed } from '../src/store/registry.ts';
import { ModelStore } from '../src/store/store.ts';
import { storeOptionsFromEnv } from '../src/store/store-options.ts';
import { CONFORMANCE_DIR } from './support/conformance.ts';
import { sha256Hex } from './support/fake-hub.ts';

const CONTENT = readFileSync(path.join(CONFORMANCE_DIR, 'interposer-xl-to-v1.weights.safetensors'));
const SHA256 = sha256Hex(CONTENT);
const HEAD_COMMIT = 'feed000000000000000000000000000000000002';

interface MirrorOptions {
  /** Where the mirror is mounted, e.g. '/mirror'. */
  readonly prefix: string;
  /** Resolve answers 302 to a server on another port (another origin); else it serves the bytes itself. */
  readonly redirect: boolean;
  /** X-Repo-Commit, X-Linked-Etag, X-Linked-Size and ETag on resolve; else only what HTTP needs. */
  readonly hubHeaders: boolean;
  readonly token?: string;
  /** Resolve sends the file, then zeros for as long as the client reads: a byte count that lies. */
  readonly endless?: boolean;
}

interface Seen {
  readonly server: 'hub' | 'cdn';
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

/** Bytes with Range support: 206 and Content-Range for `bytes=a-b`, 200 for the whole. */
function serveBytes(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range === null) {
    res.writeHead(200, { ...headers, 'Content-Length': String(CONTENT.length) });
    res.end(req.method === 'HEAD' ? undefined : CONTENT);
    return;
  }
  const start = Number(range[1]);
  const end = range[2] === '' ? CONTENT.length - 1 : Math.min(Number(range[2]), CONTENT.length - 1);
  res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${CONTENT.length}`, 'Content-Length': String(end - start + 1) });
  res.end(req.method === 'HEAD' ? undefined : CONTENT.subarray(start, end + 1));
}

/**
 * A mirror written apart from FakeHub, with nothing but the two endpoints a download needs:
 *   POST {prefix}/api/models/{repo}/paths-info/{rev}   [{ type, path, oid, size, lfs: { oid, size } }]
 *   GET  {prefix}/{repo}/resolve/{rev}/{path}          the bytes, or a redirect to them
 */
async function startMirror(spec: ModelSpec, options: MirrorOptions) {
  const seen: Seen[] = [];
  const cdn = createServer((req, res) => {
    seen.push({ server: 'cdn', method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization });
    serveBytes(req, res, { 'Content-Type': 'application/octet-stream' });
  });
  const cdnUrl = await listen(cdn);
  const hub = createServer((req, res) => {
    seen.push({ server: 'hub', method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization });
    req.resume();
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      res.writeHead(401).end();
      return;
    }
    const url = req.url ?? '';
    if (req.method === 'POST' && url === `${options.prefix}/api/models/${spec.repo}/paths-info/${spec.revision}`) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify([{ type: 'file', path: spec.path, oid: SHA256.slice(0, 40), size: CONTENT.length, lfs: { oid: SHA256, size: CONTENT.length } }]));
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && url === `${options.prefix}/${spec.repo}/resolve/${spec.revision}/${spec.path}`) {
      const hubHeaders: Record<string, string> = options.hubHeaders
        ? { 'X-Repo-Commit': HEAD_COMMIT, 'X-Linked-Etag': `"${SHA256}"`, 'X-Linked-Size': String(CONTENT.length), ETag: `"${SHA256.slice(0, 40)}"` }
        : {};
      if (options.endless) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        const more = (): void => {
          while (!res.destroyed && res.write(Buffer.alloc(64 * 1024))) {}
        };
        res.write(CONTENT);
        res.on('drain', more);
        more();
        return;
      }
      if (options.redirect) {
        res.writeHead(302, { ...hubHeaders, Location: `${cdnUrl}/blob/${SHA256}` }).end();
        return;
      }
      serveBytes(req, res, { ...hubHeaders, 'Content-Type': 'application/octet-stream' });
      return;
    }
    res.writeHead(404).end();
  });
  const url = await listen(hub);
  return {
    url,
    seen,
    close: async () => {
      for (const server of [hub, cdn]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}

describe('downloads from a minimal mirror (paths-info and resolve only)', () => {
  const [interposer] = specsNamed(['interposer-xl-to-v1']);
  let work: string;
  let mirror: Awaited<ReturnType<typeof startMirror>> | undefined;

  beforeEach(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'store-mirror-'));
  });

  afterEach(async () => {
    await mirror?.close();
    mirror = undefined;
    await rm(work, { recursive: true, force: true });
  });

  async function download(options: MirrorOptions, endpoint: (url: string) => string) {
    mirror = await startMirror(interposer, options);
    const env = { HF_ENDPOINT: endpoint(mirror.url), HF_HUB_CACHE: path.join(work, 'hub'), XDG_STATE_HOME: work, HOME: work, ...(options.token ? { HF_TOKEN: options.token } : {}) };
    const store = new ModelStore({ ...storeOptionsFromEnv({ modelDirs: [path.join(work, 'models')] }, env), progress: silentProgress });
    const file = await store.resolve(interposer);
    expect(sha256Hex(await readFile(file))).toBe(SHA256);
    return path.relative(path.join(work, 'hub', 'models--city96--SD-Latent-Interposer'), file);
  }

  for (const redirect of [false, true]) {
    it(`${redirect ? 'redirected to another origin' : 'served by resolve itself'}, without hub headers or ETag, under a path prefix with a trailing slash`, async () => {
      const snapshot = await download({ prefix: '/mirror', redirect, hubHeaders: false }, (url) => `${url}/mirror/`);
      // No commit from the mirror: the snapshot is named after the content.
      expect(snapshot).toBe(path.join('snapshots', SHA256.slice(0, 40), 'v4.0', interposer.fileName));
    });

    it(`${redirect ? 'redirected to another origin' : 'served by resolve itself'}, names the snapshot after X-Repo-Commit`, async () => {
      const snapshot = await download({ prefix: '', redirect, hubHeaders: true }, (url) => url);
      expect(snapshot).toBe(path.join('snapshots', HEAD_COMMIT, 'v4.0', interposer.fileName));
      expect(await readFile(path.join(work, 'hub', 'models--city96--SD-Latent-Interposer', 'refs', 'main'), 'utf8')).toBe(HEAD_COMMIT);
    });
  }

  it('sends the token to the mirror and never to the other origin it redirects to', async () => {
    await download({ prefix: '/hf', redirect: true, hubHeaders: true, token: 'mirror-token' }, (url) => `${url}/hf`);
    const seen = mirror?.seen ?? [];
    expect(seen.filter((s) => s.server === 'hub').length).toBeGreaterThan(0);
    for (const request of seen.filter((s) => s.server === 'hub')) expect(request.authorization).toBe('Bearer mirror-token');
    expect(seen.filter((s) => s.server === 'cdn').length).toBeGreaterThan(0);
    for (const request of seen.filter((s) => s.server === 'cdn')) expect(request.authorization).toBeUndefined();
  });

  it('stops reading a mirror that sends more bytes than paths-info reported, and keeps nothing', async () => {
    mirror = await startMirror(interposer, { prefix: '', redirect: false, hubHeaders: false, endless: true });
    const cache = path.join(work, 'hub');
    const store = new ModelStore({ modelDirs: [path.join(work, 'models')], hubUrl: mirror.url, cacheDir: cache, stateDir: work, offline: false, progress: silentProgress });
    const error = await store.resolve(interposer).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    expect(error).toMatchObject({ code: 'model_unavailable', message: expect.stringMatching(new RegExp(`more than the ${CONTENT.length} bytes`)) });
    expect(await readdir(path.join(cache, 'models--city96--SD-Latent-Interposer', 'blobs'))).toEqual([]);
  });
});
