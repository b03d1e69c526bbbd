/**
 * The polling loop both consumers share. Why polling: a native waiter thread
 * with a ThreadSafeFunction would wake sooner, but it needs a wake-up
 * channel the producers signal (futex in the region) and careful teardown;
 * polling a ring costs one native call per tick, so it is done in TS:
 *
 * - a tick drains the ring in batches; if the last batch was full there is
 *   more, and the next tick runs at once (setImmediate), otherwise after
 *   `intervalMs`. A consumer that keeps up therefore loses nothing: records
 *   wait in the ring, in order, until the next tick;
 * - records go to 'data' listeners at once and, while an async iterator is
 *   open, into its queue. When that queue reaches `highWaterMark` the
 *   consumer stops draining: the ring fills and producers' records are
 *   dropped and counted (the kernel's behaviour), instead of the queue
 *   growing without bound.
 */
import { EventEmitter } from "node:events";

export interface PollOptions {
  /** Poll interval when the ring was empty, in ms (default 2). */
  intervalMs?: number;
  /** Records buffered for an async iterator before draining pauses (default 65536). */
  highWaterMark?: number;
  /** Keep the event loop alive while polling (default true). */
  ref?: boolean;
}

type Timer = { kind: "timeout"; t: NodeJS.Timeout } | { kind: "immediate"; t: NodeJS.Immediate };

export abstract class Poller<T> extends EventEmitter implements AsyncIterable<T> {
  readonly #intervalMs: number;
  readonly #highWaterMark: number;
  readonly #ref: boolean;
  #timer: Timer | undefined;
  #running = false;
  #closed = false;
  #iterators = 0;
  readonly #queue: T[] = [];
  readonly #waiters: ((r: IteratorResult<T>) => void)[] = [];

  constructor(opts: PollOptions) {
    super();
    this.#intervalMs = opts.intervalMs ?? 2;
    this.#highWaterMark = opts.highWaterMark ?? 65536;
    this.#ref = opts.ref ?? true;
  }

  /** One pass over the ring: delivers what is there; returns true if more is waiting. */
  protected abstract drain(): boolean;

  get running(): boolean {
    return this.#running;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts polling. */
  start(): this {
    if (this.#closed || this.#running) return this;
    this.#running = true;
    this.#schedule(true);
    return this;
  }

  /** Stops polling; records stay in the ring until start() or poll(). */
  stop(): this {
    this.#running = false;
    this.#clearTimer();
    return this;
  }

  /** Stops for good and ends open async iterators. */
  close(): void {
    if (this.#closed) return;
    this.stop();
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w({ value: undefined, done: true });
    this.emit("close");
  }

  /** True while an async iterator's queue is at its high-water mark. */
  protected get paused(): boolean {
    return this.#iterators > 0 && this.#queue.length >= this.#highWaterMark;
  }

  /** Records the next drain may take: bounded only while an iterator buffers them. */
  protected get room(): number {
    return this.#iterators > 0 ? Math.max(0, this.#highWaterMark - this.#queue.length) : Number.POSITIVE_INFINITY;
  }

  protected deliver(item: T, ...extra: unknown[]): void {
    this.emit("data", item, ...extra);
    if (this.#iterators === 0) return;
    const w = this.#waiters.shift();
    if (w) w({ value: item, done: false });
    else this.#queue.push(item);
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    this.#iterators++;
    this.start();
    let done = false;
    const finish = (): IteratorResult<T> => {
      if (!done) {
        done = true;
        this.#iterators--;
        if (this.#iterators === 0) this.#queue.length = 0;
      }
      return { value: undefined, done: true };
    };
    return {
      next: () => {
        if (done) return Promise.resolve({ value: undefined, done: true });
        if (this.#queue.length > 0) {
          const value = this.#queue.shift() as T;
          // Draining paused at the high-water mark: resume once there is room.
          if (this.#running && this.#timer === undefined && !this.paused) this.#schedule(true);
          return Promise.resolve({ value, done: false });
        }
        if (this.#closed) return Promise.resolve(finish());
        return new Promise<IteratorResult<T>>((resolve) => this.#waiters.push(resolve)).then((r) =>
          r.done ? finish() : r,
        );
      },
      // `break` out of for-await: the iterator ends, the consumer closes.
      return: () => {
        const r = finish();
        this.close();
        return Promise.resolve(r);
      },
    };
  }

  #tick = (): void => {
    this.#timer = undefined;
    if (!this.#running) return;
    if (this.paused) return;  // next() reschedules
    let more = false;
    try {
      more = this.drain();
    } catch (err) {
      this.emit("error", err);
    }
    if (this.#running) this.#schedule(more);
  };

  #schedule(now: boolean): void {
    if (this.#timer !== undefined) return;
    if (now) {
      const t = setImmediate(this.#tick);
      if (!this.#ref) t.unref();
      this.#timer = { kind: "immediate", t };
    } else {
      const t = setTimeout(this.#tick, this.#intervalMs);
      if (!this.#ref) t.unref();
      this.#timer = { kind: "timeout", t };
    }
  }

  #clearTimer(): void {
    if (this.#timer?.kind === "timeout") clearTimeout(this.#timer.t);
    if (this.#timer?.kind === "immediate") clearImmediate(this.#timer.t);
    this.#timer = undefined;
  }
}
