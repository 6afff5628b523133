/** Follows WatchBooks forever: reconnects with backoff and resumes after the last revision seen. */

import { Code, ConnectError } from "@connectrpc/connect";
import type { LibraryClient } from "./api";
import { Backoff } from "./backoff";
import type { BookEvent } from "./gen/library/v1/library_pb";

export type LiveState = "connecting" | "live" | "reconnecting";

export interface LiveHandlers {
  /** One change to the catalogue, in revision order. */
  onEvent(event: BookEvent): void;
  /** The connection state changed. */
  onState(state: LiveState, revision: bigint): void;
  /**
   * The stream started over from a snapshot after an earlier attempt (the
   * server no longer kept the events since the page's revision). A snapshot
   * carries no deletions, so whatever the page shows must be fetched afresh.
   */
  onRestart(): void;
}

/** Keeps one WatchBooks stream open and feeds its events to `handlers`. */
export class BookWatch {
  private revision = 0n;
  private attempt: AbortController | null = null;
  private attempted = false;

  /**
   * `serverUp`, if given, is a call to the same server the page made anyway
   * (its first ListBooks), resolving to true once answered: the first attempt
   * waits on it instead of asking the server itself.
   */
  constructor(
    private readonly client: LibraryClient,
    private readonly handlers: LiveHandlers,
    private serverUp?: Promise<boolean>,
  ) {}

  /** Start watching; runs until the page goes away. */
  start(): void {
    void this.run();
  }

  private async run(): Promise<void> {
    const backoff = new Backoff();
    this.handlers.onState("connecting", this.revision);
    for (;;) {
      const ended = await this.follow(() => backoff.reset());
      this.handlers.onState("reconnecting", this.revision);
      await new Promise((resolve) => setTimeout(resolve, backoff.next(ended)));
    }
  }

  /** One stream from open to end; true when the server ended it normally. */
  private async follow(onLive: () => void): Promise<boolean> {
    const attempt = new AbortController();
    this.attempt = attempt;
    const since = this.revision;
    // The page loads its list itself before the first stream; only later
    // snapshots can find it showing books that are gone.
    const restart = since === 0n && this.attempted;
    this.attempted = true;
    // With since = 0 the server sends a snapshot whose events all carry the
    // revision it was taken at. Resuming from that revision is only safe once
    // the whole snapshot arrived, i.e. a later revision or a clean end shows up.
    let snapshotRevision = 0n;
    let live = false;
    // `streaming`: the stream itself delivered (headers, an event), not just the
    // server answering another call. Only that starts the backoff over: a stream
    // that keeps failing while the server is up must not be retried (and the list
    // reloaded) every 250 ms.
    const markLive = (streaming: boolean): void => {
      if (this.attempt !== attempt || attempt.signal.aborted) return;
      if (streaming) onLive();
      if (live) return;
      live = true;
      if (restart) this.handlers.onRestart();
      this.handlers.onState("live", this.revision);
    };
    try {
      const stream = this.client.watchBooks(
        { sinceRevision: since },
        { signal: attempt.signal, timeoutMs: 0, onHeader: () => markLive(true) },
      );
      const iterator = stream[Symbol.asyncIterator]();
      const first = iterator.next();
      // The server sends headers with the first event, and a resumed stream may
      // have none to send yet: a cheap call to the same server tells us it is up.
      const up =
        this.serverUp ?? this.client.listBooks({ pageSize: 1 }, { signal: attempt.signal }).then(() => true);
      this.serverUp = undefined;
      up.then((answered) => answered && markLive(false), () => {});
      for (let step = await first; !step.done; step = await iterator.next()) {
        const event = step.value.event;
        if (!event) continue;
        markLive(true);
        if (since === 0n && snapshotRevision === 0n) snapshotRevision = event.revision;
        if (since !== 0n || event.revision > snapshotRevision) this.revision = event.revision;
        this.handlers.onEvent(event);
      }
      if (snapshotRevision > this.revision) this.revision = snapshotRevision;
      return true;
    } catch (error) {
      if (ConnectError.from(error).code === Code.OutOfRange) {
        // The server no longer keeps events that old: start over from a
        // snapshot at once, since the server is up and answering.
        this.revision = 0n;
        return true;
      }
      return false;
    } finally {
      attempt.abort();
    }
  }
}
