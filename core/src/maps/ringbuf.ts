/**
 * RingBufferConsumer: reads a BPF_MAP_TYPE_RINGBUF map from TypeScript, as
 * an event emitter ('data' per record, 'drop' when producers found the ring
 * full) and as an async iterator. See poller.ts for the scheduling.
 *
 *   const rb = region.createMap({ name: "events", type: "ringbuf", maxEntries: 1 << 20 });
 *   for await (const rec of rb.consumer({ codec: eventCodec })) { ... }
 */
import { BpfhookError } from "../errors.js";
import { native } from "../native/binding.js";
import type { Codec } from "./codecs.js";
import { Errno, mapError } from "./errors.js";
import type { RingBufMap } from "./map.js";
import { Poller, type PollOptions } from "./poller.js";

export interface RingBufferOptions<T = Buffer> extends PollOptions {
  /** Records per native call (default 4096). */
  batchRecords?: number;
  /** Bytes per native call (default 1 MiB). */
  batchBytes?: number;
  /** Decodes each record; without it records are Buffers (views of one batch). */
  codec?: Codec<T>;
}

export class RingBufferConsumer<T = Buffer> extends Poller<T> {
  readonly #batchRecords: number;
  readonly #batchBytes: number;
  readonly #codec: Codec<T> | undefined;
  #received = 0;
  #dropsSeen: number;

  constructor(
    readonly map: RingBufMap,
    opts: RingBufferOptions<T> = {},
  ) {
    super(opts);
    if (map.typeName !== "ringbuf") {
      throw new BpfhookError("BAD_ARGUMENT", `map '${map.name}': not a ring buffer`, { symbol: map.name });
    }
    this.#batchRecords = opts.batchRecords ?? 4096;
    this.#batchBytes = opts.batchBytes ?? 1 << 20;
    this.#codec = opts.codec;
    // Drops before the consumer existed are not this consumer's to report.
    this.#dropsSeen = map.stats().drops;
  }

  override on(event: "data", listener: (record: T) => void): this;
  /** `count` new drops since the last report, `total` since the ring was created. */
  override on(event: "drop", listener: (count: number, total: number) => void): this;
  override on(event: "error", listener: (err: unknown) => void): this;
  override on(event: "close", listener: () => void): this;
  override on(event: string, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  /** Records delivered so far. */
  get received(): number {
    return this.#received;
  }

  /** Drops counted by the ring since its creation. */
  get drops(): number {
    return this.map.stats().drops;
  }

  /** Drains what is in the ring now, synchronously; returns the records delivered. */
  poll(): number {
    const before = this.#received;
    while (this.drain()) {
      // drain() returns true while full batches keep coming
    }
    return this.#received - before;
  }

  protected drain(): boolean {
    if (this.closed) return false;
    let more = false;
    if (!this.paused) {
      const limit = Math.min(this.#batchRecords, this.room);
      const r = native().ringbufConsume(this.map.native, limit, this.#batchBytes);
      if (typeof r === "number") {
        // Another process is consuming this ring: not ours to read now.
        if (r !== -Errno.EBUSY) throw mapError(this.map.name, "consume", r, { typeName: "ringbuf" });
      } else {
        let n = 0;
        for (let off = 0; off < r.length; ) {
          const size = r.readUInt32LE(off);
          const data = r.subarray(off + 8, off + 8 + size);
          off += 8 + Math.ceil(size / 8) * 8;
          n++;
          this.#received++;
          this.#emitRecord(data);
        }
        more = n >= limit || r.length >= this.#batchBytes;
      }
    }
    const drops = this.map.stats().drops;
    if (drops > this.#dropsSeen) {
      const count = drops - this.#dropsSeen;
      this.#dropsSeen = drops;
      this.emit("drop", count, drops);
    }
    return more;
  }

  #emitRecord(data: Buffer): void {
    if (this.#codec === undefined) {
      this.deliver(data as unknown as T);
      return;
    }
    if (data.length < this.#codec.size) {
      this.emit(
        "error",
        new BpfhookError(
          "MAP_ERROR",
          `map '${this.map.name}': record of ${data.length} bytes is shorter than the codec's ${this.#codec.size}`,
          { symbol: this.map.name },
        ),
      );
      return;
    }
    this.deliver(this.#codec.decode(data, 0));
  }
}
