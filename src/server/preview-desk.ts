import type { BridgeError } from '../errors.ts';
import { renderPreview, type RgbImage } from '../preview.ts';
import type { JobEnd, PreviewRequest, WireLatent } from '../protocol/messages.ts';
import type { Metrics } from './metrics.ts';
import type { TaesdDesk, TaesdPicture } from './taesd-desk.ts';
import { jobKey, type ViewerHub } from './viewer-hub.ts';

export interface PreviewOrder {
  readonly owner: number;
  readonly client: string;
  readonly input: WireLatent;
  readonly preview: PreviewRequest;
  /** Called once: with the image, or with `superseded` when a newer step of the job came first. */
  readonly settle: (outcome: { readonly image: RgbImage } | { readonly superseded: true }) => void;
  /** Pushes an event to the connection that sent the preview (its TAESD pictures, when it asked for them). */
  readonly notify: (event: object) => void;
}

interface PendingPreview extends PreviewOrder {
  /** Milliseconds since the Unix epoch when it arrived: viewers time the job's steps by it. */
  readonly received: number;
}

/** Name of the job a preview without `job` belongs to. */
export const DEFAULT_JOB = 'default';

/**
 * Draws previews after the frames that arrived together have been read, keeping only the
 * newest one per job: when a sampler outruns the sidecar, older steps are dropped instead of
 * queueing up behind each other. A job's end is applied after the previews that came before it.
 */
export class PreviewDesk {
  readonly #hub: ViewerHub;
  readonly #metrics: Metrics;
  readonly #taesd: TaesdDesk;
  readonly #pending = new Map<string, PendingPreview>();
  #scheduled = false;

  constructor(hub: ViewerHub, metrics: Metrics, taesd: TaesdDesk) {
    this.#hub = hub;
    this.#metrics = metrics;
    this.#taesd = taesd;
  }

  submit(order: PreviewOrder): void {
    const key = jobKey(order.owner, order.preview.job ?? DEFAULT_JOB);
    const older = this.#pending.get(key);
    if (older !== undefined) {
      this.#metrics.preview('superseded');
      older.settle({ superseded: true });
      // Deleting first keeps the map in arrival order.
      this.#pending.delete(key);
    }
    this.#pending.set(key, { ...order, received: Date.now() });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drawAll());
    }
  }

  /** Ends a job for its viewers, once the preview of it still waiting (if any) is drawn; false when no such job is kept. */
  end(owner: number, end: JobEnd): boolean {
    const job = end.job ?? DEFAULT_JOB;
    const key = jobKey(owner, job);
    const waiting = this.#pending.get(key);
    if (waiting !== undefined) {
      this.#pending.delete(key);
      this.#draw(waiting);
    }
    return this.#hub.end(owner, job, end.outcome, end.error);
  }

  /** Forgets the waiting previews of a closed connection. */
  dropOwner(owner: number): void {
    for (const [key, order] of this.#pending) if (order.owner === owner) this.#pending.delete(key);
    this.#taesd.dropOwner(owner);
  }

  #drawAll(): void {
    this.#scheduled = false;
    const orders = [...this.#pending.values()];
    this.#pending.clear();
    for (const order of orders) this.#draw(order);
  }

  #draw(order: PendingPreview): void {
    const { latent } = order.input;
    const image = renderPreview(latent, { index: order.preview.index, grid: order.preview.grid });
    this.#metrics.preview('drawn');
    order.settle({ image });
    const job = order.preview.job ?? DEFAULT_JOB;
    if (order.preview.publish) {
      this.#hub.publish({
        owner: order.owner,
        client: order.client,
        job,
        family: latent.family,
        step: order.preview.step,
        total: order.preview.total,
        shape: latent.shape,
        image,
        meta: order.preview.meta,
        received: order.received,
      });
    }
    // TAESD pictures cost seconds of CPU each: only for someone who will see them.
    if (order.preview.taesd || (order.preview.publish && this.#hub.viewerCount > 0)) this.#decode(order, job);
  }

  #decode(order: PreviewOrder, job: string): void {
    const { owner, preview } = order;
    this.#taesd.submit({
      owner,
      job,
      latent: order.input.latent,
      step: preview.step,
      index: preview.index,
      grid: preview.grid,
      deliver: (picture: TaesdPicture) => {
        if (preview.publish) this.#hub.publishTaesd(owner, picture);
        // With the latent's shape and the grid flag, a client can cut a grid back into its items.
        if (preview.taesd) order.notify({ event: 'taesd', job, step: picture.step, shape: order.input.latent.shape, grid: preview.grid, image: picture.image });
      },
      unavailable: (error: BridgeError) => {
        if (preview.taesd) order.notify({ event: 'taesd', job, error: { code: error.code, message: error.message } });
      },
    });
  }
}
