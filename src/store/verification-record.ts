import type { Stats } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SHA256_HEX } from './hf-cache.ts';

/** The sha256 the hub reported for a model's file, kept so files can be checked while offline. */
export interface HubDigest {
  readonly sha256: string;
  readonly size: number;
  readonly repo: string;
  readonly commit: string;
  readonly path: string;
}

/** A file whose bytes were hashed and matched a digest; trusted while its size and mtime are unchanged. */
export interface VerifiedFile {
  readonly model: string;
  readonly sha256: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly verifiedAt: string;
}

interface RecordContent {
  version: 1;
  digests: Record<string, HubDigest>;
  files: Record<string, VerifiedFile>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isHubDigest(value: unknown): value is HubDigest {
  return (
    isObject(value) &&
    typeof value.sha256 === 'string' &&
    SHA256_HEX.test(value.sha256) &&
    typeof value.size === 'number' &&
    typeof value.repo === 'string' &&
    typeof value.commit === 'string' &&
    typeof value.path === 'string'
  );
}

function isVerifiedFile(value: unknown): value is VerifiedFile {
  return (
    isObject(value) &&
    typeof value.model === 'string' &&
    typeof value.sha256 === 'string' &&
    typeof value.size === 'number' &&
    typeof value.mtimeMs === 'number' &&
    typeof value.verifiedAt === 'string'
  );
}

/** Keeps only well-formed entries: the file is ours, but a hand edit or a crash must not break the store. */
function parseRecord(text: string): RecordContent {
  const empty: RecordContent = { version: 1, digests: {}, files: {} };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return empty;
  }
  if (!isObject(json) || json.version !== 1) return empty;
  const digests = isObject(json.digests) ? json.digests : {};
  const files = isObject(json.files) ? json.files : {};
  return {
    version: 1,
    digests: Object.fromEntries(Object.entries(digests).filter(([, v]) => isHubDigest(v))) as Record<string, HubDigest>,
    files: Object.fromEntries(Object.entries(files).filter(([, v]) => isVerifiedFile(v))) as Record<string, VerifiedFile>,
  };
}

/**
 * `verified.json` in the state folder: what the hub said each model's sha256 is, and which files on
 * disk were hashed and matched. `models list` reads it instead of re-hashing; `models verify` re-hashes.
 */
export class VerificationRecord {
  readonly file: string;
  #writes: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'verified.json');
  }

  async read(): Promise<RecordContent> {
    try {
      return parseRecord(await readFile(this.file, 'utf8'));
    } catch {
      return { version: 1, digests: {}, files: {} };
    }
  }

  async digestFor(model: string): Promise<HubDigest | undefined> {
    return (await this.read()).digests[model];
  }

  /** The entry for `file` if it still describes the file as it is now (same size and mtime). */
  async verifiedEntry(file: string, stats: Stats): Promise<VerifiedFile | undefined> {
    const entry = (await this.read()).files[file];
    return entry !== undefined && entry.size === stats.size && entry.mtimeMs === stats.mtimeMs ? entry : undefined;
  }

  noteDigest(model: string, digest: HubDigest): Promise<void> {
    return this.#update((content) => {
      content.digests[model] = digest;
    });
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
  #update(change: (content: RecordContent) => void): Promise<void> {
    const next = this.#writes.then(async () => {
      const content = await this.read();
      change(content);
      await mkdir(path.dirname(this.file), { recursive: true });
      const staging = `${this.file}.${process.pid}.tmp`;
      await writeFile(staging, `${JSON.stringify(content, null, 2)}\n`);
      await rename(staging, this.file);
    });
    this.#writes = next.catch(() => undefined);
    return next;
  }
}
