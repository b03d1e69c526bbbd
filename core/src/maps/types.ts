/**
 * Map types, flags and the options that create a map. Type ids and flag
 * values are the kernel's, so specs from ELF objects pass straight through.
 */
import type { Codec } from "./codecs.js";

/** The map types the native side implements, by kernel id. */
export const MapType = {
  hash: 1,
  array: 2,
  perf_event_array: 4,
  percpu_hash: 5,
  percpu_array: 6,
  stack_trace: 7,
  lru_hash: 9,
  lpm_trie: 11,
  queue: 22,
  stack: 23,
  ringbuf: 27,
  bloom_filter: 30,
} as const;

export type MapTypeName = keyof typeof MapType;

export function mapTypeName(id: number): MapTypeName | undefined {
  for (const [name, value] of Object.entries(MapType)) if (value === id) return name as MapTypeName;
  return undefined;
}

/** Creation flags (the kernel's BPF_F_* values) the native maps accept; which types take which is the kernel's rule. */
export const MapFlags = {
  NO_PREALLOC: 1 << 0,
  NO_COMMON_LRU: 1 << 1,
  NUMA_NODE: 1 << 2,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
  /** Hash maps and bloom filters: hash seed 0 instead of a random one (the same layout every run). */
  ZERO_SEED: 1 << 6,
  RDONLY_PROG: 1 << 7,
  WRONLY_PROG: 1 << 8,
  MMAPABLE: 1 << 10,
} as const;

/** Bloom filters: hash functions when mapExtra is 0 (the kernel's default). */
export const BLOOM_DEFAULT_HASHES = 5;

/** Update flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST). */
export const MapUpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;
export type MapUpdateFlag = "any" | "noexist" | "exist" | number;

export function updateFlagValue(flag: MapUpdateFlag | undefined): number {
  switch (flag) {
    case undefined:
    case "any":
      return 0;
    case "noexist":
      return 1;
    case "exist":
      return 2;
    default:
      return flag;
  }
}

/** bpf_get_stackid / bpf_get_stack flags (BPF_F_*): OR the frames to skip (0..255) into them. */
export const StackFlags = { USER_STACK: 1 << 8, FAST_STACK_CMP: 1 << 9, REUSE_STACKID: 1 << 10 } as const;

/** Most frames a stack trace value holds (the kernel's perf_event_max_stack default). */
export const STACK_MAX_DEPTH = 127;

/** perf event arrays: per-ring bytes when not given (map_extra). */
export const PERF_DEFAULT_RING_SIZE = 64 * 1024;

export interface MapCreateOptions<K = Buffer, V = Buffer> {
  /** Unique in the region; up to 63 printable ASCII characters without spaces. */
  name: string;
  type: MapTypeName | number;
  /** Defaults to the key codec's size (0 for queue, stack, ring buffer, bloom filter; 4 for arrays and stack traces). */
  keySize?: number;
  /** Defaults to the value codec's size. Stack traces: 8 bytes per frame kept (up to 127 frames). */
  valueSize?: number;
  /**
   * Ring buffer: data bytes (power of two, >= 4096). Perf event array: rings (0 = one per possible CPU).
   * Bloom filter: the number of values expected (sizes the bit array).
   */
  maxEntries: number;
  /** Kernel BPF_F_* creation flags. */
  flags?: number;
  /**
   * Perf event array: bytes per ring (power of two >= 4096; default 64 KiB).
   * Bloom filter: number of hash functions, 1..15 (0 = 5), the kernel's map_extra.
   */
  mapExtra?: bigint | number;
  /**
   * Free the map (its directory entry and storage, zeroed and reused) when the
   * last handle on it in this process closes, instead of keeping it for the
   * region's life. The runtime does this for the maps of an object it loads,
   * so unloading the object gives their space back. Default false.
   */
  freeOnClose?: boolean;
  key?: Codec<K>;
  value?: Codec<V>;
}

/** A map's directory entry, as any process sees it. */
export interface MapDescriptor {
  index: number;
  name: string;
  type: number;
  typeName: MapTypeName | undefined;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  mapExtra: bigint;
  storageOffset: number;
  storageSize: number;
}
