/**
 * PerfBufferConsumer: reads a BPF_MAP_TYPE_PERF_EVENT_ARRAY's rings (one per
 * CPU) from TypeScript, like libbpf's perf_buffer: 'data' per sample with its
 * CPU, 'lost' with the number of samples a full ring refused. Also an async
 * iterator of { cpu, data }. See poller.ts for the scheduling. Samples are in
 * order within a ring; across rings they are not (as with the kernel's).
 */
import { BpfhookError } from "../errors.js";
import { native } from "../native/binding.js";
import type { Codec } from "./codecs.js";
import { Errno, mapError } from "./errors.js";
import type { PerfEventArray } from "./map.js";
import { Poller, type PollOptions } from "./poller.js";

export interface PerfBufferOptions<T = Buffer> extends PollOptions {
  /** Samples per native call (default 4096). */
  batchRecords?: number;
  /** Bytes per native call (default 1 MiB). */
  batchBytes?: number;
  /** Decodes each sample; without it samples are Buffers (views of one batch). */
  codec?: Codec<T>;
}

export interface PerfSample<T = Buffer> {
  /** The ring (CPU) the sample was written to. */
  cpu: number;
  data: T;
}

export class PerfBufferConsumer<T = Buffer> extends Poller<PerfSample<T>> {
  readonly #batchRecords: number;
  readonly #batchBytes: number;
  readonly #codec: Codec<T> | undefined;
  #received = 0;
  #lost = 0;

  constructor(
    readonly map: PerfEventArray,
    opts: PerfBufferOptions<T> = {},
  ) {
    super(opts);
    if (map.typeName !== "perf_event_array") {
      throw new BpfhookError("BAD_ARGUMENT", `map '${map.name}': not a perf event array`, { symbol: map.name });
    }
    this.#batchRecords = opts.batchRecords ?? 4096;
    this.#batchBytes = opts.batchBytes ?? 1 << 20;
    this.#codec = opts.codec;
  }

  override on(event: "data", listener: (sample: PerfSample<T>) => void): this;
  override on(event: "lost", listener: (count: number, cpu: number) => void): this;
  override on(event: "error", listener: (err: unknown) => void): this;
  override on(event: "close", listener: () => void): this;
  override on(event: string, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  /** Samples delivered so far. */
  get received(): number {
    return this.#received;
  }

  /** Lost samples reported to this consumer so far. */
  get lost(): number {
    return this.#lost;
  }

  /** Drains every ring now, synchronously; returns the samples delivered. */
  poll(): number {
    const before = this.#received;
    while (this.drain()) {
      // drain() returns true while full batches keep coming
    }
    return this.#received - before;
  }

  protected drain(): boolean {
    if (this.closed || this.paused) return false;
    const limit = Math.min(this.#batchRecords, this.room);
    const r = native().perfConsume(this.map.native, -1, limit, this.#batchBytes);
    if (typeof r === "number") {
      if (r === -Errno.EBUSY) return false;  // another consumer holds a ring
      throw mapError(this.map.name, "consume", r, { typeName: "perf_event_array" });
    }
    let n = 0;
    for (let off = 0; off < r.length; ) {
      const kind = r.readUInt16LE(off);
      const cpu = r.readUInt32LE(off + 4);
      const size = r.readUInt32LE(off + 8);
      const payload = r.subarray(off + 16, off + 16 + size);
      off += 16 + Math.ceil(size / 8) * 8;
      if (kind === 2) {
        const count = Number(payload.readBigUInt64LE(0));
        this.#lost += count;
        this.emit("lost", count, cpu);
        continue;
      }
      n++;
      this.#received++;
      this.#emitSample(cpu, payload);
    }
    return n >= limit || r.length >= this.#batchBytes;
  }

  #emitSample(cpu: number, data: Buffer): void {
    if (this.#codec === undefined) {
      this.deliver({ cpu, data: data as unknown as T });
      return;
    }
    if (data.length < this.#codec.size) {
      this.emit(
        "error",
        new BpfhookError(
          "MAP_ERROR",
          `map '${this.map.name}': sample of ${data.length} bytes is shorter than the codec's ${this.#codec.size}`,
          { symbol: this.map.name },
        ),
      );
      return;
    }
    this.deliver({ cpu, data: this.#codec.decode(data, 0) });
  }
}
