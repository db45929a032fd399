import { FAMILIES, type FamilyName } from '../families.ts';
import type { RgbImage } from '../preview.ts';
import { encodeMessage } from '../protocol/codec.ts';
import type { JobOutcome, PreviewMeta } from '../protocol/messages.ts';
import type { EncodedImage } from '../image-encoding.ts';
import type { TaesdPicture } from './taesd-desk.ts';
import type { Metrics } from './metrics.ts';

/** How a job ended: as its client said, or `disconnected` / `stalled` when the client stopped saying anything. */
export type JobEnding = JobOutcome | 'disconnected' | 'stalled';

/** Characters of a prompt that viewers get: a card shows two lines of it. */
export const VIEWER_PROMPT_CHARS = 300;

/** What a viewer is told about a job, in every push and in the `watch` snapshot. */
export interface JobInfo {
  /** Unique per server: the sending connection and the client's job name. */
  readonly key: string;
  readonly job: string;
  readonly client: string;
  readonly family: FamilyName;
  readonly step: number | null;
  readonly total: number | null;
  /** Shape of the latent the preview was drawn from: [batch, channels, height, width]. */
  readonly shape: readonly number[];
  /** [height, width] in image pixels of the generation the latent decodes to. */
  readonly size: readonly [number, number];
  readonly state: 'running' | 'finished';
  /** Null while running. */
  readonly outcome: JobEnding | null;
  /** The client's words when it said the job failed. */
  readonly error: string | null;
  /** The generation the job shows, with the prompt shortened to VIEWER_PROMPT_CHARS. */
  readonly meta: PreviewMeta;
  /** Milliseconds since the Unix epoch when the job's first preview arrived, and that preview's step. */
  readonly started: number;
  readonly first_step: number | null;
  /** Milliseconds since the Unix epoch when the preview of `step` arrived. */
  readonly stepped: number;
  /** Milliseconds since the Unix epoch of the last preview or state change. */
  readonly updated: number;
}

export interface PublishedPreview {
  readonly owner: number;
  readonly client: string;
  readonly job: string;
  readonly family: FamilyName;
  readonly step?: number;
  readonly total?: number;
  readonly shape: readonly number[];
  readonly image: RgbImage;
  readonly meta?: PreviewMeta;
  /** Milliseconds since the Unix epoch when the preview arrived. */
  readonly received: number;
}

/** The part of a WebSocket the hub uses, so that a viewer is anything with a send buffer. */
export interface ViewerSocket {
  readonly bufferedAmount: number;
  send(data: Buffer, callback: (error?: Error) => void): void;
}

export interface ViewerHubOptions {
  /** Jobs kept (running and finished); the oldest finished job goes first. */
  readonly maxJobs: number;
  /** Bytes of images and metadata kept, over all jobs; the oldest finished job goes first. */
  readonly maxBytes: number;
  /** A running job with no preview for this long is shown as finished (its client stalled). */
  readonly idleMs: number;
  /** Bytes a viewer may have unsent before it is skipped; it gets the latest image once it catches up. */
  readonly maxViewerBuffer: number;
}

interface JobRecord {
  readonly owner: number;
  info: JobInfo;
  image: RgbImage;
  /** The newest TAESD picture of the job, which may be of an earlier step than `image`. */
  taesd?: TaesdPicture;
}

/** What a record counts against `maxBytes`: its pictures and the strings of its metadata. */
function recordBytes(record: Pick<JobRecord, 'image' | 'taesd' | 'info'>): number {
  return record.image.data.byteLength + (record.taesd?.image.data.byteLength ?? 0) + metaBytes(record.info.meta);
}

/** A TAESD picture as viewers get it: in the `taesd` event and in the `watch` snapshot. */
function taesdEvent(key: string, picture: TaesdPicture): object {
  return { event: 'taesd', key, step: picture.step, image: picture.image };
}

interface Viewer {
  readonly socket: ViewerSocket;
  /** Jobs whose latest push this viewer missed because it was slow. */
  readonly stale: Set<string>;
}

/**
 * Keeps the latest preview of each job and pushes every new one to the browsers watching.
 * What it keeps is bounded in jobs and in bytes, which also bounds a `watch` snapshot.
 */
