/**
 * Writing into a shared region the way another process can: through the
 * POSIX shared-memory object's file (/dev/shm/<name> on Linux), at offsets
 * computed from the layouts in core/native/region/include/bpfhook/region.h
 * and core/native/maps/src/map_internal.h. Used by 25.maps-corruption and the
 * child scripts it spawns.
 */
import { closeSync, openSync, readSync, writeSync } from "node:fs";

/** bh_region_header fields (byte offsets). */
export const RegionHeader = {
  dirOffset: 40,
  dirCapacity: 48,
  dirCount: 52,
  lock: 60,
  dataOffset: 64,
  allocNext: 72,
} as const;

/** bh_region_map_desc: 256 bytes each. */
export const Desc = { size: 256, storageOff: 104, storageSize: 112 } as const;

/** MapHeader fields, from the map's storage block (512 bytes). */
export const MapHeader = {
  nBuckets: 40,
  poolSize: 44,
  elemSize: 48,
  ringSize: 56,
  offA: 64,
  offB: 72,
  offC: 80,
  lock: 128,
  root: 132,
  head: 136,
  tail: 140,
  nodeFree: 144,
  nodeNext: 148,
  producerPos: 152,
  freeHead: 192,
  nextUnused: 200,
  count: 204,
  lruClock: 256,
  lruHand: 260,
  consumerPos: 320,
  consumerLock: 328,
  seqlock: 168, // LPM writers (u64: count and holder tid)
  size: 512,
} as const;

/** PerfRingCtl: 128 bytes per ring; lock words at 0 and 80. */
export const PerfCtl = { size: 128, lock: 0, head: 8, tail: 64, consumerLock: 80 } as const;

export class ShmFile {
  readonly fd: number;
  constructor(regionName: string) {
    this.fd = openSync(`/dev/shm${regionName.startsWith("/") ? "" : "/"}${regionName}`, "r+");
  }
  close(): void {
    closeSync(this.fd);
  }
  read(off: number, len: number): Buffer {
    const b = Buffer.alloc(len);
    readSync(this.fd, b, 0, len, off);
    return b;
  }
  u32(off: number): number {
    return this.read(off, 4).readUInt32LE(0);
  }
  u64(off: number): bigint {
    return this.read(off, 8).readBigUInt64LE(0);
  }
  setU32(off: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0, 0);
    writeSync(this.fd, b, 0, 4, off);
  }
  setU64(off: number, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v), 0);
    writeSync(this.fd, b, 0, 8, off);
  }
}
