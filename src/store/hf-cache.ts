import { writeFileAtomically } from '../atomic-file.ts';
import { copyFile, mkdir, readFile, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';

/**
 * The Hugging Face hub cache exactly as Python's `huggingface_hub` lays it out, so files that
 * ComfyUI, diffusers or `huggingface-cli` downloaded are reused and files we download are
 * found by them:
 *
 *   <cache>/models--<org>--<name>/refs/<branch>              commit hash, no trailing newline
 *   <cache>/models--<org>--<name>/blobs/<sha256>             the bytes, named by their LFS oid
 *   <cache>/models--<org>--<name>/blobs/<sha256>.incomplete  a transfer in progress (never trusted)
 *   <cache>/models--<org>--<name>/snapshots/<commit>/<path>  relative symlink to ../../blobs/<sha256>
 */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface CachedFile {
  /** The snapshot path (usually a symlink into blobs/). */
  readonly path: string;
  readonly commit: string;
  /** The blob's name when the snapshot entry links to one: the sha256 the hub reported. */
  readonly blobSha256?: string;
}

export class HfCache {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  repoFolder(repo: string): string {
    return path.join(this.root, `models--${repo.split('/').join('--')}`);
  }

  blobPath(repo: string, sha256: string): string {
    return path.join(this.repoFolder(repo), 'blobs', sha256);
  }

  incompletePath(repo: string, sha256: string): string {
    return `${this.blobPath(repo, sha256)}.incomplete`;
  }

  snapshotPath(repo: string, commit: string, filePath: string): string {
    return path.join(this.repoFolder(repo), 'snapshots', commit, ...filePath.split('/'));
  }

  /** The commit a branch or tag points to, as the last download recorded it; a commit hash is its own answer. */
  async commitFor(repo: string, revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = (await readFile(path.join(this.repoFolder(repo), 'refs', ...revision.split('/')), 'utf8')).trim();
      return COMMIT_HASH.test(commit) ? commit : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** The cached file for `revision`, only if its snapshot entry resolves to an existing regular file. */
  async find(repo: string, revision: string, filePath: string): Promise<CachedFile | undefined> {
    const commit = await this.commitFor(repo, revision);
    if (commit === undefined) return undefined;
    const snapshot = this.snapshotPath(repo, commit, filePath);
    try {
      if (!(await stat(snapshot)).isFile()) return undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    return { path: snapshot, commit, blobSha256: await this.#linkedBlob(snapshot) };
  }

  /**
   * The file in any snapshot whose blob is `sha256`: the same bytes cached for another commit, e.g.
   * by a tool that downloaded `main` when we pin an older commit of an unchanged file.
   */
  async findBlobInSnapshots(repo: string, filePath: string, sha256: string): Promise<CachedFile | undefined> {
    let commits: string[];
    try {
      commits = (await readdir(path.join(this.repoFolder(repo), 'snapshots'))).filter((name) => COMMIT_HASH.test(name));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    for (const commit of commits) {
      const snapshot = this.snapshotPath(repo, commit, filePath);
      if ((await this.#linkedBlob(snapshot)) === sha256 && (await this.hasBlob(repo, sha256))) {
        return { path: snapshot, commit, blobSha256: sha256 };
      }
    }
    return undefined;
  }

  async #linkedBlob(snapshot: string): Promise<string | undefined> {
    try {
      const name = path.basename(await readlink(snapshot));
      return SHA256_HEX.test(name) ? name : undefined;
    } catch {
      // Not a symlink: Python copies files into snapshots/ where symlinks are unavailable (Windows).
      return undefined;
    }
  }

  async hasBlob(repo: string, sha256: string): Promise<boolean> {
    return (await statFile(this.blobPath(repo, sha256))) !== undefined;
  }

  /**
   * Makes a verified blob visible under `snapshots/<commit>/<path>` and points `refs/<revision>` at
   * the commit, the two things Python's offline lookup reads. Both are replaced atomically.
   */
  async publish(repo: string, revision: string, commit: string, filePath: string, sha256: string): Promise<string> {
    const blob = this.blobPath(repo, sha256);
    const snapshot = this.snapshotPath(repo, commit, filePath);
    await mkdir(path.dirname(snapshot), { recursive: true });
    const staging = `${snapshot}.${process.pid}.tmp`;
    await rm(staging, { force: true });
    try {
      await symlink(path.relative(path.dirname(snapshot), blob), staging);
    } catch {
      await copyFile(blob, staging);
    }
    await rename(staging, snapshot);
    if (revision !== commit) await this.#writeRef(repo, revision, commit);
    return snapshot;
  }

  async #writeRef(repo: string, revision: string, commit: string): Promise<void> {
    const ref = path.join(this.repoFolder(repo), 'refs', ...revision.split('/'));
    await mkdir(path.dirname(ref), { recursive: true });
    await writeFileAtomically(ref, commit);
  }
}

/** The stats of a regular file, or undefined when there is none at that path. */
export async function statFile(file: string): Promise<Stats | undefined> {
  try {
    const stats = await stat(file);
    return stats.isFile() ? stats : undefined;
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