export class ViewerHub {
  readonly #options: ViewerHubOptions;
  readonly #metrics: Metrics;
  readonly #jobs = new Map<string, JobRecord>();
  readonly #viewers = new Set<Viewer>();
  /** Image and metadata bytes of the kept jobs. */
  #bytes = 0;

  constructor(options: ViewerHubOptions, metrics: Metrics) {
    this.#options = options;
    this.#metrics = metrics;
  }

  get viewerCount(): number {
    return this.#viewers.size;
  }

  get jobCount(): number {
    return this.#jobs.size;
  }

  get keptBytes(): number {
    return this.#bytes;
  }

  /** Adds a viewer (once per socket: the session sees to it) and returns every job's latest state and images for its `watch` reply. */
  watch(socket: ViewerSocket): { job: JobInfo; image: RgbImage; taesd?: { step: number | null; image: EncodedImage } }[] {
    this.#viewers.add({ socket, stale: new Set() });
    return [...this.#jobs.values()].map((record) => ({
      job: record.info,
      image: record.image,
      ...(record.taesd ? { taesd: { step: record.taesd.step, image: record.taesd.image } } : {}),
    }));
  }

  unwatch(socket: ViewerSocket): void {
    for (const viewer of this.#viewers) if (viewer.socket === socket) this.#viewers.delete(viewer);
  }

  publish(preview: PublishedPreview): void {
    const key = jobKey(preview.owner, preview.job);
    const existing = this.#jobs.get(key);
    // Steps that go back mean the client runs the job again (a reused job name): timing and TAESD start afresh.
    const startsOver = existing !== undefined && preview.step !== undefined && existing.info.step !== null && preview.step < existing.info.step;
    const run = startsOver ? undefined : existing;
    const finished = preview.step !== undefined && preview.total !== undefined && preview.step >= preview.total;
    const info: JobInfo = {
      key,
      job: preview.job,
      client: preview.client,
      family: preview.family,
      step: preview.step ?? null,
      total: preview.total ?? null,
      shape: [...preview.shape],
      size: [preview.shape[2] * FAMILIES[preview.family].downscale, preview.shape[3] * FAMILIES[preview.family].downscale],
      state: finished ? 'finished' : 'running',
      outcome: finished ? 'finished' : null,
      error: null,
      meta: preview.meta !== undefined ? forViewers(preview.meta) : (existing?.info.meta ?? {}),
      started: run?.info.started ?? preview.received,
      first_step: run !== undefined ? run.info.first_step : (preview.step ?? null),
      stepped: preview.received,
      updated: Date.now(),
    };
    if (!this.#keep({ owner: preview.owner, info, image: preview.image, taesd: run?.taesd })) return;
    this.#broadcast(key, encodeMessage({ event: 'preview', job: info, image: preview.image }));
  }

  /** A TAESD picture for a job the hub keeps (one it no longer keeps is not brought back). */
  publishTaesd(owner: number, picture: TaesdPicture): void {
    const key = jobKey(owner, picture.job);
    const existing = this.#jobs.get(key);
    if (existing === undefined) return;
    // Of a later step than the job's preview: a decode of an earlier run of the job that finished late.
    if (picture.step !== null && existing.info.step !== null && picture.step > existing.info.step) return;
    if (!this.#keep({ ...existing, taesd: picture })) return;
    this.#broadcast(key, encodeMessage(taesdEvent(key, picture)));
  }

  /** Keeps the record in place of the job's old one, making room; false when it alone is over the budget. */
  #keep(record: JobRecord): boolean {
    const size = recordBytes(record);
    if (size > this.#options.maxBytes) {
      // Bigger than everything the hub may keep: nobody sees it, rather than everything else going.
      this.#metrics.preview('not_kept');
      return false;
    }
    const existing = this.#jobs.get(record.info.key);
    if (existing !== undefined) this.#forget(existing);
    this.#makeRoom(size);
    this.#jobs.set(record.info.key, record);
    this.#bytes += size;
    return true;
  }

  /** A client says its job is over; false when no job of that name from that connection is kept. */
  end(owner: number, job: string, outcome: JobOutcome, error?: string): boolean {
    const record = this.#jobs.get(jobKey(owner, job));
    if (record === undefined) return false;
    this.#finish(record, outcome, outcome === 'failed' ? (error ?? null) : null);
    return true;
  }

  /** Marks the running jobs of a closed connection finished: their last image stays on show. */
  finishOwner(owner: number): void {
    for (const record of this.#jobs.values()) {
      if (record.owner === owner && record.info.state === 'running') this.#finish(record, 'disconnected', null);
    }
  }

  /** Marks running jobs finished that have had no preview for `idleMs`. */
  sweep(now = Date.now()): void {
    for (const record of this.#jobs.values()) {
      if (record.info.state === 'running' && now - record.info.updated >= this.#options.idleMs) this.#finish(record, 'stalled', null);
    }
  }

  #finish(record: JobRecord, outcome: JobEnding, error: string | null): void {
    const { info } = record;
    if (info.state === 'finished' && info.outcome === outcome && info.error === error) return;
    record.info = { ...info, state: 'finished', outcome, error, updated: Date.now() };
    this.#broadcast(info.key, encodeMessage({ event: 'job', job: record.info }));
  }

  #forget(record: JobRecord): void {
    this.#jobs.delete(record.info.key);
    this.#bytes -= recordBytes(record);
  }

  /** Drops jobs, oldest finished first, until one more job of `size` bytes fits. */
  #makeRoom(size: number): void {
    while (this.#jobs.size >= this.#options.maxJobs || this.#bytes + size > this.#options.maxBytes) {
      const records = [...this.#jobs.values()];
      const finished = records.filter((r) => r.info.state === 'finished');
      const pool = finished.length > 0 ? finished : records;
      const oldest = pool.reduce((a, b) => (b.info.updated < a.info.updated ? b : a));
      this.#forget(oldest);
      this.#broadcast(oldest.info.key, encodeMessage({ event: 'remove', key: oldest.info.key }));
    }
  }

  #broadcast(key: string, frame: Buffer): void {
    for (const viewer of this.#viewers) this.#push(viewer, key, frame);
  }

  #push(viewer: Viewer, key: string, frame: Buffer): void {
    if (viewer.socket.bufferedAmount > this.#options.maxViewerBuffer) {
      viewer.stale.add(key);
      this.#metrics.preview('viewer_slow');
      return;
    }
    viewer.stale.delete(key);
    this.#metrics.preview('pushed');
    viewer.socket.send(frame, () => this.#catchUp(viewer));
  }

  /** After a send completes, gives a viewer that fell behind the current state of what it missed. */
  #catchUp(viewer: Viewer): void {
    if (viewer.stale.size === 0 || !this.#viewers.has(viewer) || viewer.socket.bufferedAmount > this.#options.maxViewerBuffer) return;
    for (const key of [...viewer.stale]) {
      const record = this.#jobs.get(key);
      if (record === undefined) {
        this.#push(viewer, key, encodeMessage({ event: 'remove', key }));
        continue;
      }
      this.#push(viewer, key, encodeMessage({ event: 'preview', job: record.info, image: record.image }));
      if (record.taesd !== undefined) this.#push(viewer, key, encodeMessage(taesdEvent(key, record.taesd)));
    }
  }
}

/** A job's key: unique per server, since connection ids are. */
export function jobKey(owner: number, job: string): string {
  return `${owner}/${job}`;
}

/** The metadata as viewers get it: the prompt on one line and at most VIEWER_PROMPT_CHARS long. */
function forViewers(meta: PreviewMeta): PreviewMeta {
  if (meta.prompt === undefined) return meta;
  const { prompt: sent, ...rest } = meta;
  const prompt = sent.replace(/\s+/g, ' ').trim();
  if (prompt === '') return rest;
  if (prompt.length <= VIEWER_PROMPT_CHARS) return { ...meta, prompt };
  // Cut between code points, never inside a surrogate pair.
  const cut = Array.from(prompt.slice(0, VIEWER_PROMPT_CHARS)).slice(0, -1).join('').trimEnd();
  return { ...meta, prompt: `${cut}…` };
}

function metaBytes(meta: PreviewMeta): number {
  return [meta.prompt, meta.model, meta.sampler].reduce((sum, text) => sum + (text === undefined ? 0 : Buffer.byteLength(text)), 0);
}
