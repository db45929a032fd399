import { type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { BridgeError } from '../errors.ts';
import type { FamilyName } from '../families.ts';
import type { NetworkEntry, NetworkKind } from '../catalogue.ts';
import { formatBytes } from '../console-log.ts';
import type { ProgressReporter } from './download-progress.ts';
import { sha256OfFile } from './file-digest.ts';
import { HfCache, statFile } from './hf-cache.ts';
import { type HubAccess, type HubFile, describeHubFile, transferBlob } from './hub-download.ts';
import { type FailureContext, failureReason, hubFailure, isTransient } from './hub-failure.ts';
import { FolderNames, findLocalFile } from './local-files.ts';
import type { ModelSpec } from './registry.ts';
import { comfyUiFolders, DEFAULT_HUB_URL, type ModelStoreOptions, type ResolvedStoreOptions, resolveStoreOptions } from './store-options.ts';
import { type RecordContent, type TrustedDigest, trustedDigest, VerificationRecord, verifiedEntry } from './verification-record.ts';

export type { ModelStoreOptions } from './store-options.ts';

/** Where the engine gets weight files from. */
export interface ModelSource {
  /** Path of a complete, verified local file for the network's weights; throws `model_unavailable` saying how to get it. */
  resolve(network: NetworkEntry): Promise<string>;
  /** The name of the network's weight file, as a user would save it. */
  fileName(network: NetworkEntry): string;
}

/** Where a present file was found: a path the user gave, a models folder (or a ComfyUI install's), or the Hugging Face cache. */
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

/** The sha256 a model's file must have, and what says so. */
interface Reference {
  readonly sha256: string;
  /** In words, for messages, e.g. "the sha256 latent-bridge pins". */
  readonly origin: string;
  /** The first-use record, when that is what says so. */
  readonly trusted?: TrustedDigest;
}

/** What one lookup reads once and shares between the models it asks about. */
interface Lookup {
  readonly record: RecordContent;
  readonly folders: FolderNames;
}

/** What `forgetTrusted` did for one model. */
export interface ForgetResult {
  readonly spec: ModelSpec;
  /** The first-use sha256 that was dropped, if one was recorded. */
  readonly forgotten?: TrustedDigest;
  /** The registry pins this file's sha256: there is nothing to forget. */
  readonly pinned: boolean;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Finds, downloads and verifies the weight files. Lookup order: a path given for the model, the
 * models folders (flat or under `v4.0/`, then by the names other tools use), the folders of a
 * ComfyUI install, the Hugging Face cache shared with Python tools, then a download from the hub
 * into that cache unless offline. Concurrent requests for one model share one lookup and one
 * download. A download must match the sha256 the registry pins, or else the one its first
 * verified download had.
 */
export class ModelStore implements ModelSource {
  readonly options: ResolvedStoreOptions;
  /** Where files the user keeps are looked for: the models folders, then those of the ComfyUI install. */
  readonly localDirs: readonly string[];
  readonly #cache: HfCache;
  readonly #record: VerificationRecord;
  readonly #pending = new Map<string, Promise<string>>();
  readonly #stop = new AbortController();
  #listing: Promise<ModelStatus[]> | undefined;
  #nextListing: Promise<ModelStatus[]> | undefined;

  constructor(options: ModelStoreOptions) {
    this.options = resolveStoreOptions(options);
    this.localDirs = [...this.options.modelDirs, ...(this.options.comfyUiDir !== undefined ? comfyUiFolders(this.options.comfyUiDir) : [])];
    this.#cache = new HfCache(this.options.cacheDir);
    this.#record = new VerificationRecord(this.options.stateDir);
  }

  get #access(): HubAccess {
    return { hubUrl: this.options.hubUrl, token: this.options.token, signal: this.#stop.signal };
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

  async #lookup(): Promise<Lookup> {
    return { record: await this.#record.read(), folders: new FolderNames() };
  }

  /** The sha256 the registry pins for the model's file, else the one its first verified download had. */
  #reference(spec: ModelSpec, record: RecordContent): Reference | undefined {
    if (spec.sha256 !== undefined) return { sha256: spec.sha256, origin: 'the sha256 latent-bridge pins' };
    const trusted = trustedDigest(record, spec);
    if (trusted === undefined) return undefined;
    return { sha256: trusted.sha256, origin: `the sha256 of its first verified download (${trusted.trustedAt.slice(0, 10)}, from ${trusted.hubUrl})`, trusted };
  }

  /** What a present file must hash to: the reference, else for a cache file the sha256 its blob is named by. */
  #expected(spec: ModelSpec, found: Location, record: RecordContent): Reference | undefined {
    return this.#reference(spec, record) ?? (found.blobSha256 !== undefined ? { sha256: found.blobSha256, origin: 'the sha256 its cache blob is named by' } : undefined);
  }

  async #locate(spec: ModelSpec, lookup: Lookup): Promise<Location | undefined> {
    const given = this.options.explicitPaths[spec.name];
    if (given !== undefined) {
      const stats = await statFile(given);
      if (stats === undefined) {
        throw new BridgeError('model_unavailable', `the weight file given for ${spec.name} does not exist: ${given}`);
      }
      return { path: given, source: 'path', stats };
    }
    const local = await findLocalFile(spec, this.localDirs, lookup.folders);
    if (local !== undefined) return { ...local, source: 'models' };
    // The same bytes cached for another commit count too, e.g. a file a tool downloaded from `main` when we pin an older commit.
    const wanted = this.#reference(spec, lookup.record)?.sha256;
    let cached = await this.#cache.find(spec.repo, spec.revision, spec.path);
    if (wanted !== undefined && cached?.blobSha256 !== wanted) cached = (await this.#cache.findBlobInSnapshots(spec.repo, spec.path, wanted)) ?? cached;
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
    const lookup = await this.#lookup();
    const found = await this.#locate(spec, lookup);
    if (found !== undefined && found.source !== 'hf-cache') return found.path;
    const rejected = found === undefined ? undefined : await this.#rejectedCacheFile(spec, found, lookup.record);
    if (found !== undefined && rejected === undefined) return found.path;
    if (this.options.offline) {
      throw new BridgeError(
        'model_unavailable',
        `${rejected !== undefined ? `${rejected}, and downloads are off` : `${spec.name} is not on disk and downloads are off`} (--offline or HF_HUB_OFFLINE=1): ` +
          `run \`latent-bridge models pull ${spec.name}\` with network access, ${this.#manualFix(spec)}`,
      );
    }
    if (rejected !== undefined) this.options.logger(`${rejected}; downloading it again`);
    return this.#download(spec);
  }

  /**
   * Why a cache file must not be used (its bytes are damaged, or another version than the
   * reference), or undefined when it is fine. It is hashed once and remembered while unchanged.
   */
  async #rejectedCacheFile(spec: ModelSpec, found: Location, record: RecordContent): Promise<string | undefined> {
    const expected = this.#expected(spec, found, record);
    if (expected === undefined || verifiedEntry(record, found.path, found.stats)?.sha256 === expected.sha256) return undefined;
    const actual = await sha256OfFile(found.path);
    if (actual === expected.sha256) {
      await this.#remember(spec.name, found.path, actual, found.stats);
      return undefined;
    }
    return `${spec.name}: the cached copy at ${found.path} was rejected: its sha256 is ${actual}, not ${expected.origin} (${expected.sha256})`;
  }

  async #remember(model: string, file: string, sha256: string, stats: Stats): Promise<void> {
    try {
      await this.#record.noteVerified(model, file, sha256, stats);
    } catch (error) {
      this.options.logger(`could not record the verification of ${file} in ${this.#record.file}: ${String(error)}`);
    }
  }

  /** Trust on first use: the first verified download of a file the registry pins no sha256 for sets the one later downloads must have. */
  async #trustFirstUse(spec: ModelSpec, file: HubFile): Promise<void> {
    try {
      await this.#record.trustFirstUse({
        model: spec.name,
        sha256: file.sha256,
        size: file.size,
        repo: spec.repo,
        revision: spec.revision,
        path: spec.path,
        hubUrl: this.options.hubUrl,
        commit: file.commit,
        trustedAt: new Date().toISOString(),
      });
    } catch (error) {
      this.options.logger(`could not record the sha256 of ${spec.name} in ${this.#record.file}, so later downloads are not held to it: ${String(error)}`);
    }
  }

  #failureContext(spec: ModelSpec): FailureContext {
    return { spec, hubUrl: this.options.hubUrl, cacheDir: this.options.cacheDir, tokenGiven: this.options.token !== undefined };
  }

  /** Refuses, before any byte is transferred, a file the hub reports with another sha256 than the pinned or first-use one. */
  #holdToReference(spec: ModelSpec, file: HubFile, record: RecordContent): void {
    const reference = this.#reference(spec, record);
    if (reference === undefined || reference.sha256 === file.sha256) return;
    const fix =
      reference.trusted !== undefined
        ? `A mirror (HF_ENDPOINT) may serve another file, or the file changed upstream; if you know the new file is right, run \`latent-bridge models forget ${spec.name}\` (it edits ${this.#record.file}) and download again`
        : `The hub or a mirror set with HF_ENDPOINT serves another file than the one latent-bridge pins: use ${DEFAULT_HUB_URL} (unset HF_ENDPOINT), or put the right file into ${this.manualTarget(spec)}`;
    throw new BridgeError(
      'model_unavailable',
      `cannot download ${spec.name}: ${this.options.hubUrl} reports sha256 ${file.sha256} for ${spec.repo}/${spec.path} at ${spec.revision}, ` +
        `but ${reference.origin} is ${reference.sha256}; nothing was downloaded. ${fix}`,
    );
  }

  async #download(spec: ModelSpec): Promise<string> {
    const access = this.#access;
    if (access.signal.aborted) throw new BridgeError('model_unavailable', `${spec.name} is not on disk and latent-bridge is stopping: no new downloads`);
    const started = performance.now();
    let file: HubFile | undefined;
    try {
      file = await describeHubFile(spec, access);
      this.#holdToReference(spec, file, await this.#record.read());
      const received = await this.#fetchBlob(spec, file, access);
      const snapshot = await this.#cache.publish(spec.repo, spec.revision, file.commit, spec.path, file.sha256);
      await this.#remember(spec.name, snapshot, file.sha256, await stat(snapshot));
      if (spec.sha256 === undefined) await this.#trustFirstUse(spec, file);
      if (received !== undefined) {
        const elapsed = performance.now() - started;
        this.options.logger(`downloaded ${spec.name}: ${formatBytes(file.size)} in ${seconds(elapsed)} (${formatBytes(received / Math.max(elapsed / 1000, 0.001))}/s)`);
      }
      return snapshot;
    } catch (error) {
      if (access.signal.aborted) throw await this.#cancelled(spec, file);
      const failure = hubFailure(error, this.#failureContext(spec), this.#manualFix(spec));
      this.options.logger(`download of ${spec.name} failed after ${seconds(performance.now() - started)}: ${failure instanceof Error ? failure.message : String(failure)}`);
      throw failure;
    }
  }

  /**
   * Brings the file's blob into the cache, retrying dropped connections (each try resumes).
   * Returns the bytes received, or undefined when an intact blob was there already.
   */
  async #fetchBlob(spec: ModelSpec, file: HubFile, access: HubAccess): Promise<number | undefined> {
    const blob = this.#cache.blobPath(spec.repo, file.sha256);
    if ((await this.#cache.hasBlob(spec.repo, file.sha256)) && (await sha256OfFile(blob)) === file.sha256) return undefined;
    let received = 0;
    let announced = false;
    const progress: ProgressReporter = {
      start: (transfer) => {
        if (!announced) {
          announced = true;
          const resumed = transfer.resumedFrom > 0 ? `, resuming at ${formatBytes(transfer.resumedFrom)}` : '';
          this.options.logger(`downloading ${spec.name}: ${formatBytes(transfer.total)} from ${this.options.hubUrl}${resumed}`);
        }
        const bar = this.options.progress.start(transfer);
        return {
          advance: (bytes) => {
            received += bytes;
            bar.advance(bytes);
          },
          end: (outcome) => bar.end(outcome),
        };
      },
    };
    for (let attempt = 1; ; attempt += 1) {
      try {
        await transferBlob(spec, file, access, this.#cache, progress);
        return received;
      } catch (error) {
        // A cancelled try fails with an AbortError, which is no reason to try again.
        if (attempt >= this.options.downloadAttempts || !isTransient(error)) throw error;
        this.options.logger(`${spec.name}: the transfer broke off (${error instanceof Error ? error.message : String(error)}); resuming, try ${attempt + 1} of ${this.options.downloadAttempts}`);
      }
    }
  }

  /** Says what a cancelled download leaves behind, through the logger and in the error for whoever waited for it. */
  async #cancelled(spec: ModelSpec, file: HubFile | undefined): Promise<BridgeError> {
    let line = `cancelled the download of ${spec.name} before the hub answered`;
    if (file !== undefined) {
      const partial = this.#cache.incompletePath(spec.repo, file.sha256);
      const kept = (await statFile(partial))?.size ?? 0;
      line =
        kept > 0
          ? `cancelled the download of ${spec.name} at ${formatBytes(kept)} of ${formatBytes(file.size)}; the partial file ${partial} is kept to resume`
          : `cancelled the download of ${spec.name} before any of its ${formatBytes(file.size)} arrived`;
    }
    this.options.logger(line);
    return new BridgeError('model_unavailable', `${spec.name} is not available: latent-bridge is stopping and ${line}`);
  }

  /**
   * Cancels every download in flight and refuses new ones; resolves once they have stopped, each
   * reported through the logger. Their `.incomplete` files stay, for a later run to resume.
   */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#pending.values()]);
  }

  #statusBase(spec: ModelSpec): Pick<ModelStatus, 'name' | 'kind' | 'from' | 'to' | 'factor'> {
    return { name: spec.name, kind: spec.kind, from: spec.from, to: spec.to, factor: spec.factor };
  }

  #missingReason(spec: ModelSpec): string {
    return this.options.offline
      ? `not on disk; offline: ${this.#manualFix(spec).replace(/^or /, '')}`
      : `not downloaded yet: run \`latent-bridge models pull ${spec.name}\``;
  }

  async #status(spec: ModelSpec, lookup: Lookup): Promise<ModelStatus> {
    let found: Location | undefined;
    try {
      found = await this.#locate(spec, lookup);
    } catch (error) {
      if (!(error instanceof BridgeError)) throw error;
      return { ...this.#statusBase(spec), present: false, verified: false, source: 'path', reason: error.message };
    }
    if (found === undefined) return { ...this.#statusBase(spec), present: false, verified: false, reason: this.#missingReason(spec) };
    const entry = verifiedEntry(lookup.record, found.path, found.stats);
    const expected = this.#expected(spec, found, lookup.record);
    const verified = entry !== undefined && (expected === undefined || entry.sha256 === expected.sha256);
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

  /**
   * Every known model, present or not, from what is on disk and in the record; no network. A call
   * made while a listing is under way is answered by the next one, which starts when that one ends
   * and serves every call made meanwhile: a burst of calls costs two listings, and every answer
   * still shows the disk as it was after its call. Callers of one listing share its statuses:
   * never modify them.
   */
  list(): Promise<ModelStatus[]> {
    if (this.#listing === undefined) return this.#startListing();
    this.#nextListing ??= this.#listing
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        this.#nextListing = undefined;
        return this.#startListing();
      });
    return this.#nextListing;
  }

  #startListing(): Promise<ModelStatus[]> {
    const listing = this.#lookup().then((lookup) => Promise.all(this.options.registry.map((spec) => this.#status(spec, lookup))));
    this.#listing = listing;
    const done = (): void => {
      if (this.#listing === listing) this.#listing = undefined;
    };
    listing.then(done, done);
    return listing;
  }

  /** Makes the models available (downloading what is missing) and reports where each one is. */
  async pull(specs: readonly ModelSpec[]): Promise<ModelStatus[]> {
    const statuses: ModelStatus[] = [];
    for (const spec of specs) {
      await this.resolve(spec);
      statuses.push(await this.#status(spec, await this.#lookup()));
    }
    return statuses;
  }

  /** The hub's sha256 for the file now, as the reference of last resort, or why there is none. */
  async #askHub(spec: ModelSpec): Promise<{ reference: Reference; file: HubFile } | { problem: string }> {
    if (this.options.offline) {
      return {
        problem:
          'latent-bridge pins no sha256 for this file, none was recorded at a verified download, and offline the hub cannot be asked; ' +
          `the file is used as it is: run \`latent-bridge models verify ${spec.name}\` with network access to check it`,
      };
    }
    try {
      const file = await describeHubFile(spec, this.#access);
      return { reference: { sha256: file.sha256, origin: `the sha256 ${this.options.hubUrl} reports` }, file };
    } catch (error) {
      const reason = failureReason(error, this.#failureContext(spec));
      if (reason === undefined) throw error;
      return { problem: `could not ask ${this.options.hubUrl} for its sha256, so the file is used as it is: ${reason}` };
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
    const lookup = await this.#lookup();
    const status = await this.#status(spec, lookup);
    const found = status.present ? await this.#locate(spec, lookup) : undefined;
    if (found === undefined) return { status, outcome: 'absent' };
    const { reason: _unchecked, ...present } = status;
    const known = this.#expected(spec, found, lookup.record);
    const asked = known === undefined ? await this.#askHub(spec) : { reference: known };
    if ('problem' in asked) return { status: { ...present, verified: false, reason: asked.problem }, outcome: 'unchecked' };
    const expected = asked.reference;
    const actual = await sha256OfFile(found.path);
    if (actual === expected.sha256) {
      await this.#remember(spec.name, found.path, actual, found.stats);
      if ('file' in asked) await this.#trustFirstUse(spec, asked.file);
      return { status: { ...present, verified: true }, outcome: 'verified' };
    }
    await this.#record.forget(found.path);
    const fix =
      found.source === 'hf-cache'
        ? `run \`latent-bridge models pull ${spec.name}\` to download it again`
        : `delete ${found.path} and run \`latent-bridge models pull ${spec.name}\``;
    const trustAnew =
      expected.trusted !== undefined ? `; if you know this file is right, run \`latent-bridge models forget ${spec.name}\` and verify it again with network access` : '';
    return {
      status: { ...present, verified: false, reason: `its sha256 is ${actual}, not ${expected.origin} (${expected.sha256}): the file is damaged or another version; ${fix}${trustAnew}` },
      outcome: 'mismatch',
    };
  }

  /** Drops the first-use sha256 recorded for each model's file, so that its next verified download is trusted anew. */
  async forgetTrusted(specs: readonly ModelSpec[]): Promise<ForgetResult[]> {
    const results: ForgetResult[] = [];
    for (const spec of specs) {
      results.push(spec.sha256 !== undefined ? { spec, pinned: true } : { spec, pinned: false, forgotten: await this.#record.forgetTrusted(spec) });
    }
    return results;
  }
}
