/** eBPF maps in a shared region: the region, typed maps, codecs, ring and perf buffer consumers. */
export {
  SharedRegion,
  cleanStaleRegions,
  type SharedRegionOptions,
  type RegionCodecs,
  type StaleRegion,
} from "./region.js";
export {
  BloomFilterMap,
  BpfMap,
  MapBase,
  PerCpuMap,
  PerfEventArray,
  QueueMap,
  RingBufMap,
  StackTraceMap,
  type AnyMap,
  type PerfRingStats,
  type RingBufStats,
  bloomBits,
} from "./map.js";
export { RingBufferConsumer, type RingBufferOptions } from "./ringbuf.js";
export { PerfBufferConsumer, type PerfBufferOptions, type PerfSample } from "./perfbuf.js";
export { type PollOptions } from "./poller.js";
export {
  BLOOM_DEFAULT_HASHES,
  MapFlags,
  MapType,
  MapUpdateFlags,
  PERF_DEFAULT_RING_SIZE,
  STACK_MAX_DEPTH,
  StackFlags,
  mapTypeName,
  type MapCreateOptions,
  type MapDescriptor,
  type MapTypeName,
  type MapUpdateFlag,
} from "./types.js";
export { Errno, errnoName, mapError } from "./errors.js";
import * as codec from "./codecs.js";
/** Key and value codecs: codec.u32, codec.u64, codec.struct({...}), codec.lpmKey(4), ... */
export { codec };
export type { Codec, CodecValue, LpmKey, StructCodec, StructFields, StructValue } from "./codecs.js";
