import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import { HubApiError, InvalidApiResponseFormatError, modelInfo, pathsInfo } from '@huggingface/hub';
import { BridgeError } from '../errors.ts';
import type { ProgressReporter } from './download-progress.ts';
import { hashFileInto } from './file-digest.ts';
import { COMMIT_HASH, type HfCache, SHA256_HEX, statFile } from './hf-cache.ts';
import type { ModelSpec } from './registry.ts';

export interface HubAccess {
  readonly hubUrl: string;
  readonly token: string | undefined;
  /** Cancels every request and transfer made with this access; an `.incomplete` file stays to resume. */
  readonly signal: AbortSignal;
}

/** What the hub says about a model's file at the commit its revision points to now. */
export interface HubFile {
  readonly commit: string;
  /** The LFS object id: the sha256 of the file's bytes. */
  readonly sha256: string;
  readonly size: number;
}

/** A transfer that stopped early or whose resumed bytes did not add up; the next try starts clean or resumes. */
export class InterruptedTransfer extends Error {
  override readonly name = 'InterruptedTransfer';
}

/**
 * `fetch` that sends the token to the hub itself and nowhere else (not to the CDN it redirects
 * to), and that the access's signal cancels. The token goes in by hand because the library
 * refuses tokens that do not start with `hf_`, which mirrors may issue; the signal too, because
 * the library passes none (a stalled hub would otherwise hold the process until undici gives up).
 */
export function hubFetch(access: HubAccess): typeof fetch {
  const hubOrigin = new URL(access.hubUrl).origin;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (access.token === undefined || url.origin !== hubOrigin) return fetch(input, { ...init, signal: access.signal });
    const headers = new Headers(init?.headers);
    headers.set('Authorization', `Bearer ${access.token}`);
    return fetch(input, { ...init, headers, signal: access.signal });
  };
}

/**
 * Where the file's bytes are asked for: `resolve` with the revision as named, not the commit, since
 * a mirror may serve branches only; the sha256 check rejects the bytes should the branch have
 * moved since paths-info.
 */
function resolveUrl(spec: ModelSpec, access: HubAccess): string {
  return `${access.hubUrl}/${spec.repo}/resolve/${encodeURIComponent(spec.revision)}/${spec.path}`;
}

/** Asks the hub for the file's sha256 and size, and for the commit its revision points to now. */
export async function describeHubFile(spec: ModelSpec, access: HubAccess): Promise<HubFile> {
  const fetchFn = hubFetch(access);
  const infos = await pathsInfo({ repo: spec.repo, paths: [spec.path], revision: spec.revision, expand: true, hubUrl: access.hubUrl, fetch: fetchFn });
  const info = infos.find((entry) => entry.path === spec.path);
  if (info === undefined) throw new HubApiError(`${access.hubUrl}/api/models/${spec.repo}/paths-info/${spec.revision}`, 404);
  if (info.lfs === undefined || !SHA256_HEX.test(info.lfs.oid)) {
    throw new InvalidApiResponseFormatError(`no LFS sha256 reported for ${spec.path}`);
  }
  const commit = COMMIT_HASH.test(spec.revision) ? spec.revision : await branchCommit(spec, access, fetchFn, info.lastCommit?.id, info.lfs.oid);
  return { commit, sha256: info.lfs.oid, size: info.lfs.size };
}

/**
 * The commit a branch points to, which names the snapshot folder and goes into `refs/<branch>`
 * for Python's offline lookup. The revision endpoint says it; a mirror without that endpoint is
 * no reason to fail: then the `X-Repo-Commit` its resolve answer carries stands in (what Python's
 * `huggingface_hub` names the snapshot after), else the file's last commit, else its content
 * hash, as @huggingface/hub's own download does. The sha256 check keeps the bytes honest either way.
 */
async function branchCommit(spec: ModelSpec, access: HubAccess, fetchFn: typeof fetch, lastCommit: string | undefined, sha256: string): Promise<string> {
  try {
    const { sha } = await modelInfo({ name: spec.repo, revision: spec.revision, additionalFields: ['sha'], hubUrl: access.hubUrl, fetch: fetchFn });
    if (typeof sha === 'string' && COMMIT_HASH.test(sha)) return sha;
  } catch (error) {
    const unsupported = (error instanceof HubApiError && [404, 405, 501].includes(error.statusCode)) || error instanceof InvalidApiResponseFormatError;
    if (!unsupported) throw error;
  }
  const candidates = [await resolvedCommit(spec, access, fetchFn), lastCommit];
  return candidates.find((commit) => commit !== undefined && COMMIT_HASH.test(commit)) ?? sha256.slice(0, 40);
}

