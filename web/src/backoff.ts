/** How long the page waits before it reconnects its stream: capped, doubling, full jitter. */

/** The first bound, and the wait bound after a stream the server ended on purpose. */
export const FIRST_RETRY_MS = 250;
/** The bound stops doubling here. */
export const MAX_RETRY_MS = 4000;

/**
 * Each wait is drawn uniformly from [0, bound) ("full jitter"), so the pages a
 * restart disconnected together do not all come back in lockstep. The bound
 * doubles after each failed attempt, up to MAX_RETRY_MS; a stream the server
 * ended on purpose (it is draining for a restart) is resumed almost at once,
 * and progress on a stream starts the bound over.
 */
export class Backoff {
  private bound = FIRST_RETRY_MS;

  /** `random` draws from [0, 1), as Math.random does. */
  constructor(private readonly random: () => number = Math.random) {}

  /** The wait before the next attempt; `ended`: the server ended the last stream normally. */
  next(ended: boolean): number {
    if (ended) return this.random() * FIRST_RETRY_MS;
    const bound = this.bound;
    this.bound = Math.min(bound * 2, MAX_RETRY_MS);
    return this.random() * bound;
  }

  /** The stream made progress: the next failure waits briefly again. */
  reset(): void {
    this.bound = FIRST_RETRY_MS;
  }
}
