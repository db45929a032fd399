import { renderPreview, type RgbImage } from '../preview.ts';
import type { PreviewRequest, WireLatent } from '../protocol/messages.ts';
import type { Metrics } from './metrics.ts';
import type { ViewerHub } from './viewer-hub.ts';

export interface PreviewOrder {
  readonly owner: number;
  readonly client: string;
  readonly input: WireLatent;
  readonly preview: PreviewRequest;
  /** Called once: with the image, or with `superseded` when a newer step of the job came first. */
  readonly settle: (outcome: { readonly image: RgbImage } | { readonly superseded: true }) => void;
}

/** Name of the job a preview without `job` belongs to. */
export const DEFAULT_JOB = 'default';

/**
 * Draws previews after the frames that arrived together have been read, keeping only the
 * newest one per job: when a sampler outruns the sidecar, older steps are dropped instead of
 * queueing up behind each other.
 */
export class PreviewDesk {
  readonly #hub: ViewerHub;
  readonly #metrics: Metrics;
  readonly #pending = new Map<string, PreviewOrder>();
  #scheduled = false;

  constructor(hub: ViewerHub, metrics: Metrics) {
    this.#hub = hub;
    this.#metrics = metrics;
  }

  submit(order: PreviewOrder): void {
    const key = `${order.owner}/${order.preview.job ?? DEFAULT_JOB}`;
    const older = this.#pending.get(key);
    if (older !== undefined) {
      this.#metrics.preview('superseded');
      older.settle({ superseded: true });
      // Deleting first keeps the map in arrival order.
      this.#pending.delete(key);
    }
    this.#pending.set(key, order);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drawAll());
    }
  }

  /** Forgets the waiting previews of a closed connection. */
  dropOwner(owner: number): void {
    for (const [key, order] of this.#pending) if (order.owner === owner) this.#pending.delete(key);
  }

  #drawAll(): void {
    this.#scheduled = false;
    const orders = [...this.#pending.values()];
    this.#pending.clear();
    for (const order of orders) {
      const { latent } = order.input;
      const image = renderPreview(latent, { index: order.preview.index, grid: order.preview.grid });
      this.#metrics.preview('drawn');
      order.settle({ image });
      if (!order.preview.publish) continue;
      this.#hub.publish({
        owner: order.owner,
        client: order.client,
        job: order.preview.job ?? DEFAULT_JOB,
        family: latent.family,
        step: order.preview.step,
        total: order.preview.total,
        shape: latent.shape,
        image,
      });
    }
  }
}
