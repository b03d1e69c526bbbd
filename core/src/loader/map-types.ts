/** Kernel constants for map specs (values from linux/bpf.h). */

export const BPF_MAP_TYPE = {
  UNSPEC: 0,
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  STACK_TRACE: 7,
  CGROUP_ARRAY: 8,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  QUEUE: 22,
  STACK: 23,
  RINGBUF: 27,
  BLOOM_FILTER: 30,
  USER_RINGBUF: 31,
} as const;

export const BPF_F_NO_PREALLOC = 1 << 0;
/** Programs may read but not write the map (set on .rodata maps). */
export const BPF_F_RDONLY_PROG = 1 << 7;
/** The map's memory can be mapped by user space (set on global data maps, as the kernel needs for them). */
export const BPF_F_MMAPABLE = 1 << 10;
