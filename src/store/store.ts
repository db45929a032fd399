import { type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { BridgeError } from '../errors.ts';
import type { FamilyName } from '../families.ts';
import { sha256OfFile } from './file-digest.ts';
import { HfCache, statFile } from './hf-cache.ts';
import { type HubAccess, type HubFile, describeHubFile, transferBlob } from './hub-download.ts';
import { type FailureContext, hubFailure, isTransient } from './hub-failure.ts';
import type { NetworkEntry, NetworkKind } from '../catalogue.ts';
import type { ModelSpec } from './registry.ts';
import { type ModelStoreOptions, type ResolvedStoreOptions, resolveStoreOptions } from './store-options.ts';
import { VerificationRecord } from './verification-record.ts';

export type { ModelStoreOptions } from './store-options.ts';

/** Where the engine gets weight files from. */
export interface ModelSource {
  /** Path of a complete, verified local file for the network's weights; throws `model_unavailable` saying how to get it. */
  resolve(network: NetworkEntry): Promise<string>;
  /** The name of the network's weight file, as a user would save it. */
  fileName(network: NetworkEntry): string;
}

/** Where a present file was found: a path the user gave, a models folder, or the Hugging Face cache. */
export type ModelLocationKind = 'path' | 'models' | 'hf-cache';

/** One model as `models list` and the server's `models` op report it (plain JSON data). */
export interface ModelStatus {
  name: string;
  kind: NetworkKind;
  from: FamilyName;
  to: FamilyName;
  factor: number;
  present: boolean;
  path?: string;
  size?: number;
  verified: boolean;
  source?: ModelLocationKind;
  /** Why it is missing or unverified, with what to do about it. */
  reason?: string;
}

/** What `models verify` found for one model. */
export interface VerifyResult {
  status: ModelStatus;
  outcome: 'verified' | 'mismatch' | 'unchecked' | 'absent';
}

interface Location {
  readonly path: string;
  readonly source: ModelLocationKind;
  readonly stats: Stats;
  /** The sha256 the file must have when the cache names its blob by it. */
  readonly blobSha256?: string;
}

/**
 * Finds, downloads and verifies the weight files. Lookup order: a path given for the model, the
 * models folders (flat or under `v4.0/`), the Hugging Face cache shared with Python tools, then a
 * download from the hub into that cache unless offline. Concurrent requests for one model share
 * one lookup and one download.
 */
export class ModelStore implements ModelSource {
  readonly options: ResolvedStoreOptions;
  readonly #cache: HfCache;
  readonly #record: VerificationRecord;
  readonly #pending = new Map<string, Promise<string>>();

  constructor(options: ModelStoreOptions) {
    this.options = resolveStoreOptions(options);
    this.#cache = new HfCache(this.options.cacheDir);
    this.#record = new VerificationRecord(this.options.stateDir);
  }

  get #access(): HubAccess {
    return { hubUrl: this.options.hubUrl, token: this.options.token };
  }

  /** Where the user can drop a file by hand: the first models folder. */
  manualTarget(spec: ModelSpec): string {
    return path.join(this.options.modelDirs[0] ?? '.', spec.fileName);
  }

  #downloadUrl(spec: ModelSpec): string {
    return `${this.options.hubUrl}/${spec.repo}/resolve/${spec.revision}/${spec.path}`;
  }

  #manualFix(spec: ModelSpec): string {
    return `or download ${this.#downloadUrl(spec)} and save it as ${this.manualTarget(spec)}`;
  }

  async #locate(spec: ModelSpec): Promise<Location | undefined> {
    const given = this.options.explicitPaths[spec.name];
    if (given !== undefined) {
      const stats = await statFile(given);
      if (stats === undefined) {
        throw new BridgeError('model_unavailable', `the weight file given for ${spec.name} does not exist: ${given}`);
      }
      return { path: given, source: 'path', stats };
    }
    for (const dir of this.options.modelDirs) {
      for (const candidate of new Set([path.join(dir, spec.fileName), path.join(dir, ...spec.path.split('/'))])) {
        const stats = await statFile(candidate);
        if (stats !== undefined) return { path: candidate, source: 'models', stats };
      }
    }
    const knownSha256 = spec.sha256 ?? (await this.#record.digestFor(spec.name))?.sha256;
    const cached =
      (await this.#cache.find(spec.repo, spec.revision, spec.path)) ??
      (knownSha256 !== undefined ? await this.#cache.findBlobInSnapshots(spec.repo, spec.path, knownSha256) : undefined);
    if (cached === undefined) return undefined;
    const stats = await statFile(cached.path);
    return stats === undefined ? undefined : { path: cached.path, source: 'hf-cache', stats, blobSha256: cached.blobSha256 };
  }

  /** Where the network's weights come from, in this store's registry. */
  #spec(network: NetworkEntry): ModelSpec {
    const spec = this.options.registry.find((candidate) => candidate.name === network.name);
    if (spec === undefined) throw new BridgeError('model_unavailable', `no weight file is known for ${network.name}`);
    return spec;
  }

  fileName(network: NetworkEntry): string {
    return this.#spec(network).fileName;
  }

  async resolve(network: NetworkEntry): Promise<string> {
    const spec = this.#spec(network);
    const pending = this.#pending.get(spec.name);
    if (pending !== undefined) return pending;
    const lookup = this.#resolveOnce(spec).finally(() => this.#pending.delete(spec.name));
    this.#pending.set(spec.name, lookup);
    return lookup;
  }

  async #resolveOnce(spec: ModelSpec): Promise<string> {
    const found = await this.#locate(spec);
    if (found !== undefined && (found.source !== 'hf-cache' || (await this.#cachedFileIsIntact(spec, found)))) return found.path;
    if (this.options.offline) {
      const damaged = found !== undefined ? ` (the cached copy at ${found.path} does not match its sha256)` : '';
      throw new BridgeError(
        'model_unavailable',
        `${spec.name} is not on disk${damaged} and downloads are off (--offline or HF_HUB_OFFLINE=1): ` +
          `run \`latent-bridge models pull ${spec.name}\` with network access, ${this.#manualFix(spec)}`,
      );
    }
    return this.#download(spec);
  }

  /** A cache blob is named by its sha256; hash it once and remember, so a damaged copy is never used. */
  async #cachedFileIsIntact(spec: ModelSpec, found: Location): Promise<boolean> {
    if ((await this.#record.verifiedEntry(found.path, found.stats)) !== undefined) return true;
    const expected = found.blobSha256 ?? (await this.#record.digestFor(spec.name))?.sha256;
    if (expected === undefined) return true;
    const actual = await sha256OfFile(found.path);
    if (actual !== expected) return false;
    await this.#remember(spec.name, found.path, actual, found.stats);
    return true;
  }

  async #remember(model: string, file: string, sha256: string, stats: Stats): Promise<void> {
    try {
      await this.#record.noteVerified(model, file, sha256, stats);
    } catch (error) {
      process.emitWarning(`latent-bridge could not record the verification in ${this.#record.file}: ${String(error)}`);
    }
  }

  #failureContext(spec: ModelSpec): FailureContext {
    return {
      spec,
      hubUrl: this.options.hubUrl,
      cacheDir: this.options.cacheDir,
      tokenGiven: this.options.token !== undefined,
      alternative: this.#manualFix(spec),
    };
  }

  async #describe(spec: ModelSpec): Promise<HubFile> {
    const file = await describeHubFile(spec, this.#access);
    try {
      await this.#record.noteDigest(spec.name, { ...file, repo: spec.repo, path: spec.path });
    } catch (error) {
      process.emitWarning(`latent-bridge could not record the hub's sha256 in ${this.#record.file}: ${String(error)}`);
    }
    return file;
  }

  async #download(spec: ModelSpec): Promise<string> {
    try {
      const file = await this.#describe(spec);
      const blob = this.#cache.blobPath(spec.repo, file.sha256);
      if (!(await this.#cache.hasBlob(spec.repo, file.sha256)) || (await sha256OfFile(blob)) !== file.sha256) {
        for (let attempt = 1; ; attempt += 1) {
          try {
            await transferBlob(spec, file, this.#access, this.#cache, this.options.progress);
            break;
          } catch (error) {
            if (attempt >= this.options.downloadAttempts || !isTransient(error)) throw error;
          }
        }
      }
      const snapshot = await this.#cache.publish(spec.repo, spec.revision, file.commit, spec.path, file.sha256);
      await this.#remember(spec.name, snapshot, file.sha256, await stat(snapshot));
      return snapshot;
    } catch (error) {
      throw hubFailure(error, this.#failureContext(spec));
    }
  }

  #statusBase(spec: ModelSpec): Pick<ModelStatus, 'name' | 'kind' | 'from' | 'to' | 'factor'> {
    return { name: spec.name, kind: spec.kind, from: spec.from, to: spec.to, factor: spec.factor };
  }

  #missingReason(spec: ModelSpec): string {
    return this.options.offline
      ? `not on disk; offline: ${this.#manualFix(spec).replace(/^or /, '')}`
      : `not downloaded yet: run \`latent-bridge models pull ${spec.name}\``;
  }

  async #status(spec: ModelSpec): Promise<ModelStatus> {
    let found: Location | undefined;
    try {
      found = await this.#locate(spec);
    } catch (error) {
      if (!(error instanceof BridgeError)) throw error;
      return { ...this.#statusBase(spec), present: false, verified: false, source: 'path', reason: error.message };
    }
    if (found === undefined) return { ...this.#statusBase(spec), present: false, verified: false, reason: this.#missingReason(spec) };
    const entry = await this.#record.verifiedEntry(found.path, found.stats);
    const expected = found.blobSha256 ?? (await this.#record.digestFor(spec.name))?.sha256;
    const verified = entry !== undefined && (expected === undefined || entry.sha256 === expected);
    return {
      ...this.#statusBase(spec),
      present: true,
      path: found.path,
      size: found.stats.size,
      verified,
      source: found.source,
      ...(verified ? {} : { reason: 'not checked yet: run `latent-bridge models verify`' }),
    };
  }

  /** Every known model, present or not, from what is on disk and in the record; no network. */
  async list(): Promise<ModelStatus[]> {
    return Promise.all(this.options.registry.map((spec) => this.#status(spec)));
  }

  /** Makes the models available (downloading what is missing) and reports where each one is. */
  async pull(specs: readonly ModelSpec[]): Promise<ModelStatus[]> {
    const statuses: ModelStatus[] = [];
    for (const spec of specs) {
      await this.resolve(spec);
      statuses.push(await this.#status(spec));
    }
    return statuses;
  }

  /** The sha256 a file of this model must have: the cache's blob name, the recorded hub digest, or (online) the hub's answer. */
  async #expectedDigest(spec: ModelSpec, found: Location): Promise<{ sha256?: string; problem?: string }> {
    if (found.blobSha256 !== undefined) return { sha256: found.blobSha256 };
    const recorded = await this.#record.digestFor(spec.name);
    if (recorded !== undefined) return { sha256: recorded.sha256 };
    if (this.options.offline) return { problem: 'no reference sha256 known yet and offline: run `latent-bridge models verify` once with network access' };
    try {
      return { sha256: (await this.#describe(spec)).sha256 };
    } catch (error) {
      const failure = hubFailure(error, this.#failureContext(spec));
      if (failure instanceof BridgeError) return { problem: `could not ask the hub for the reference sha256: ${failure.message}` };
      throw failure;
    }
  }

  /** Re-hashes every present file against its reference sha256 and records the result. */
  async verify(specs: readonly ModelSpec[] = this.options.registry): Promise<VerifyResult[]> {
    const results: VerifyResult[] = [];
    for (const spec of specs) {
      results.push(await this.#verifyOne(spec));
    }
    return results;
  }

  async #verifyOne(spec: ModelSpec): Promise<VerifyResult> {
    const status = await this.#status(spec);
    const found = status.present ? await this.#locate(spec) : undefined;
    if (found === undefined) return { status, outcome: 'absent' };
    const { reason: _unchecked, ...present } = status;
    const expected = await this.#expectedDigest(spec, found);
    if (expected.sha256 === undefined) return { status: { ...present, verified: false, reason: expected.problem }, outcome: 'unchecked' };
    const actual = await sha256OfFile(found.path);
    if (actual === expected.sha256) {
      await this.#remember(spec.name, found.path, actual, found.stats);
      return { status: { ...present, verified: true }, outcome: 'verified' };
    }
    await this.#record.forget(found.path);
    const fix =
      found.source === 'hf-cache'
        ? `run \`latent-bridge models pull ${spec.name}\` to download it again`
        : `delete ${found.path} and run \`latent-bridge models pull ${spec.name}\``;
    return {
      status: { ...present, verified: false, reason: `sha256 is ${actual} but the hub's is ${expected.sha256}: the file is damaged or another version; ${fix}` },
      outcome: 'mismatch',
    };
  }
}
