/**
 * The host side of the GPU-resident maps (src/ptx/runtime.ts has the device
 * side): descriptors, arrays, hashes (FNV-1a 64, linear probing, per-slot
 * states), per-CPU arrays sharded per GPU thread and summed here, and the
 * `bh_ring` buffer drained into records. Everything reads through a
 * `DeviceMemory` (the native piece's cuMemcpyDtoH on a GPU; a Buffer in
 * tests), so the same code checks the layouts without a GPU.
 */
import { MAP_DESCRIPTOR, RING_RECORD } from "./ptx/runtime.js";

/** Reads device memory: `len` bytes at device address `addr`. */
export interface DeviceMemory {
  read(addr: bigint, len: number): Uint8Array;
}

/** A Buffer standing for device memory from `base` on (tests; the stand-in driver's host memory). */
export class BufferMemory implements DeviceMemory {
  constructor(
    readonly bytes: Buffer,
    readonly base: bigint,
  ) {}
  read(addr: bigint, len: number): Uint8Array {
    const off = Number(addr - this.base);
    if (addr < this.base || off + len > this.bytes.length) {
      throw new RangeError(`device address 0x${addr.toString(16)} (+${len}) is outside the buffer at 0x${this.base.toString(16)}`);
    }
    return this.bytes.subarray(off, off + len);
  }
}

/** Map descriptor fields (64 bytes of u64): the offsets runtime.ts's PTX reads. */
export const GPU_MAP_DESCRIPTOR = MAP_DESCRIPTOR;
export const GPU_MAP_TYPES = Object.freeze({ hash: 1, array: 2, perCpuArray: 6, lruHash: 9 });
/** Hash slot states (u32 each). */
export const HASH_SLOT = Object.freeze({ empty: 0, writing: 1, live: 2, deleted: 3 });
/** Ring record kinds, as runtime.ts writes them. */
export const RING_KIND = Object.freeze({ printk: RING_RECORD.printk, perf: RING_RECORD.perf, puts: RING_RECORD.puts });

export interface GpuMapDescriptor {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly values: bigint;
  readonly keys: bigint;
  readonly states: bigint;
  /** Hash: slots; per-CPU array: shards (0: one copy). */
  readonly capacity: number;
}

export function readDescriptor(mem: DeviceMemory, addr: bigint): GpuMapDescriptor {
  const b = Buffer.from(mem.read(addr, GPU_MAP_DESCRIPTOR.size));
  const u = (off: number): bigint => b.readBigUInt64LE(off);
  return {
    type: Number(u(GPU_MAP_DESCRIPTOR.type)),
    keySize: Number(u(GPU_MAP_DESCRIPTOR.keySize)),
    valueSize: Number(u(GPU_MAP_DESCRIPTOR.valueSize)),
    maxEntries: Number(u(GPU_MAP_DESCRIPTOR.maxEntries)),
    values: u(GPU_MAP_DESCRIPTOR.values),
    keys: u(GPU_MAP_DESCRIPTOR.keys),
    states: u(GPU_MAP_DESCRIPTOR.states),
    capacity: Number(u(GPU_MAP_DESCRIPTOR.capacity)),
  };
}

/** The slot stride of keys and values: the size rounded up to 8. */
export const stride8 = (n: number): number => (n + 7) & ~7;

/** FNV-1a 64 over the key bytes: bh_hash of the PTX runtime. */
export function fnv1a64(key: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of key) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/** Hash slots for max_entries (what the native piece allocates): a power of two >= 2 x max_entries, at least 8. */
export function hashCapacity(maxEntries: number): number {
  let p = 1;
  while (p < Math.max(8, 2 * maxEntries)) p *= 2;
  return p;
}

function isHash(d: GpuMapDescriptor): boolean {
  return d.type === GPU_MAP_TYPES.hash || d.type === GPU_MAP_TYPES.lruHash;
}

/** A GPU map read on the host, with the CPU map API's lookup / entries shape. */
export class GpuMapView {
  constructor(
    private readonly mem: DeviceMemory,
    readonly descriptor: GpuMapDescriptor,
    readonly name = "(gpu map)",
  ) {}

  static at(mem: DeviceMemory, descriptorAddr: bigint, name?: string): GpuMapView {
    return new GpuMapView(mem, readDescriptor(mem, descriptorAddr), name);
  }

  private get shards(): number {
    return this.descriptor.type === GPU_MAP_TYPES.perCpuArray && this.descriptor.capacity > 0 ? this.descriptor.capacity : 1;
  }

