/**
 * SharedRegion: a named POSIX shared-memory region holding maps (layout in
 * core/native/region/include/bpfhook/region.h). The creating process owns
 * the name and unlinks it on close (and, as a safety net, at process exit);
 * any process may open it by name and find its maps by name or index.
 *
 *   const region = SharedRegion.create();            // or SharedRegion.default()
 *   const counts = region.createMap({ name: "counts", type: "hash", key: u32, value: u64, maxEntries: 1024 });
 *   counts.set(1, 5n);
 *   const other = SharedRegion.open(region.name);     // what an agent does
 *   other.openMap<BpfMap<number, bigint>>("counts", { key: u32, value: u64 }).get(1); // 5n
 */
import { BpfhookError } from "../errors.js";
import { native } from "../native/binding.js";
import type { NativeMapHandle, NativeRegionHandle, NativeRegionInfo } from "../native/addon-types.js";
import type { Codec } from "./codecs.js";
import { errnoName, Errno, mapError } from "./errors.js";
import {
  wrapMap,
  type AnyMap,
  type BloomFilterMap,
  type BpfMap,
  type MapOwner,
  type PerCpuMap,
  type PerfEventArray,
  type QueueMap,
  type RingBufMap,
  type StackTraceMap,
} from "./map.js";
import { describeMapType } from "../kernel-names.js";
import { MapFlags, MapType, mapTypeName, type MapCreateOptions, type MapDescriptor, type MapTypeName } from "./types.js";

export interface SharedRegionOptions {
  /**
   * POSIX shm name ("/bpfhook-..."; a missing leading '/' is added). Default:
   * /bpfhook-<pid>-<16 random hex digits>, a fresh one tried when it exists,
   * so that no other user can take the name first.
   */
  name?: string;
  /** Bytes (rounded up to a page). Pages are only allocated when touched. Default 64 MiB. */
  size?: number;
  /** Directory capacity. Default 256. */
  maxMaps?: number;
}

export interface RegionCodecs<K, V> {
  key?: Codec<K>;
  value?: Codec<V>;
}

const owned = new Set<SharedRegion>();
let exitHook = false;
let defaultRegion: SharedRegion | undefined;

function ensureExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  // Node runs no finalizers at exit, so a region never closed would leave
  // its name in /dev/shm; unlink what we own on the way out.
  process.once("exit", () => {
    for (const r of Array.from(owned)) r.close();  // close() removes from the set
  });
}

function regionError(name: string, op: string, rc: number): BpfhookError {
  const n = -rc;
  if (n === Errno.EPROTO) {
    return new BpfhookError(
      "ABI_MISMATCH",
      `region '${name}': ${op}: EPROTO (not a bpfhook region of layout version 2, or its header is corrupt)`,
      { errno: rc, symbol: name },
    );
  }
  if (n === Errno.EPERM || n === Errno.EACCES) {
    const why =
      n === Errno.EPERM
        ? "owned by another user; only the owner's regions are opened"
        : "its mode lets group or others access it; a region must be mode 0600";
    return new BpfhookError("MAP_ERROR", `region '${name}': ${op}: ${errnoName(rc)} (${why})`, {
      errno: rc,
      symbol: name,
    });
  }
  if (n === Errno.ENOENT && op === "open") {
    return new BpfhookError("NOT_FOUND", `region '${name}': open: ENOENT (no such shared-memory object)`, {
      errno: rc,
      symbol: name,
    });
  }
  const reason =
    n === Errno.EEXIST
      ? "a shared-memory object of that name exists"
      : n === Errno.EINVAL
        ? "bad name or size (one leading '/', no other; size above the header and directory)"
        : n === Errno.EAGAIN
          ? "the creator has not finished setting it up; retry"
          : n === Errno.ENOMEM || n === Errno.ENOSPC
            ? "the region does not fit: /dev/shm (tmpfs) or the address space has no room for that size; choose a smaller region.size"
            : "failed";
  return new BpfhookError("MAP_ERROR", `region '${name}': ${op}: ${errnoName(rc)} (${reason})`, {
    errno: rc,
    symbol: name,
  });
}

export class SharedRegion implements MapOwner {
  readonly name: string;
  readonly size: number;
  /** Possible CPUs the per-CPU maps are laid out for. */
  readonly ncpus: number;
  /** True for the creator (it unlinks the name on close). */
  readonly owner: boolean;
  readonly layoutVersion: number;
  #handle: NativeRegionHandle | undefined;

