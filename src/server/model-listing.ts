/** How long one listing answers `models` requests: a file placed or downloaded shows up within this. */
export const MODEL_LISTING_FRESH_MS = 2_000;

/**
 * The `models` answer, shared: requests that arrive while a listing is being made wait for that
 * one, and requests in the `freshMs` after it get the same list. A flood of `models` requests
 * then costs one listing, not one per request (each lists files and reads verification records).
 * A failed listing is not kept.
 */
export class ModelListing {
  readonly #list: () => Promise<readonly object[]>;
  readonly #freshMs: number;
  #current: Promise<readonly object[]> | undefined;
  /** performance.now() until which the current listing is reused; Infinity while it is being made. */
  #freshUntil = 0;

  constructor(list: () => Promise<readonly object[]>, freshMs = MODEL_LISTING_FRESH_MS) {
    this.#list = list;
    this.#freshMs = freshMs;
  }

  get(): Promise<readonly object[]> {
    if (this.#current !== undefined && performance.now() < this.#freshUntil) return this.#current;
    const listing = this.#list();
    this.#current = listing;
    this.#freshUntil = Infinity;
    listing.then(
      () => {
        if (this.#current === listing) this.#freshUntil = performance.now() + this.#freshMs;
      },
      () => {
        if (this.#current === listing) this.#current = undefined;
      },
    );
    return listing;
  }
}
