import type { NetworkEntry } from './catalogue.ts';
import type { LoadedNetwork } from './runtime.ts';

export interface NetworkPoolOptions {
  /** Networks kept loaded at most; the least recently used idle one goes first. */
  readonly maxLoaded: number;
  /** A network not used for this long is released. */
  readonly idleMs: number;
}

export const DEFAULT_POOL_OPTIONS: NetworkPoolOptions = { maxLoaded: 8, idleMs: 10 * 60_000 };

interface Slot {
  readonly loading: Promise<LoadedNetwork>;
  lastUsed: number;
  /** Runs using the network right now; a slot in use is never released. */
  inUse: number;
}

/**
 * The loaded networks: each loaded once however many requests ask for it at the same time, and
 * released again when it has not been used for a while or when more than `maxLoaded` are loaded,
 * so that memory follows what clients use now, not everything they ever used.
 */
export class NetworkPool {
  readonly #load: (entry: NetworkEntry) => Promise<LoadedNetwork>;
  readonly #options: NetworkPoolOptions;
  readonly #slots = new Map<string, Slot>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(load: (entry: NetworkEntry) => Promise<LoadedNetwork>, options: NetworkPoolOptions = DEFAULT_POOL_OPTIONS) {
    this.#load = load;
    this.#options = options;
  }

  /** Names of the networks loaded or loading. */
  names(): string[] {
    return [...this.#slots.keys()];
  }

  /** Loads the network unless it is loaded; a failed load is forgotten, so the next use tries again. */
  load(entry: NetworkEntry): Promise<LoadedNetwork> {
    return this.#slot(entry).loading;
  }

  /** Runs `work` with the network loaded, holding it loaded until `work` is done. */
  async use<T>(entry: NetworkEntry, work: (network: LoadedNetwork) => Promise<T>): Promise<T> {
    const slot = this.#slot(entry);
    slot.inUse++;
    try {
      return await work(await slot.loading);
    } finally {
      slot.inUse--;
      slot.lastUsed = Date.now();
      this.#trim();
    }
  }

  #slot(entry: NetworkEntry): Slot {
    const existing = this.#slots.get(entry.name);
    if (existing !== undefined) {
      existing.lastUsed = Date.now();
      return existing;
    }
    const slot: Slot = { loading: this.#load(entry), lastUsed: Date.now(), inUse: 0 };
    this.#slots.set(entry.name, slot);
    slot.loading.then(
      () => this.#trim(),
      () => {
        if (this.#slots.get(entry.name) === slot) this.#slots.delete(entry.name);
      },
    );
    this.#startSweeping();
    return slot;
  }

  /** Releases every network that is not in use. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await Promise.all([...this.#slots.keys()].map((name) => this.#release(name)));
  }

  /** Releases idle networks past `idleMs`, then the least recently used beyond `maxLoaded`. */
  #trim(now = Date.now()): void {
    const idle = [...this.#slots.entries()].filter(([, slot]) => slot.inUse === 0).sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    let excess = this.#slots.size - this.#options.maxLoaded;
    for (const [name, slot] of idle) {
      if (excess <= 0 && now - slot.lastUsed < this.#options.idleMs) break;
      void this.#release(name);
      excess--;
    }
    if (this.#slots.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  async #release(name: string): Promise<void> {
    const slot = this.#slots.get(name);
    if (slot === undefined || slot.inUse > 0) return;
    this.#slots.delete(name);
    try {
      await (await slot.loading).release();
    } catch {
      // A network that failed to load has nothing to release.
    }
  }

  #startSweeping(): void {
    if (this.#sweeper !== undefined) return;
    this.#sweeper = setInterval(() => this.#trim(), Math.max(1_000, Math.min(this.#options.idleMs, 60_000)));
    this.#sweeper.unref();
  }
}
