import { previewDecoderFor } from '../catalogue.ts';
import type { ConsoleLog } from '../console-log.ts';
import { BridgeError, errorCode } from '../errors.ts';
import type { FamilyName } from '../families.ts';
import { encodeJpeg, type EncodedImage } from '../image-encoding.ts';
import type { Latent } from '../latent.ts';
import type { PreviewOptions, RgbImage } from '../preview.ts';
import type { Metrics } from './metrics.ts';
import type { FairScheduler } from './scheduler.ts';

/** What the desk needs from the engine (src/engine.ts implements it). */
export interface PreviewDecoding {
  prepareDecoder(family: FamilyName): Promise<void>;
  decodePreview(latent: Latent, options: PreviewOptions): Promise<RgbImage>;
}

/** A TAESD picture of one step of a job. */
export interface TaesdPicture {
  readonly job: string;
  readonly step: number | null;
  readonly image: EncodedImage;
}

export interface TaesdOrder {
  readonly owner: number;
  readonly job: string;
  readonly latent: Latent;
  readonly step?: number;
  readonly index: number;
  readonly grid: boolean;
  /** Called with the picture once it is made; not called for a step a newer one replaced. */
  readonly deliver: (picture: TaesdPicture) => void;
  /** Called once per job when its family's decoder cannot be had (its weights are missing, say). */
  readonly unavailable: (error: BridgeError) => void;
}

export interface TaesdDeskOptions {
  /** Jobs with a decode running or waiting, over all connections; more are not decoded. */
  readonly maxJobs: number;
  /** After a decoder could not be loaded, how long before it is tried again. */
  readonly retryMs: number;
}

interface JobState {
  /** The newest step that came while a decode ran; it runs next, older ones never do. */
  pending: TaesdOrder | undefined;
}

/**
 * TAESD pictures beside the linear previews, newest step wins: per job at most one decode runs,
 * and when it ends the newest step that came meanwhile is decoded next (never a queue of them).
 * Decodes run in the scheduler's background lane, so requests wait at most for one of them.
 */
export class TaesdDesk {
  readonly #engine: PreviewDecoding;
  readonly #scheduler: FairScheduler;
  readonly #metrics: Metrics;
  readonly #log: ConsoleLog;
  readonly #options: TaesdDeskOptions;
  /** Jobs with a decode running, by `owner/job`. */
  readonly #jobs = new Map<string, JobState>();
  /** Families whose decoder could not be loaded, and since when. */
  readonly #missing = new Map<FamilyName, { readonly since: number; readonly error: BridgeError }>();
  /** Jobs already told that their decoder is missing, so that a job is told once, not every step. */
  readonly #told = new Set<string>();

  constructor(engine: PreviewDecoding, scheduler: FairScheduler, metrics: Metrics, log: ConsoleLog, options: TaesdDeskOptions) {
    this.#engine = engine;
    this.#scheduler = scheduler;
    this.#metrics = metrics;
    this.#log = log;
    this.#options = options;
  }

  /** Jobs with a decode running (each may have one more step waiting). */
  get activeJobs(): number {
    return this.#jobs.size;
  }

  submit(order: TaesdOrder): void {
    const family = order.latent.family;
    if (previewDecoderFor(family) === undefined) return;
    const key = `${order.owner}/${order.job}`;
    const state = this.#jobs.get(key);
    const missing = this.#missing.get(family);
    if (missing !== undefined && Date.now() - missing.since < this.#options.retryMs) {
      this.#tell(key, order, missing.error);
      return;
    }
    if (state !== undefined) {
      if (state.pending !== undefined) this.#metrics.taesd('superseded');
      state.pending = order;
      return;
    }
    if (this.#jobs.size >= this.#options.maxJobs) {
      this.#metrics.taesd('skipped');
      return;
    }
    this.#jobs.set(key, { pending: undefined });
    void this.#run(key, order);
  }

  /** Forgets the waiting steps of a closed connection; a decode running for it just ends. */
  dropOwner(owner: number): void {
    for (const [key, state] of this.#jobs) if (key.startsWith(`${owner}/`)) state.pending = undefined;
    for (const key of this.#told) if (key.startsWith(`${owner}/`)) this.#told.delete(key);
  }

  #tell(key: string, order: TaesdOrder, error: BridgeError): void {
    if (this.#told.has(key)) return;
    // Bounded: should it fill up, a job may be told twice, which is harmless.
    if (this.#told.size >= 4 * this.#options.maxJobs) this.#told.clear();
    this.#told.add(key);
    order.unavailable(error);
  }

  async #run(key: string, order: TaesdOrder): Promise<void> {
    let next: TaesdOrder | undefined = order;
    while (next !== undefined) {
      await this.#decode(key, next);
      const state = this.#jobs.get(key) as JobState;
      next = state.pending;
      state.pending = undefined;
    }
    this.#jobs.delete(key);
  }

  async #decode(key: string, order: TaesdOrder): Promise<void> {
    const family = order.latent.family;
    try {
      // Loading (maybe downloading) the decoder happens outside the compute slot, like a request's networks.
      await this.#engine.prepareDecoder(family);
      this.#missing.delete(family);
      const image = await this.#scheduler.submitBackground(() => this.#engine.decodePreview(order.latent, { index: order.index, grid: order.grid }));
      const picture = { job: order.job, step: order.step ?? null, image: await encodeJpeg(image) };
      this.#metrics.taesd('decoded');
      order.deliver(picture);
    } catch (error) {
      this.#failed(key, order, error);
    }
  }

  #failed(key: string, order: TaesdOrder, error: unknown): void {
    this.#metrics.taesd('failed');
    const family = order.latent.family;
    if (error instanceof BridgeError && (error.code === 'model_unavailable' || error.code === 'bad_weights')) {
      if (!this.#missing.has(family)) this.#log.warn(`TAESD previews of ${family} latents fall back to the linear ones: ${error.message}`);
      this.#missing.set(family, { since: Date.now(), error });
      this.#tell(key, order, error);
      return;
    }
    // Shutting down, or a decode that broke: the linear previews go on either way.
    if (errorCode(error) === 'internal') this.#log.warn(`a TAESD preview of ${order.job} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}