  /** Array types: entry `index` (of shard 0 for a sharded per-CPU array, see `lookupPerShard`). */
  private arrayValue(index: number, shard = 0): Uint8Array | undefined {
    const d = this.descriptor;
    if (index < 0 || index >= d.maxEntries) return undefined;
    const slot = BigInt(index * this.shards + shard);
    return this.mem.read(d.values + slot * BigInt(stride8(d.valueSize)), d.valueSize);
  }

  private hashSlot(key: Uint8Array): number | undefined {
    const d = this.descriptor;
    const ks = stride8(d.keySize);
    const mask = BigInt(d.capacity - 1);
    let slot = Number(fnv1a64(key.subarray(0, d.keySize)) & mask);
    for (let n = 0; n < d.capacity; n++) {
      const state = Buffer.from(this.mem.read(d.states + BigInt(slot * 4), 4)).readUInt32LE(0);
      if (state === HASH_SLOT.empty) return undefined;
      if (state === HASH_SLOT.live && Buffer.from(this.mem.read(d.keys + BigInt(slot * ks), d.keySize)).equals(Buffer.from(key))) return slot;
      slot = (slot + 1) & (d.capacity - 1);
    }
    return undefined;
  }

  /** The value for `key` (array types: a u32 index), undefined when absent; per-CPU arrays: the shards summed as u64 words. */
  lookup(key: Uint8Array): Uint8Array | undefined {
    const d = this.descriptor;
    if (key.length !== d.keySize) throw new RangeError(`${this.name}: key is ${key.length} bytes, the map's are ${d.keySize}`);
    if (isHash(d)) {
      const slot = this.hashSlot(key);
      return slot === undefined ? undefined : this.mem.read(d.values + BigInt(slot * stride8(d.valueSize)), d.valueSize);
    }
    const index = Buffer.from(key).readUInt32LE(0);
    if (this.shards === 1) return this.arrayValue(index);
    return this.sumShards(index);
  }

  /** Per-CPU arrays: each shard's value of entry `index` (what the kernel's per-CPU lookup gives per CPU). */
  lookupPerShard(index: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let s = 0; s < this.shards; s++) {
      const v = this.arrayValue(index, s);
      if (v) out.push(v);
    }
    return out;
  }

  /** The shards of entry `index` added as little-endian u64 words (a counter's total); the tail under 8 bytes from shard 0. */
  private sumShards(index: number): Uint8Array | undefined {
    const parts = this.lookupPerShard(index);
    if (parts.length === 0) return undefined;
    const out = Buffer.from(parts[0]!);
    for (let w = 0; w + 8 <= out.length; w += 8) {
      let sum = 0n;
      for (const p of parts) sum += Buffer.from(p).readBigUInt64LE(w);
      out.writeBigUInt64LE(sum & 0xffffffffffffffffn, w);
    }
    return out;
  }

  /** Every live entry: [key, value] (arrays: every index). */
  *entries(): Generator<[Uint8Array, Uint8Array]> {
    const d = this.descriptor;
    if (!isHash(d)) {
      for (let i = 0; i < d.maxEntries; i++) {
        const k = Buffer.alloc(d.keySize);
        k.writeUInt32LE(i, 0);
        yield [k, this.lookup(k)!];
      }
      return;
    }
    const ks = stride8(d.keySize), vs = stride8(d.valueSize);
    for (let slot = 0; slot < d.capacity; slot++) {
      const state = Buffer.from(this.mem.read(d.states + BigInt(slot * 4), 4)).readUInt32LE(0);
      if (state !== HASH_SLOT.live) continue;
      yield [this.mem.read(d.keys + BigInt(slot * ks), d.keySize), this.mem.read(d.values + BigInt(slot * vs), d.valueSize)];
    }
  }
}

export interface RingRecord {
  readonly kind: number;
  readonly extra: bigint;
  readonly payload: Uint8Array;
  /** trace_printk: the three arguments and the format, unformatted. */
  readonly printk?: { readonly args: readonly [bigint, bigint, bigint]; readonly format: string };
}

export interface RingDrain {
  readonly records: RingRecord[];
  /** Where the next drain starts: the first uncommitted record, or head. */
  readonly consumed: bigint;
  /** Records the GPU dropped for want of room (bh_ring[3]). */
  readonly dropped: bigint;
}

/**
 * Reads the committed records of `bh_ring` ({ data, size, head, dropped },
 * 32 bytes at `ringAddr`) from offset `from`: a record's u32 length is its
 * commit (written last, after membar.sys), so a zero length stops the drain
 * there; records are 8-aligned.
 */
