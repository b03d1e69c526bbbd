/**
 * Typed maps over native handles. One class per access pattern:
 * - BpfMap: hash, LRU hash, array, LPM trie (get/set/delete, iteration);
 * - PerCpuMap: per-CPU hash and array (values per possible CPU);
 * - QueueMap: queue and stack (push/pop/peek);
 * - BloomFilterMap: bloom filter (push/has);
 * - StackTraceMap: stack ids to frames (bpf_get_stackid);
 * - RingBufMap, PerfEventArray: event channels read through consumers.
 * Keys and values go through codecs; without one they are Buffers of the
 * map's exact sizes. Data errors are BpfhookError MAP_ERROR with `errno`.
 */
import { BpfhookError } from "../errors.js";
import { native } from "../native/binding.js";
import type { NativeMapHandle, NativeMapInfo, NativePerfRingStats, NativeRingbufStats } from "../native/addon-types.js";
import { describeMapType } from "../kernel-names.js";
import { raw, u32, type Codec } from "./codecs.js";
import { Errno, mapError } from "./errors.js";
import { PerfBufferConsumer, type PerfBufferOptions } from "./perfbuf.js";
import { RingBufferConsumer, type RingBufferOptions } from "./ringbuf.js";
import { BLOOM_DEFAULT_HASHES, mapTypeName, updateFlagValue, type MapTypeName, type MapUpdateFlag } from "./types.js";

/** What MapBase needs from the region that holds it. */
export interface MapOwner {
  readonly name: string;
}

export abstract class MapBase {
  readonly name: string;
  readonly type: number;
  readonly typeName: MapTypeName | undefined;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** Position in the region's directory. */
  readonly index: number;
  /** Possible CPUs the region is laid out for. */
  readonly ncpus: number;
  #handle: NativeMapHandle | undefined;
  #frozen = false;

  constructor(
    handle: NativeMapHandle,
    info: NativeMapInfo,
    readonly region: MapOwner,
  ) {
    this.#handle = handle;
    this.name = info.name;
    this.type = info.type;
    this.typeName = mapTypeName(info.type);
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.index = info.index;
    this.ncpus = info.ncpus;
  }

  /**
   * The native handle (a process-local bh_map*) that programs reference: pass
   * it in runtime loadProgram's `maps`. Keep this map open while they run.
   */
  get native(): NativeMapHandle {
    if (this.#handle === undefined) {
      throw new BpfhookError("BAD_ARGUMENT", `map '${this.name}': closed`, { symbol: this.name });
    }
    return this.#handle;
  }

  /**
   * Operations on this map (from any process sharing the region) that failed
   * with EBUSY: a helper that found a lock held past its short wait, a
   * lock-free read overtaken by writers too often, or a user-space call that
   * waited its full second. Kernel maps fail helpers the same way.
   */
  get busyFailures(): number {
    return native().mapLockStats(this.native).busy;
  }

  /** Locks of this map taken over from a holder that died (kill -9 inside a write). */
  get lockTakeovers(): number {
    return native().mapLockStats(this.native).takeovers;
  }

  /** The bh_map* address programs see (diagnostics). */
  get address(): bigint {
    return native().mapInfo(this.native).address;
  }

  /**
   * How often this handle met corrupt shared storage: an index, offset,
   * length or count out of bounds that another process wrote. Each such
   * operation failed (EFAULT; a program's lookup got NULL) and nothing
   * outside the storage was read or written.
   */
  get corruptions(): number {
    return native().mapInfo(this.native).corruptions;
  }

