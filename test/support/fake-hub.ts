import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A Hugging Face hub on loopback with the endpoints @huggingface/hub and the store call, answering
 * with the headers the real hub sends:
 *   GET  /api/models/{repo}/revision/{rev}      model info with the commit `sha`
 *   POST /api/models/{repo}/paths-info/{rev}    [{ path, type, oid, size, lfs: { oid, size, pointerSize } }]
 *   GET  /{repo}/resolve/{rev}/{path}           302 to the CDN with X-Repo-Commit, X-Linked-Etag, X-Linked-Size
 *   GET  /cdn/{sha256}                          the bytes, honouring Range (206 + Content-Range)
 * and, on demand, the ways a hub or a mirror fails: other bytes than it reports, cut or stalled transfers.
 */
export interface HubRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
}

interface HostedFile {
  readonly content: Buffer;
  readonly sha256: string;
  /** What the CDN sends instead of `content`, to play a mirror or proxy that serves other bytes. */
  served?: Buffer;
}

interface HostedRepo {
  readonly commit: string;
  readonly files: Map<string, HostedFile>;
}

export function sha256Hex(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export class FakeHub {
  readonly requests: HubRequest[] = [];
  readonly #repos = new Map<string, HostedRepo>();
  readonly #server: Server;
  /** When set, every hub call (not the CDN, whose URLs are signed) needs `Authorization: Bearer <token>`. */
  requiredToken: string | undefined;
  /**
   * A bare mirror: only paths-info (without `lastCommit`) and resolve, the two endpoints
   * @huggingface/hub's own download calls; the revision endpoint answers 404.
   */
  bare = false;
  #cuts: { afterBytes: number; remaining: number } | undefined;
  #stall: { afterBytes: number; reached: () => void } | undefined;
  #held: Promise<void> | undefined;
  #url = '';

  private constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  static async start(): Promise<FakeHub> {
    const hub = new FakeHub();
    await new Promise<void>((resolve) => hub.#server.listen(0, '127.0.0.1', resolve));
    hub.#url = `http://127.0.0.1:${(hub.#server.address() as AddressInfo).port}`;
    return hub;
  }

  /** Kept after close, so a test can point a store at a port where nothing listens any more. */
  get url(): string {
    return this.#url;
  }

  /** Hosts `content` as `path` in `repo`, whose `main` and commit hash both resolve to `commit`. */
  addFile(repo: string, commit: string, path: string, content: Buffer): string {
    const hosted = this.#repos.get(repo) ?? { commit, files: new Map<string, HostedFile>() };
    const sha256 = sha256Hex(content);
    hosted.files.set(path, { content, sha256 });
    this.#repos.set(repo, hosted);
    return sha256;
  }

  /** The CDN sends other bytes for this file while paths-info keeps reporting the original sha256. */
  tamper(repo: string, path: string): void {
    const file = this.#repos.get(repo)?.files.get(path);
    if (file === undefined) throw new Error(`no ${repo}/${path} hosted`);
    const served = Buffer.from(file.content);
    served[served.length - 1] ^= 0xff;
    file.served = served;
  }

  /** The next `count` CDN transfers send `afterBytes` bytes of their body, then drop the connection. */
  cutTransfers(afterBytes: number, count = 1): void {
    this.#cuts = { afterBytes, remaining: count };
  }

  /**
   * CDN transfers send `afterBytes` bytes of their body, then neither send more nor close: a hub
   * that stalls mid-file, as long as the client waits. Resolves once a transfer has sent them.
   */
  stallTransfers(afterBytes: number): Promise<void> {
    return new Promise((resolve) => {
      this.#stall = { afterBytes, reached: resolve };
    });
  }

  /** CDN transfers wait until the returned function is called: a download that takes as long as a test needs. */
  holdTransfers(): () => void {
    let release!: () => void;
    this.#held = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.#held = undefined;
      release();
    };
  }

  /** Requests whose path starts with `prefix`, e.g. '/cdn/' for byte transfers. */
  count(prefix: string): number {
    return this.requests.filter((r) => r.path.startsWith(prefix)).length;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  #repoAt(repoName: string, revision: string): HostedRepo | undefined {
    const repo = this.#repos.get(repoName);
    return repo !== undefined && (revision === 'main' || revision === repo.commit) ? repo : undefined;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const range = req.headers.range;
    const authorization = req.headers.authorization;
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, range, authorization });
    const body = await new Promise<string>((resolve) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString()));
      req.on('end', () => resolve(text));
    });

    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn !== null) {
      await this.#held;
      return this.#serveBytes(cdn[1], range, res);
    }

    if (this.requiredToken !== undefined && authorization !== `Bearer ${this.requiredToken}`) {
      return this.#json(res, 401, { error: 'Invalid credentials in Authorization header' });
    }
    const info = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (info !== null && req.method === 'GET' && !this.bare) {
      const repo = this.#repoAt(info[1], decodeURIComponent(info[2]));
      if (repo === undefined) return this.#json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      return this.#json(res, 200, { _id: 'fake', id: info[1], sha: repo.commit, private: false, gated: false, downloads: 0, likes: 0 });
    }
    const paths = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/.exec(url.pathname);
    if (paths !== null && req.method === 'POST') {
      const repo = this.#repoAt(paths[1], decodeURIComponent(paths[2]));
      if (repo === undefined) return this.#json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      const { paths: asked, expand } = JSON.parse(body) as { paths: string[]; expand?: boolean };
      const lastCommit = expand === true && !this.bare ? { lastCommit: { id: repo.commit, title: 'upload', date: '2024-08-07T00:00:00.000Z' } } : {};
      return this.#json(
        res,
        200,
        asked.flatMap((path) => {
          const file = repo.files.get(path);
          return file === undefined
            ? []
            : [{ type: 'file', path, oid: sha256Hex(file.content).slice(0, 40), size: file.content.length, lfs: { oid: file.sha256, size: file.content.length, pointerSize: 134 }, ...lastCommit }];
        }),
      );
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve !== null && (req.method === 'GET' || req.method === 'HEAD')) {
      const repo = this.#repoAt(resolve[1], decodeURIComponent(resolve[2]));
      if (repo === undefined) return this.#json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      const file = repo.files.get(resolve[3]);
      if (file === undefined) return this.#json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
      res.writeHead(302, {
        Location: `${this.url}/cdn/${file.sha256}`,
        'X-Repo-Commit': repo.commit,
        'X-Linked-Etag': `"${file.sha256}"`,
        'X-Linked-Size': String(file.content.length),
        ETag: `"${sha256Hex(file.content).slice(0, 40)}"`,
      });
      return void res.end();
    }
    this.#json(res, 404, { error: 'Not found' });
  }

  #serveBytes(sha256: string, range: string | undefined, res: ServerResponse): void {
    const file = [...this.#repos.values()].flatMap((repo) => [...repo.files.values()]).find((f) => f.sha256 === sha256);
    if (file === undefined) return this.#json(res, 404, { error: 'Not found' });
    const bytes = file.served ?? file.content;
    const headers = { ETag: `"${sha256}"`, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    let start = 0;
    let end = bytes.length - 1;
    const wanted = range === undefined ? null : /^bytes=(\d+)-(\d*)$/.exec(range);
    if (wanted !== null) {
      start = Number(wanted[1]);
      end = wanted[2] === '' ? bytes.length - 1 : Math.min(Number(wanted[2]), bytes.length - 1);
      if (start >= bytes.length) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${bytes.length}` });
        return void res.end();
      }
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${bytes.length}`, 'Content-Length': String(end - start + 1) });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': String(bytes.length) });
    }
    const slice = bytes.subarray(start, end + 1);
    if (this.#stall !== undefined && slice.length > this.#stall.afterBytes) {
      res.write(slice.subarray(0, this.#stall.afterBytes), this.#stall.reached);
      return;
    }
    // Probes (`Range: bytes=0-0`) are never cut: the cut plays a connection dropped mid-file.
    if (this.#cuts !== undefined && this.#cuts.remaining > 0 && slice.length > this.#cuts.afterBytes) {
      this.#cuts.remaining -= 1;
      res.write(slice.subarray(0, this.#cuts.afterBytes), () => res.destroy());
      return;
    }
    res.end(slice);
  }
}

/** `spec` with its pin set to the sha256 of `content`: stand-in weights playing a file the registry pins. */
export function pinnedTo<T extends { readonly sha256?: string }>(spec: T, content: Buffer): T {
  return { ...spec, sha256: sha256Hex(content) };
}

/** Hosts `content` under the registry's repo, revision and path for `spec`, as the real hub has it. */
export function hostModel(
  hub: FakeHub,
  spec: { readonly repo: string; readonly revision: string; readonly path: string },
  content: Buffer,
  branchCommit = 'c0ffee0000000000000000000000000000000001',
): string {
  const commit = /^[0-9a-f]{40}$/.test(spec.revision) ? spec.revision : branchCommit;
  return hub.addFile(spec.repo, commit, spec.path, content);
}
