/**
 * The host side of the GPU-resident maps (src/ptx/runtime.ts has the device
 * side): descriptors, arrays, hashes (FNV-1a 64, linear probing, per-slot
 * states), per-CPU arrays sharded per GPU thread and summed here, and the
 * `bh_ring` buffer drained into records. Everything reads through a
 * `DeviceMemory` (the native piece's cuMemcpyDtoH on a GPU; a Buffer in
 * tests), so the same code checks the layouts without a GPU.
 */

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

/** Map descriptor fields (64 bytes of u64), as runtime.ts reads them. */
export const GPU_MAP_DESCRIPTOR = Object.freeze({ size: 64, type: 0, keySize: 8, valueSize: 16, maxEntries: 24, values: 32, keys: 40, states: 48, capacity: 56 });
export const GPU_MAP_TYPES = Object.freeze({ hash: 1, array: 2, perCpuArray: 6, lruHash: 9 });
/** Hash slot states (u32 each). */
export const HASH_SLOT = Object.freeze({ empty: 0, writing: 1, live: 2, deleted: 3 });
/** Ring record kinds. */
export const RING_KIND = Object.freeze({ printk: 1, perf: 2, puts: 3 });

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