  /**
   * Makes the map read-only for user space from now on, as BPF_MAP_FREEZE
   * does: updates, deletes and pops through this handle fail with READ_ONLY;
   * reads and programs' reads go on. The loader freezes `.rodata*` and
   * `.kconfig` once their initial values are in, as libbpf does. There is no
   * thaw. (Process-local: another process opening the region is not bound.)
   */
  freeze(): void {
    this.#frozen = true;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  /** Refuses a write to a frozen map. */
  protected assertWritable(op: string): void {
    if (this.#frozen) {
      throw new BpfhookError("READ_ONLY", `map '${this.name}': ${op}: the map is frozen (read-only for user space after load)`, {
        symbol: this.name,
      });
    }
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  /** Frees this handle; the storage stays in the region. Idempotent. */
  close(): void {
    if (this.#handle === undefined) return;
    native().mapClose(this.#handle);
    this.#handle = undefined;
  }

  protected fail(op: string, rc: number, reason?: string): never {
    throw mapError(this.name, op, rc, {
      typeName: this.typeName,
      maxEntries: this.maxEntries,
      ...(reason === undefined ? {} : { reason }),
    });
  }

  protected check(op: string, rc: number): void {
    if (rc < 0) this.fail(op, rc);
  }
}

function checkCodec(mapName: string, what: string, codec: Codec<unknown>, size: number): void {
  if (codec.size !== size) {
    throw new BpfhookError(
      "BAD_ARGUMENT",
      `map '${mapName}': ${what} codec is ${codec.size} bytes, the map's ${what} is ${size}`,
      { symbol: mapName },
    );
  }
}

/** Keys: a reusable buffer, so lookups allocate nothing but the result. */
abstract class KeyedMap<K> extends MapBase {
  protected readonly keyCodec: Codec<K>;
  private readonly keyBuf: Buffer;

  constructor(handle: NativeMapHandle, info: NativeMapInfo, region: MapOwner, key: Codec<K> | undefined) {
    super(handle, info, region);
    this.keyCodec = key ?? (raw(info.keySize) as unknown as Codec<K>);
    checkCodec(info.name, "key", this.keyCodec, info.keySize);
    this.keyBuf = Buffer.alloc(info.keySize);
  }

  protected encodeKey(key: K): Buffer {
    this.keyCodec.encode(key, this.keyBuf, 0);
    return this.keyBuf;
  }

  /** True if `key` has a value (LPM tries: if some prefix covers it). */
  has(key: K): boolean {
    const rc = native().mapLookup(this.native, this.encodeKey(key), this.scratchValue());
    if (rc === -Errno.ENOENT) return false;
    this.check("lookup", rc);
    return true;
  }

  /** Deletes `key`; false if it was not there. Arrays refuse (EINVAL), as in the kernel. */
  delete(key: K): boolean {
    this.assertWritable("delete");
    const rc = native().mapDelete(this.native, this.encodeKey(key));
    if (rc === -Errno.ENOENT) return false;
    this.check("delete", rc);
    return true;
  }

  /**
   * Keys in the map's order, by get_next_key: hash maps restart from the
   * first key if the current one is deleted meanwhile (as the kernel does), so
   * iterating while programs delete can repeat keys.
   */
  *keys(): IterableIterator<K> {
    const h = this.native;
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const rc = native().mapNextKey(h, prev, next);
      if (rc === -Errno.ENOENT) return;
      this.check("get_next_key", rc);
      yield this.keyCodec.decode(next, 0);
      prev = next;
    }
  }

  /** Live entries: hash family, LPM trie; max_entries for arrays. */
  get size(): number {
    const n = native().mapCount(this.native);
    this.check("count", n);
    return n;
  }

  /** Deletes every key (hash family, LPM trie). */
  clear(): void {
    // Snapshot first: deleting the current key restarts get_next_key.
    for (const k of Array.from(this.keys())) this.delete(k);
  }

  protected abstract scratchValue(): Buffer;
}

/** Hash, LRU hash, array and LPM trie maps. */
export class BpfMap<K = Buffer, V = Buffer> extends KeyedMap<K> {
  protected readonly valueCodec: Codec<V>;
  private readonly valueBuf: Buffer;

  constructor(handle: NativeMapHandle, info: NativeMapInfo, region: MapOwner, key?: Codec<K>, value?: Codec<V>) {
    super(handle, info, region, key);
    this.valueCodec = value ?? (raw(info.valueSize) as unknown as Codec<V>);
    checkCodec(info.name, "value", this.valueCodec, info.valueSize);
    this.valueBuf = Buffer.alloc(info.valueSize);
  }

  protected scratchValue(): Buffer {
    return this.valueBuf;
  }

  /** The value, or undefined if the key is absent (LPM tries: the longest matching prefix's). */
  get(key: K): V | undefined {
    const rc = native().mapLookup(this.native, this.encodeKey(key), this.valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("lookup", rc);
    return this.valueCodec.decode(this.valueBuf, 0);
  }

  /** Inserts or replaces; `flags` "noexist" / "exist" as BPF_NOEXIST / BPF_EXIST. */
  set(key: K, value: V, flags?: MapUpdateFlag): this {
    this.assertWritable("update");
    this.valueCodec.encode(value, this.valueBuf, 0);
    this.check("update", native().mapUpdate(this.native, this.encodeKey(key), this.valueBuf, updateFlagValue(flags)));
    return this;
  }

  /** Removes and returns the value (hash family). */
  take(key: K): V | undefined {
    this.assertWritable("lookup_and_delete");
    const rc = native().mapLookupAndDelete(this.native, this.encodeKey(key), this.valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("lookup_and_delete", rc);
    return this.valueCodec.decode(this.valueBuf, 0);
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  /** Entries in key order; a key deleted between listing and reading is skipped. */
  *entries(): IterableIterator<[K, V]> {
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) yield [k, v];
    }
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** Address of entry 0's value plus `offset` (array maps; lddw map-value forms), or 0n. */
  valueAddress(offset = 0): bigint {
    return native().mapValueAddress(this.native, offset);
  }
}

/**
 * Per-CPU hash and array: a value per possible CPU. get returns all of them
 * (index = CPU id), as the kernel's syscall does; set gives every CPU the
 * same value, setPerCpu one value each.
 */
export class PerCpuMap<K = Buffer, V = Buffer> extends KeyedMap<K> {
  protected readonly valueCodec: Codec<V>;
  /** Bytes per CPU in the user-space layout: round_up(valueSize, 8). */
  readonly stride: number;
  private readonly allBuf: Buffer;

  constructor(handle: NativeMapHandle, info: NativeMapInfo, region: MapOwner, key?: Codec<K>, value?: Codec<V>) {
    super(handle, info, region, key);
    this.valueCodec = value ?? (raw(info.valueSize) as unknown as Codec<V>);
    checkCodec(info.name, "value", this.valueCodec, info.valueSize);
    this.stride = Math.ceil(info.valueSize / 8) * 8;
    this.allBuf = Buffer.alloc(info.userValueSize);
  }

  protected scratchValue(): Buffer {
    return this.allBuf;
  }

  get(key: K): V[] | undefined {
    const rc = native().mapLookup(this.native, this.encodeKey(key), this.allBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("lookup", rc);
    return Array.from({ length: this.ncpus }, (_, cpu) => this.valueCodec.decode(this.allBuf, cpu * this.stride));
  }

  /** Sets the same value on every CPU. */
  set(key: K, value: V, flags?: MapUpdateFlag): this {
    for (let cpu = 0; cpu < this.ncpus; cpu++) this.valueCodec.encode(value, this.allBuf, cpu * this.stride);
    return this.#update(key, flags);
  }

  /** Sets one value per CPU (index = CPU id); `values.length` must be ncpus. */
  setPerCpu(key: K, values: readonly V[], flags?: MapUpdateFlag): this {
    if (!Array.isArray(values) || values.length !== this.ncpus) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `map '${this.name}': update: ${Array.isArray(values) ? values.length : "no array of"} values for ${this.ncpus} CPUs`,
        { symbol: this.name },
      );
    }
    values.forEach((v: V, cpu: number) => this.valueCodec.encode(v, this.allBuf, cpu * this.stride));
    return this.#update(key, flags);
  }

  #update(key: K, flags: MapUpdateFlag | undefined): this {
    this.assertWritable("update");
    this.check("update", native().mapUpdate(this.native, this.encodeKey(key), this.allBuf, updateFlagValue(flags)));
    return this;
  }

  *entries(): IterableIterator<[K, V[]]> {
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) yield [k, v];
    }
  }

  [Symbol.iterator](): IterableIterator<[K, V[]]> {
    return this.entries();
  }
}

/** Maps without keys (queue, stack, bloom filter): a value codec and one value buffer. */
abstract class KeylessMap<V> extends MapBase {
  protected readonly valueCodec: Codec<V>;
  protected readonly valueBuf: Buffer;

