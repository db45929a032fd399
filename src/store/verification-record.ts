import { writeFileAtomically } from '../atomic-file.ts';
import { isPlainObject } from '../plain-object.ts';
import type { Stats } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { SHA256_HEX } from './hf-cache.ts';
import type { WeightSource } from './registry.ts';

/**
 * The sha256 of the first verified download (or check against the hub) of a file that the
 * registry pins no sha256 for: later downloads of the same file at the same revision, through any
 * hub or mirror, must match it (trust on first use).
 */
export interface TrustedDigest {
  readonly model: string;
  readonly sha256: string;
  readonly size: number;
  readonly repo: string;
  readonly revision: string;
  readonly path: string;
  /** The hub or mirror it came from, and the commit the revision pointed to then. */
  readonly hubUrl: string;
  readonly commit: string;
  readonly trustedAt: string;
}

/** A file whose bytes were hashed and matched a digest; trusted while its size and mtime are unchanged. */
export interface VerifiedFile {
  readonly model: string;
  readonly sha256: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly verifiedAt: string;
}

interface RecordData {
  version: 1;
  /** By `trustKey`. */
  trusted: Record<string, TrustedDigest>;
  /** By absolute path. */
  files: Record<string, VerifiedFile>;
}

/** What `verified.json` holds. Shared between callers while the file is unchanged: never modify it. */
export type RecordContent = { readonly [K in keyof RecordData]: Readonly<RecordData[K]> };

const EMPTY: RecordContent = { version: 1, trusted: {}, files: {} };

/** One file of one repository at one revision, whichever model names it. */
export function trustKey(source: Pick<WeightSource, 'repo' | 'revision' | 'path'>): string {
  return `${source.repo}/${source.path}@${source.revision}`;
}

export function trustedDigest(content: RecordContent, source: Pick<WeightSource, 'repo' | 'revision' | 'path'>): TrustedDigest | undefined {
  return content.trusted[trustKey(source)];
}

/** The entry for `file` if it still describes the file as it is now (same size and mtime). */
export function verifiedEntry(content: RecordContent, file: string, stats: Stats): VerifiedFile | undefined {
  const entry = content.files[file];
  return entry !== undefined && entry.size === stats.size && entry.mtimeMs === stats.mtimeMs ? entry : undefined;
}

function isTrustedDigest(value: unknown): value is TrustedDigest {
  return (
    isPlainObject(value) &&
    typeof value.model === 'string' &&
    typeof value.sha256 === 'string' &&
    SHA256_HEX.test(value.sha256) &&
    typeof value.size === 'number' &&
    typeof value.repo === 'string' &&
    typeof value.revision === 'string' &&
    typeof value.path === 'string' &&
    typeof value.hubUrl === 'string' &&
    typeof value.commit === 'string' &&
    typeof value.trustedAt === 'string'
  );
}

function isVerifiedFile(value: unknown): value is VerifiedFile {
  return (
    isPlainObject(value) &&
    typeof value.model === 'string' &&
    typeof value.sha256 === 'string' &&
    typeof value.size === 'number' &&
    typeof value.mtimeMs === 'number' &&
    typeof value.verifiedAt === 'string'
  );
}

/** Keeps only well-formed entries: the file is ours, but a hand edit or a crash must not break the store. */
function parseRecord(text: string): RecordData {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { version: 1, trusted: {}, files: {} };
  }
  if (!isPlainObject(json) || json.version !== 1) return { version: 1, trusted: {}, files: {} };
  const trusted = isPlainObject(json.trusted) ? json.trusted : {};
  const files = isPlainObject(json.files) ? json.files : {};
  return {
    version: 1,
    trusted: Object.fromEntries(Object.entries(trusted).filter(([, v]) => isTrustedDigest(v))) as Record<string, TrustedDigest>,
    files: Object.fromEntries(Object.entries(files).filter(([, v]) => isVerifiedFile(v))) as Record<string, VerifiedFile>,
  };
}

/** Changes in size, mtime, ctime or inode (every write renames a new file into place) mean another content. */
function signature(stats: Stats): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

/**
 * `verified.json` in the state folder: the sha256 each unpinned file had at its first verified
 * download, and which files on disk were hashed and matched. `models list` reads it instead of
 * re-hashing; `models verify` re-hashes. It is parsed again only when the file changes, so
 * listing models costs one stat of it.
 */
export class VerificationRecord {
  readonly file: string;
  #writes: Promise<void> = Promise.resolve();
  #parsed: { signature: string; content: RecordContent } | undefined;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'verified.json');
  }

  /** The record as it is on disk; empty when there is none or it cannot be read. */
  async read(): Promise<RecordContent> {
    try {
      const stats = await stat(this.file);
      if (this.#parsed?.signature === signature(stats)) return this.#parsed.content;
      // Should the file change between stat and read, the next read sees another signature and parses again.
      this.#parsed = { signature: signature(stats), content: parseRecord(await readFile(this.file, 'utf8')) };
      return this.#parsed.content;
    } catch {
      return EMPTY;
    }
  }

  /** Trusts `digest` for its file unless a digest is already trusted for it; returns the one in force. */
  async trustFirstUse(digest: TrustedDigest): Promise<TrustedDigest> {
    let inForce = digest;
    await this.#update((content) => {
      const key = trustKey(digest);
      inForce = content.trusted[key] ?? digest;
      content.trusted[key] = inForce;
    });
    return inForce;
  }

  /** Drops the trusted digest of a file, so that its next verified download is trusted anew. */
  async forgetTrusted(source: Pick<WeightSource, 'repo' | 'revision' | 'path'>): Promise<TrustedDigest | undefined> {
    let forgotten: TrustedDigest | undefined;
    await this.#update((content) => {
      forgotten = content.trusted[trustKey(source)];
      delete content.trusted[trustKey(source)];
    });
    return forgotten;
  }

  noteVerified(model: string, file: string, sha256: string, stats: Stats): Promise<void> {
    return this.#update((content) => {
      content.files[file] = { model, sha256, size: stats.size, mtimeMs: stats.mtimeMs, verifiedAt: new Date().toISOString() };
    });
  }

  forget(file: string): Promise<void> {
    return this.#update((content) => {
      delete content.files[file];
    });
  }

  /** Read-modify-write, one at a time within the process, replaced atomically on disk. */
  #update(change: (content: RecordData) => void): Promise<void> {
    const next = this.#writes.then(async () => {
      const content = structuredClone(await this.read()) as RecordData;
      change(content);
      await mkdir(path.dirname(this.file), { recursive: true });
      await writeFileAtomically(this.file, `${JSON.stringify(content, null, 2)}\n`);
    });
    this.#writes = next.catch(() => undefined);
    return next;
  }
}
