import type { Stats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { statFile } from './hf-cache.ts';
import type { WeightSource } from './registry.ts';

/** A weight file found in a folder the user keeps files in. */
export interface LocalFile {
  readonly path: string;
  readonly stats: Stats;
}

/**
 * The names in each folder, read at most once per lookup: a `models` listing asks about every
 * model, and several may match by prefix in the same folders.
 */
export class FolderNames {
  readonly #names = new Map<string, Promise<readonly string[]>>();

  /**
   * In character order, as ComfyUI's `sorted()` listing has them (the two differ only beyond the
   * Basic Multilingual Plane); libuv sorts on Unix already, but not on Windows, where NTFS lists
   * names case-insensitively. Empty when the folder is missing.
   */
  of(dir: string): Promise<readonly string[]> {
    let names = this.#names.get(dir);
    if (names === undefined) {
      names = readdir(dir).then(
        (entries) => entries.sort(),
        () => [],
      );
      this.#names.set(dir, names);
    }
    return names;
  }
}

/** The first name in sorted order, of those that are regular files, that ComfyUI would take for `prefix`. */
async function byPrefix(dir: string, prefix: string, folders: FolderNames): Promise<LocalFile | undefined> {
  for (const name of await folders.of(dir)) {
    if (!name.startsWith(prefix) || !name.endsWith('.safetensors')) continue;
    const file = path.join(dir, name);
    const stats = await statFile(file);
    if (stats !== undefined) return { path: file, stats };
  }
  return undefined;
}

/**
 * The weight file in the first of `dirs` that has one: under its own name, flat or at its path in
 * the hub repository (city96's nodes allow `v4.0/<file>`), else under a name another tool gives it
 * (`localPrefixes`).
 */
export async function findLocalFile(source: WeightSource, dirs: readonly string[], folders: FolderNames): Promise<LocalFile | undefined> {
  for (const dir of dirs) {
    for (const candidate of new Set([path.join(dir, source.fileName), path.join(dir, ...source.path.split('/'))])) {
      const stats = await statFile(candidate);
      if (stats !== undefined) return { path: candidate, stats };
    }
    for (const prefix of source.localPrefixes ?? []) {
      const found = await byPrefix(dir, prefix, folders);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