  constructor(handle: NativeMapHandle, info: NativeMapInfo, region: MapOwner, value?: Codec<V>) {
    super(handle, info, region);
    this.valueCodec = value ?? (raw(info.valueSize) as unknown as Codec<V>);
    checkCodec(info.name, "value", this.valueCodec, info.valueSize);
    this.valueBuf = Buffer.alloc(info.valueSize);
  }
}

/** Queue (FIFO) and stack (LIFO) maps. */
export class QueueMap<V = Buffer> extends KeylessMap<V> {

  /** Adds a value; when full, "exist" drops the oldest instead of failing with E2BIG. */
  push(value: V, flags?: "any" | "exist"): this {
    this.assertWritable("push");
    this.valueCodec.encode(value, this.valueBuf, 0);
    this.check("push", native().mapUpdate(this.native, null, this.valueBuf, updateFlagValue(flags)));
    return this;
  }

  /** Removes and returns the next value, or undefined when empty. */
  pop(): V | undefined {
    this.assertWritable("pop");
    const rc = native().mapLookupAndDelete(this.native, null, this.valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("pop", rc);
    return this.valueCodec.decode(this.valueBuf, 0);
  }

  peek(): V | undefined {
    const rc = native().mapLookup(this.native, null, this.valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("peek", rc);
    return this.valueCodec.decode(this.valueBuf, 0);
  }

  get size(): number {
    const n = native().mapCount(this.native);
    this.check("count", n);
    return n;
  }
}

/**
 * BPF_MAP_TYPE_BLOOM_FILTER: a set that answers "maybe present" or "certainly
 * absent". push adds a value, has / peek test one; nothing can be removed.
 * Programs use bpf_map_push_elem and bpf_map_peek_elem (0 maybe present,
 * -ENOENT absent), as with the kernel's. A value never pushed passes the test
 * with probability about (1 - e^(-k n / m))^k (n values pushed, k hash
 * functions, m bits: see `bits` and `hashes`); a pushed value always passes.
 */
export class BloomFilterMap<V = Buffer> extends KeylessMap<V> {

  /** Hash functions per value (mapExtra, or 5 when it is 0). */
  get hashes(): number {
    const extra = Number(native().mapInfo(this.native).mapExtra);
    return extra !== 0 ? extra : BLOOM_DEFAULT_HASHES;
  }

  /** Size of the bit array, as the kernel sizes it: maxEntries * hashes / ln 2, a power of two, 64 .. 2^32. */
  get bits(): number {
    return bloomBits(this.maxEntries, this.hashes);
  }

  /** Adds a value (bpf_map_update_elem from user space, BPF_ANY: the only flag a bloom filter takes). */
  push(value: V): this {
    this.assertWritable("push");
    this.valueCodec.encode(value, this.valueBuf, 0);
    this.check("push", native().mapUpdate(this.native, null, this.valueBuf, 0));
    return this;
  }

  /** True if the value may have been pushed (false positives possible), false if it certainly was not. */
  has(value: V): boolean {
    this.valueCodec.encode(value, this.valueBuf, 0);
    const rc = native().mapLookup(this.native, null, this.valueBuf);
    if (rc === -Errno.ENOENT) return false;
    this.check("peek", rc);
    return true;
  }

  /** Same as has(): the name of the helper programs call (bpf_map_peek_elem). */
  peek(value: V): boolean {
    return this.has(value);
  }
}

/** The kernel's bloom_map_alloc sizing (u32 arithmetic, 7/5 for 1/ln 2). */
export function bloomBits(maxEntries: number, hashes: number): number {
  const n = maxEntries * hashes;
  if (n > 0xffffffff) return 2 ** 32;
  const bits = Math.floor(n / 5) * 7;
  if (bits > 2 ** 31) return 2 ** 32;
  if (bits <= 64) return 64;
  return 2 ** Math.ceil(Math.log2(bits));
}

/**
 * BPF_MAP_TYPE_STACK_TRACE: what bpf_get_stackid stores. Keys are stack ids,
 * values the stack's instruction pointers, innermost first. Only programs
 * add stacks; user space reads and deletes them.
 */
export class StackTraceMap extends KeyedMap<number> {
  /** Frames a value holds (valueSize / 8). */
  readonly maxDepth: number;
  private readonly valueBuf: Buffer;

  constructor(handle: NativeMapHandle, info: NativeMapInfo, region: MapOwner) {
    super(handle, info, region, u32);
    this.maxDepth = info.valueSize / 8;
    this.valueBuf = Buffer.alloc(info.valueSize);
  }

  protected scratchValue(): Buffer {
    return this.valueBuf;
  }

  /** The frames of stack `id` (its depth: the zero padding is cut), or undefined if the id is not in use. */
  get(id: number): bigint[] | undefined {
    const rc = native().mapLookup(this.native, this.encodeKey(id), this.valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    this.check("lookup", rc);
    const frames: bigint[] = [];
    for (let k = 0; k < this.maxDepth; k++) {
      const ip = this.valueBuf.readBigUInt64LE(k * 8);
      if (ip === 0n) break;
      frames.push(ip);
    }
    return frames;
  }

  /** Stack ids in use (the kernel keeps no count: this walks the ids). */
  override get size(): number {
    return Array.from(this.keys()).length;
  }

  /** Stack ids in use with their frames. */
  *entries(): IterableIterator<[number, bigint[]]> {
    for (const id of this.keys()) {
      const frames = this.get(id);
      if (frames !== undefined) yield [id, frames];
    }
  }

  [Symbol.iterator](): IterableIterator<[number, bigint[]]> {
    return this.entries();
  }
}

export interface RingBufStats {
  /** Data bytes. */
  size: number;
  producerPos: number;
  consumerPos: number;
  /** Bytes written and not yet consumed. */
  available: number;
  /** Records refused because the ring was full. */
  drops: number;
}

/** BPF_MAP_TYPE_RINGBUF: read it with a RingBufferConsumer (map.consumer()). */
export class RingBufMap extends MapBase {
  stats(): RingBufStats {
    const s = native().ringbufStats(this.native) as NativeRingbufStats | number;
    if (typeof s === "number") this.fail("stats", s);
    return s;
  }

  /** Writes one record as a program's bpf_ringbuf_output would; false if the ring was full (counted as a drop). */
  output(data: Uint8Array): boolean {
    const rc = native().ringbufOutput(this.native, data, 0);
    if (rc === -Errno.EAGAIN) return false;
    this.check("output", rc);
    return true;
  }

  consumer<T = Buffer>(opts?: RingBufferOptions<T>): RingBufferConsumer<T> {
    return new RingBufferConsumer<T>(this, opts);
  }
}

export type PerfRingStats = NativePerfRingStats;

/** BPF_MAP_TYPE_PERF_EVENT_ARRAY: one ring per CPU (or per slot); read it with a PerfBufferConsumer. */
export class PerfEventArray extends MapBase {
  /** Bytes per ring. */
  get ringSize(): number {
    return Number(native().mapInfo(this.native).mapExtra);
  }

  stats(): PerfRingStats[] {
    const s = native().perfStats(this.native);
    if (typeof s === "number") this.fail("stats", s);
    return s;
  }

  /**
   * Writes one sample as bpf_perf_event_output would, to ring `ring` or the
   * calling CPU's; false if that ring was full (counted as lost).
   */
  output(data: Uint8Array, ring?: number): boolean {
    const rc = native().perfOutput(this.native, ring ?? -1, data);
    if (rc === -Errno.ENOSPC) return false;
    this.check("output", rc);
    return true;
  }

  consumer<T = Buffer>(opts?: PerfBufferOptions<T>): PerfBufferConsumer<T> {
    return new PerfBufferConsumer<T>(this, opts);
  }
}

export type AnyMap =
  | BpfMap<any, any>
  | PerCpuMap<any, any>
  | QueueMap<any>
  | BloomFilterMap<any>
  | StackTraceMap
  | RingBufMap
  | PerfEventArray;

/** The class for a map type, with codecs. */
export function wrapMap(
  handle: NativeMapHandle,
  info: NativeMapInfo,
  region: MapOwner,
  key?: Codec<any>,
  value?: Codec<any>,
): AnyMap {
  const typeName = mapTypeName(info.type);
  // Array keys are indexes: numbers unless the caller wants another codec.
  if (key === undefined && (typeName === "array" || typeName === "percpu_array")) key = u32;
  switch (typeName) {
    case "hash":
    case "lru_hash":
    case "array":
    case "lpm_trie":
      return new BpfMap(handle, info, region, key, value);
    case "percpu_hash":
    case "percpu_array":
      return new PerCpuMap(handle, info, region, key, value);
    case "queue":
    case "stack":
      return new QueueMap(handle, info, region, value);
    case "bloom_filter":
      return new BloomFilterMap(handle, info, region, value);
    case "stack_trace":
      return new StackTraceMap(handle, info, region);
    case "ringbuf":
      return new RingBufMap(handle, info, region);
    case "perf_event_array":
      return new PerfEventArray(handle, info, region);
    default:
      native().mapClose(handle);
      throw new BpfhookError("MAP_ERROR", `map '${info.name}': ${describeMapType(info.type)} is not supported`, {
        symbol: info.name,
      });
  }
}