export function drainRing(mem: DeviceMemory, ringAddr: bigint, from = 0n): RingDrain {
  const ring = Buffer.from(mem.read(ringAddr, 32));
  const data = ring.readBigUInt64LE(0), size = ring.readBigUInt64LE(8), head = ring.readBigUInt64LE(16), dropped = ring.readBigUInt64LE(24);
  const end = head < size ? head : size;
  const records: RingRecord[] = [];
  let pos = from;
  while (pos + 16n <= end) {
    const hdr = Buffer.from(mem.read(data + pos, 16));
    const len = hdr.readUInt32LE(0);
    if (len === 0) break; // reserved, not committed yet
    if (len < 16 || pos + BigInt(len) > end) throw new RangeError(`bh_ring: record at ${pos} has length ${len} (head ${head})`);
    const kind = hdr.readUInt32LE(4);
    const extra = hdr.readBigUInt64LE(8);
    const payload = mem.read(data + pos + 16n, len - 16);
    let printk: RingRecord["printk"];
    if (kind === RING_KIND.printk && payload.length >= 24) {
      const p = Buffer.from(payload);
      const fmt = p.subarray(24, 24 + Number(extra));
      const nul = fmt.indexOf(0);
      printk = {
        args: [p.readBigUInt64LE(0), p.readBigUInt64LE(8), p.readBigUInt64LE(16)],
        format: fmt.toString("utf8", 0, nul < 0 ? fmt.length : nul),
      };
    }
    records.push({ kind, extra, payload, ...(printk ? { printk } : {}) });
    pos += BigInt(stride8(len));
  }
  return { records, consumed: pos, dropped };
}

/** Device memory as copied into a dump: segments of known addresses. */
export class SegmentMemory implements DeviceMemory {
  constructor(readonly segments: readonly { readonly addr: bigint; readonly bytes: Uint8Array }[]) {}
  read(addr: bigint, len: number): Uint8Array {
    for (const s of this.segments) {
      if (addr >= s.addr && addr + BigInt(len) <= s.addr + BigInt(s.bytes.length)) {
        const off = Number(addr - s.addr);
        return s.bytes.subarray(off, off + len);
      }
    }
    throw new RangeError(`device address 0x${addr.toString(16)} (+${len}) is in no segment of the dump`);
  }
}

export interface GpuDump {
  /** The module's maps by the object's map index. */
  readonly maps: readonly GpuMapView[];
  /** bh_ring's records (undefined when the dump has no ring). */
  readonly ring?: RingDrain;
  readonly memory: SegmentMemory;
}

export const GPU_DUMP_MAGIC = "BHGPUMAP";

/**
 * Reads what the native piece writes at exit when BPFHOOK_NV_CUDA_DUMP names a
 * file (native/plugin.cpp, dump_module): "BHGPUMAP", u32 version 1, u32 maps,
 * u64 bh_ring's address, the descriptors' addresses, then segments
 * { u64 address, u64 bytes, bytes } of device memory. `names` names the maps
 * by index (the object's map names) in messages.
 */
export function parseGpuDump(bytes: Uint8Array, names: readonly string[] = []): GpuDump {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 24 || b.toString("latin1", 0, 8) !== GPU_DUMP_MAGIC) throw new Error("not a GPU map dump (no BHGPUMAP header)");
  const version = b.readUInt32LE(8);
  if (version !== 1) throw new Error(`GPU map dump version ${version}, this reader knows 1`);
  const n = b.readUInt32LE(12);
  const ringAddr = b.readBigUInt64LE(16);
  let pos = 24;
  if (b.length < pos + 8 * n) throw new Error(`GPU map dump: ${n} descriptors do not fit ${b.length} bytes`);
  const descriptors: bigint[] = [];
  for (let i = 0; i < n; i++, pos += 8) descriptors.push(b.readBigUInt64LE(pos));
  const segments: { addr: bigint; bytes: Uint8Array }[] = [];
  while (pos < b.length) {
    if (pos + 16 > b.length) throw new Error(`GPU map dump: segment header at ${pos} truncated`);
    const addr = b.readBigUInt64LE(pos);
    const len = Number(b.readBigUInt64LE(pos + 8));
    pos += 16;
    if (pos + len > b.length) throw new Error(`GPU map dump: segment at 0x${addr.toString(16)} of ${len} bytes truncated`);
    segments.push({ addr, bytes: b.subarray(pos, pos + len) });
    pos += len;
  }
  const memory = new SegmentMemory(segments);
  const maps = descriptors.map((d, i) => GpuMapView.at(memory, d, names[i] ?? `map ${i}`));
  const hasRing = ringAddr !== 0n && segments.some((s) => s.addr === ringAddr);
  return { maps, memory, ...(hasRing ? { ring: drainRing(memory, ringAddr) } : {}) };
}