  private constructor(handle: NativeRegionHandle) {
    this.#handle = handle;
    const info = native().regionInfo(handle);
    this.name = info.name;
    this.size = info.size;
    this.ncpus = info.ncpus;
    this.owner = info.owner;
    this.layoutVersion = info.layoutVersion;
    if (this.owner) {
      owned.add(this);
      ensureExitHook();
    }
  }

  /** Creates a new region (the caller owns its name). */
  static create(opts: SharedRegionOptions = {}): SharedRegion {
    let name: string | null = opts.name ?? null;
    if (name !== null && !name.startsWith("/")) name = `/${name}`;
    const size = opts.size ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new BpfhookError("BAD_ARGUMENT", `SharedRegion.create: size must be a positive integer, got ${size}`);
    }
    const maxMaps = opts.maxMaps ?? 256;
    if (!Number.isInteger(maxMaps) || maxMaps < 1 || maxMaps > 65536) {
      throw new BpfhookError("BAD_ARGUMENT", `SharedRegion.create: maxMaps must be 1..65536, got ${maxMaps}`);
    }
    const h = native().regionCreate(name, size, maxMaps);
    if (typeof h === "number") throw regionError(name ?? `/bpfhook-${process.pid}-(random)`, "create", h);
    return new SharedRegion(h);
  }

  /** Maps an existing region by name, as an agent in another process does. */
  static open(name: string): SharedRegion {
    const full = name.startsWith("/") ? name : `/${name}`;
    const h = native().regionOpen(full);
    if (typeof h === "number") throw regionError(full, "open", h);
    return new SharedRegion(h);
  }

  /**
   * The process's default region, created on first use: where the runtime
   * puts the maps of loaded objects, and the region checked-mode programs
   * may access. `opts` apply only to that first call.
   */
  static default(opts: SharedRegionOptions = {}): SharedRegion {
    if (defaultRegion === undefined || defaultRegion.closed) {
      const sizeEnv = process.env.BPFHOOK_REGION_SIZE;
      const size = opts.size ?? (sizeEnv ? Number(sizeEnv) : undefined);
      defaultRegion = SharedRegion.create({ ...opts, ...(size === undefined ? {} : { size }) });
      native().regionSetDefault(defaultRegion.native);
    }
    return defaultRegion;
  }

  get native(): NativeRegionHandle {
    if (this.#handle === undefined) throw new BpfhookError("BAD_ARGUMENT", `region '${this.name}': closed`);
    return this.#handle;
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  #info(): NativeRegionInfo {
    return native().regionInfo(this.native);
  }

  /** Bumped on every directory change (a new map). */
  get generation(): number {
    return this.#info().generation;
  }

  /** Bytes in use: header, directory and the storage of live maps (freed storage excluded). */
  get used(): number {
    return this.#info().used;
  }

  /** Bytes of freed storage waiting for reuse. */
  get freeBytes(): number {
    return this.#info().freeBytes;
  }

  /** Maps in the directory now (freed ones excluded). */
  get liveMaps(): number {
    return this.#info().liveMaps;
  }

  get maxMaps(): number {
    return this.#info().maxMaps;
  }

  /** Where this process mapped the region (it differs between mappings). */
  get baseAddress(): bigint {
    return this.#info().baseAddress;
  }

  /** The directory: every live map in the region, by directory index (freed entries are reused). */
  maps(): MapDescriptor[] {
    const list = native().regionMaps(this.native);
    if (typeof list === "number") {
      throw new BpfhookError(
        "MAP_ERROR",
        `region '${this.name}': maps: ${errnoName(list)} (the directory is corrupt: a count past its capacity or a map's storage outside the region)`,
        { errno: list, symbol: this.name },
      );
    }
    return list.map((d) => ({ ...d, typeName: mapTypeName(d.type) }));
  }

  createMap<K = Buffer, V = Buffer>(opts: MapCreateOptions<K, V> & { type: "hash" | "lru_hash" | "lpm_trie" }): BpfMap<K, V>;
  /** Array keys are indexes: a u32 codec unless another is given. */
  createMap<V = Buffer, K = number>(opts: MapCreateOptions<K, V> & { type: "array" }): BpfMap<K, V>;
  createMap<K = Buffer, V = Buffer>(opts: MapCreateOptions<K, V> & { type: "percpu_hash" }): PerCpuMap<K, V>;
  createMap<V = Buffer, K = number>(opts: MapCreateOptions<K, V> & { type: "percpu_array" }): PerCpuMap<K, V>;
  createMap<V = Buffer>(opts: MapCreateOptions<never, V> & { type: "queue" | "stack" }): QueueMap<V>;
  /** Bloom filters: maxEntries values expected, mapExtra hash functions (1..15, 0 = 5), MapFlags.ZERO_SEED. */
  createMap<V = Buffer>(opts: MapCreateOptions<never, V> & { type: "bloom_filter" }): BloomFilterMap<V>;
  /** Stack traces: give valueSize (8 bytes per frame kept). */
  createMap(opts: MapCreateOptions<never, never> & { type: "stack_trace" }): StackTraceMap;
  createMap(opts: MapCreateOptions & { type: "ringbuf" }): RingBufMap;
  createMap(opts: MapCreateOptions & { type: "perf_event_array" }): PerfEventArray;
  createMap(opts: MapCreateOptions<any, any>): AnyMap;
  createMap(opts: MapCreateOptions<any, any>): AnyMap {
    if (opts === null || typeof opts !== "object" || typeof opts.name !== "string") {
      throw new BpfhookError("BAD_ARGUMENT", "createMap: expected { name, type, maxEntries, ... }");
    }
    const name = opts.name;
    const type = typeof opts.type === "number" ? opts.type : MapType[opts.type as MapTypeName];
    const typeName = type === undefined ? undefined : mapTypeName(type);
    if (typeName === undefined) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `map '${name}': create: ${typeof type === "number" ? describeMapType(type) : `map type '${String(opts.type)}'`} is not supported (supported: ${Object.keys(MapType).join(", ")})`,
        { symbol: name },
      );
    }
    const keySize = opts.keySize ?? opts.key?.size ?? defaultKeySize(typeName);
    const valueSize = opts.valueSize ?? opts.value?.size ?? defaultValueSize(typeName);
    if (keySize === undefined || valueSize === undefined) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `map '${name}': create: give ${keySize === undefined ? "keySize or a key codec" : "valueSize or a value codec"}`,
        { symbol: name },
      );
    }
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 0) {
      throw new BpfhookError("BAD_ARGUMENT", `map '${name}': create: maxEntries must be a non-negative integer`, {
        symbol: name,
      });
    }
    const h = native().mapCreate(this.native, {
      name,
      type,
      keySize,
      valueSize,
      maxEntries: opts.maxEntries,
      flags: opts.flags ?? 0,
      mapExtra: BigInt(opts.mapExtra ?? 0),
      freeOnClose: opts.freeOnClose === true,
    });
    if (typeof h === "number") {
      throw mapError(name, "create", h, createReason(typeName, h, this, { keySize, valueSize, maxEntries: opts.maxEntries, mapExtra: opts.mapExtra, flags: opts.flags }));
    }
    return this.#wrap(h, opts.key, opts.value);
  }

  /** Opens a map of this region by name or directory index, with codecs for its keys and values. */
  openMap<M extends AnyMap = AnyMap>(nameOrIndex: string | number, codecs: RegionCodecs<any, any> = {}): M {
    const h = native().mapOpen(this.native, nameOrIndex);
    if (typeof h === "number") {
      if (h === -Errno.ENOENT) {
        throw new BpfhookError("NOT_FOUND", `region '${this.name}': no map ${JSON.stringify(nameOrIndex)}`, {
          errno: h,
          symbol: String(nameOrIndex),
        });
      }
      throw mapError(String(nameOrIndex), "open", h);
    }
    return this.#wrap(h, codecs.key, codecs.value) as M;
  }

  #wrap(h: NativeMapHandle, key?: Codec<any>, value?: Codec<any>): AnyMap {
    const info = native().mapInfo(h);
    try {
      return wrapMap(h, info, this, key, value);
    } catch (err) {
      native().mapClose(h);
      throw err;
    }
  }

  /**
   * Drops this mapping; the owner also unlinks the name. Open maps keep the
   * memory mapped until they are closed.
   */
  close(): void {
    if (this.#handle === undefined) return;
    if (defaultRegion === this) {
      native().regionSetDefault(null);
      defaultRegion = undefined;
    }
    native().regionClose(this.#handle);
    this.#handle = undefined;
    owned.delete(this);
  }
}

/** A region removed by cleanStaleRegions. */
export interface StaleRegion {
  /** Its shm name ("/bpfhook-..."). */
  name: string;
  /** The pid of the process that created it (gone, or reused by another process). */
  pid: number;
}

/**
 * Removes the regions that processes of this user left in /dev/shm when they
 * died without closing them (killed by a signal): those whose creator's pid
 * is gone, or now belongs to a process with another start time. Regions of
 * live processes, of other users, and of other pid namespaces are left
 * alone, and so are the names in `keep`. Runtime.create calls it, keeping
 * the regions whose agents still run (agent mode: the controller died, the
 * program and its maps live on); `bpfhook clean` removes those too.
 */
export function cleanStaleRegions(opts: { keep?: readonly string[] } = {}): StaleRegion[] {
  const rc = native().regionCleanStale([...(opts.keep ?? [])]);
  if (typeof rc === "number") {
    throw new BpfhookError("MAP_ERROR", `cleanStaleRegions: cannot read /dev/shm: ${errnoName(rc)}`, { errno: rc });
  }
  return rc;
}

function defaultKeySize(t: MapTypeName): number | undefined {
  switch (t) {
    case "array":
    case "percpu_array":
    case "perf_event_array":
    case "stack_trace":
      return 4;
    case "queue":
    case "stack":
    case "ringbuf":
    case "bloom_filter":
      return 0;
    default:
      return undefined;
  }
}

function defaultValueSize(t: MapTypeName): number | undefined {
  switch (t) {
    case "perf_event_array":
      return 4;
    case "ringbuf":
      return 0;
    default:
      return undefined;
  }
}

interface CreateSizes {
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapExtra: bigint | number | undefined;
  flags: number | undefined;
}

/** What the kernel's bloom_map_alloc refuses, first match (EINVAL names it). */
function bloomReason(s: CreateSizes): string {
  const extra = BigInt(s.mapExtra ?? 0);
  if (s.keySize !== 0) return `bloom filter: key size must be 0 (keyless), got ${s.keySize}`;
  if (s.valueSize === 0) return "bloom filter: value size must be > 0";
  if (s.maxEntries === 0) return "bloom filter: maxEntries must be > 0 (the number of values expected)";
  if ((extra & ~0xfn) !== 0n) return `bloom filter: mapExtra is the number of hash functions, 0..15 (0 = 5), got ${extra}`;
  const allowed = MapFlags.NUMA_NODE | MapFlags.RDONLY | MapFlags.WRONLY | MapFlags.RDONLY_PROG | MapFlags.WRONLY_PROG | MapFlags.ZERO_SEED;
  const bad = (s.flags ?? 0) & ~allowed;
  if (bad !== 0) return `bloom filter: flags 0x${bad.toString(16)} not allowed (only ZERO_SEED, NUMA_NODE and the access flags)`;
  return "bloom filter: bad name, sizes or flags";
}

function createReason(t: MapTypeName, rc: number, region: SharedRegion, sizes: CreateSizes): { reason?: string } {
  switch (-rc) {
    case Errno.EEXIST:
      return { reason: `region '${region.name}' already has a map of that name` };
    case Errno.ENOMEM:
      return { reason: `region '${region.name}' is full (${region.size} bytes)` };
    case Errno.ENOSPC:
      return { reason: `region '${region.name}' directory is full (${region.maxMaps} maps)` };
    case Errno.E2BIG:
      return { reason: "key, value or entry count above the limits" };
    case Errno.EBUSY:
      return { reason: `region '${region.name}' directory lock stayed held by a live process past the wait (1 s)` };
    case Errno.EINVAL:
      if (t === "ringbuf") return { reason: "ring buffer: key and value size 0, maxEntries a power of two >= 4096" };
      if (t === "array" || t === "percpu_array") return { reason: "array: key size 4, value size and maxEntries > 0" };
      if (t === "queue" || t === "stack") return { reason: `${t}: key size 0, value size and maxEntries > 0` };
      if (t === "lpm_trie") return { reason: "LPM trie: key size 5..260 (u32 prefixlen + data), value size > 0" };
      if (t === "perf_event_array") return { reason: "perf event array: ring size (mapExtra) a power of two >= 4096" };
      if (t === "bloom_filter") return { reason: bloomReason(sizes) };
      if (t === "stack_trace") {
        return { reason: "stack trace: key size 4, value size a multiple of 8 up to 127 frames (1016 bytes), maxEntries > 0" };
      }
      return { reason: "bad name, sizes or flags" };
    default:
      return {};
  }
}