/** `X-Repo-Commit` of the resolve answer itself (not of a CDN it redirects to), asking for one byte. */
async function resolvedCommit(spec: ModelSpec, access: HubAccess, fetchFn: typeof fetch): Promise<string | undefined> {
  const response = await fetchFn(resolveUrl(spec, access), { headers: { Range: 'bytes=0-0' }, redirect: 'manual' });
  await response.body?.cancel();
  return response.headers.get('x-repo-commit')?.toLowerCase() ?? undefined;
}

async function sizeOnDisk(file: string): Promise<number> {
  return (await statFile(file))?.size ?? 0;
}

/** The ranged GET: continue after `offset` when the server agrees (206 from that byte), else from byte 0. */
async function openTransfer(url: string, offset: number, fetchFn: typeof fetch): Promise<{ response: Response; offset: number }> {
  const ranged = offset > 0 ? await fetchFn(url, { headers: { Range: `bytes=${offset}-` } }) : undefined;
  if (ranged !== undefined) {
    if (ranged.status === 206 && ranged.headers.get('content-range')?.startsWith(`bytes ${offset}-`)) {
      return { response: ranged, offset };
    }
    if (ranged.status === 200) return { response: ranged, offset: 0 };
    await ranged.body?.cancel();
    if (ranged.status !== 416) throw new HubApiError(url, ranged.status);
  }
  const full = await fetchFn(url);
  if (!full.ok) {
    await full.body?.cancel();
    throw new HubApiError(url, full.status);
  }
  return { response: full, offset: 0 };
}

/**
 * Brings `blobs/<sha256>` into the cache. The bytes go to `<sha256>.incomplete` (the name Python
 * also resumes from), are hashed on the way, and are renamed into place only when size and sha256
 * match what the hub reported; a mismatch deletes them. An interrupted or cancelled transfer keeps
 * its `.incomplete` for the next try to resume.
 */
export async function transferBlob(spec: ModelSpec, file: HubFile, access: HubAccess, cache: HfCache, progress: ProgressReporter): Promise<void> {
  const incomplete = cache.incompletePath(spec.repo, file.sha256);
  await mkdir(path.dirname(incomplete), { recursive: true });
  const partial = await sizeOnDisk(incomplete);
  const { response, offset } = await openTransfer(resolveUrl(spec, access), partial > 0 && partial < file.size ? partial : 0, hubFetch(access));
  if (response.body === null) throw new InterruptedTransfer(`empty response for ${spec.path}`);

  const hash = createHash('sha256');
  if (offset > 0) await hashFileInto(hash, incomplete);
  const bar = progress.start({ model: spec.name, fileName: spec.fileName, total: file.size, resumedFrom: offset });
  let written = offset;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      written += chunk.length;
      // A server that sends more than the hub reported would otherwise fill the disk.
      if (written > file.size) {
        done(new InvalidApiResponseFormatError(`${spec.path}: the server sent more than the ${file.size} bytes paths-info reported`));
        return;
      }
      hash.update(chunk);
      bar.advance(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream), tap, createWriteStream(incomplete, { flags: offset > 0 ? 'a' : 'w' }), {
      signal: access.signal,
    });
  } catch (error) {
    bar.end('failed');
    if (written > file.size) await rm(incomplete, { force: true });
    throw error;
  }
  const received = await sizeOnDisk(incomplete);
  if (received !== file.size) {
    bar.end('failed');
    throw new InterruptedTransfer(`received ${received} of ${file.size} bytes of ${spec.path}`);
  }
  const digest = hash.digest('hex');
  if (digest !== file.sha256) {
    bar.end('failed');
    await rm(incomplete, { force: true });
    if (offset > 0) throw new InterruptedTransfer(`the resumed ${spec.path} did not hash to the hub's sha256; starting over`);
    throw new BridgeError(
      'model_unavailable',
      `${spec.name}: the downloaded ${spec.path} has sha256 ${digest} but ${access.hubUrl} reports ${file.sha256}; the file was discarded.` +
        ' Run the command again; if it repeats, the mirror or a proxy serves a different file (check HF_ENDPOINT)',
    );
  }
  await rename(incomplete, cache.blobPath(spec.repo, file.sha256));
  bar.end('done');
}
