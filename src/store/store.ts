import { existsSync } from 'node:fs';
import path from 'node:path';
import { BridgeError } from '../errors.ts';
import type { ModelSpec } from './registry.ts';

/** Where the engine gets weight files from. */
export interface ModelSource {
  /** Path of a local, complete weight file for the model; throws `model_unavailable` when there is none. */
  resolve(spec: ModelSpec): Promise<string>;
}

export interface ModelStoreOptions {
  /** Folders searched in order, each flat or with the original `v4.0/` subfolder. */
  readonly modelDirs: readonly string[];
}

export class ModelStore implements ModelSource {
  readonly #options: ModelStoreOptions;

  constructor(options: ModelStoreOptions) {
    this.#options = options;
  }

  locate(spec: ModelSpec): string | undefined {
    for (const dir of this.#options.modelDirs) {
      for (const candidate of [path.join(dir, spec.fileName), path.join(dir, spec.path)]) {
        if (existsSync(candidate)) return candidate;
      }
    }
    return undefined;
  }

  async resolve(spec: ModelSpec): Promise<string> {
    const found = this.locate(spec);
    if (found !== undefined) return found;
    throw new BridgeError(
      'model_unavailable',
      `${spec.name} is not on disk: put ${spec.fileName} (from https://huggingface.co/${spec.repo}/blob/${spec.revision}/${spec.path}) into ${this.#options.modelDirs[0] ?? 'models/'}`,
    );
  }
}
