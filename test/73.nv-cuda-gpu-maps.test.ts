/**
 * The GPU maps' host side (plugins/nv-cuda/src/gpu-maps.ts) against the PTX
 * runtime's layout (src/ptx/runtime.ts): device memory is a Buffer here, and
 * the test writes it the way the runtime's PTX does (descriptors, FNV-1a 64
 * hash slots with linear probing and per-slot states, per-thread shards of a
 * per-CPU array, ring records committed by their length word), then reads it
 * back through the host side. No GPU needed.
 */
import { strict as assert } from "node:assert";
import {
  BufferMemory,
  drainRing,
  fnv1a64,
  GPU_MAP_DESCRIPTOR,
  GPU_MAP_TYPES,
  GpuMapView,
  hashCapacity,
  HASH_SLOT,
  parseGpuDump,
  RING_KIND,
  runtimePtx,
  stride8,
} from "@bpfhook/plugin-nv-cuda";

const BASE = 0x7f0000000000n;

/** Device memory with a bump allocator, written as the PTX runtime writes it. */
class FakeDevice {
  readonly buf = Buffer.alloc(1 << 20);
  private top = 0;
  readonly mem = new BufferMemory(this.buf, BASE);
  alloc(bytes: number): bigint {
    const at = this.top;
    this.top += (bytes + 63) & ~63;
    return BASE + BigInt(at);
  }
  off(addr: bigint): number {
    return Number(addr - BASE);
  }
  /** A descriptor as the native piece builds it (native/plugin.cpp build_maps). */
  map(type: number, keySize: number, valueSize: number, maxEntries: number, shards = 0): { desc: bigint; values: bigint; keys: bigint; states: bigint; capacity: number } {
    const hash = type === GPU_MAP_TYPES.hash || type === GPU_MAP_TYPES.lruHash;
    const capacity = hash ? hashCapacity(maxEntries) : shards;
    const values = this.alloc((hash ? capacity : maxEntries * Math.max(1, shards)) * stride8(valueSize));
    const keys = hash ? this.alloc(capacity * stride8(keySize)) : 0n;
    const states = hash ? this.alloc(capacity * 4) : 0n;
    const desc = this.alloc(64);
    const d = this.off(desc);
    const fields: [number, bigint][] = [
      [GPU_MAP_DESCRIPTOR.type, BigInt(type)],
      [GPU_MAP_DESCRIPTOR.keySize, BigInt(keySize)],
      [GPU_MAP_DESCRIPTOR.valueSize, BigInt(valueSize)],
      [GPU_MAP_DESCRIPTOR.maxEntries, BigInt(maxEntries)],
      [GPU_MAP_DESCRIPTOR.values, values],
      [GPU_MAP_DESCRIPTOR.keys, keys],
      [GPU_MAP_DESCRIPTOR.states, states],
      [GPU_MAP_DESCRIPTOR.capacity, BigInt(capacity)],
    ];
    for (const [o, v] of fields) this.buf.writeBigUInt64LE(v, d + o);
    return { desc, values, keys, states, capacity };
  }
  /** bh_map_update_elem on a hash (runtime.ts): find the key, else claim the first empty or deleted slot from FNV-1a & mask. */
  hashUpdate(m: { values: bigint; keys: bigint; states: bigint; capacity: number }, keySize: number, valueSize: number, key: Buffer, value: Buffer): void {
    const mask = m.capacity - 1;
    let slot = Number(fnv1a64(key) & BigInt(mask));
    let free = -1;
    for (let n = 0; n < m.capacity; n++) {
      const st = this.buf.readUInt32LE(this.off(m.states) + slot * 4);
      if (st === HASH_SLOT.empty) break;
      if (st === HASH_SLOT.deleted && free < 0) free = slot;
      if (st === HASH_SLOT.live && this.buf.subarray(this.off(m.keys) + slot * stride8(keySize), this.off(m.keys) + slot * stride8(keySize) + keySize).equals(key)) {
        value.copy(this.buf, this.off(m.values) + slot * stride8(valueSize));
        return;
      }
      slot = (slot + 1) & mask;
    }
    const at = free >= 0 ? free : slot;
    this.buf.writeUInt32LE(HASH_SLOT.writing, this.off(m.states) + at * 4);
    key.copy(this.buf, this.off(m.keys) + at * stride8(keySize));
    value.copy(this.buf, this.off(m.values) + at * stride8(valueSize));
    this.buf.writeUInt32LE(HASH_SLOT.live, this.off(m.states) + at * 4);
  }
}

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

describe("73 nv-cuda GPU maps: the host side reads the PTX runtime's layouts", () => {
  it("FNV-1a 64 is the runtime's bh_hash (same constants, known vectors)", () => {
    assert.equal(fnv1a64(new Uint8Array(0)), 0xcbf29ce484222325n);
    assert.equal(fnv1a64(Buffer.from("a")), 0xaf63dc4c8601ec8cn);
    assert.equal(fnv1a64(Buffer.from("foobar")), 0x85944171f73967e8n);
    const ptx = runtimePtx({ mapSlots: 1 });
    // The PTX writes the offset basis as a signed decimal and the prime as is.
    assert.ok(ptx.includes(`mov.b64 %h, ${BigInt.asIntN(64, 0xcbf29ce484222325n)};`));
    assert.ok(ptx.includes("mul.lo.s64 %h, %h, 1099511628211;"));
  });

  it("descriptor offsets are those the runtime's PTX loads", () => {
    const ptx = runtimePtx({ mapSlots: 1 });
    for (const f of ["keySize", "valueSize", "maxEntries", "values", "keys", "states", "capacity"] as const) {
      assert.ok(ptx.includes(`[%m+${GPU_MAP_DESCRIPTOR[f]}]`), `the PTX reads ${f} at +${GPU_MAP_DESCRIPTOR[f]}`);
    }
    assert.equal(GPU_MAP_DESCRIPTOR.size, 64);
  });

  it("arrays: entry i at values + i x stride (value size rounded up to 8); past max_entries absent", () => {
    const dev = new FakeDevice();
    const m = dev.map(GPU_MAP_TYPES.array, 4, 12, 5);
    dev.buf.write("hello world!", dev.off(m.values) + 3 * 16);
    const view = GpuMapView.at(dev.mem, m.desc, "arr");
    assert.equal(view.descriptor.maxEntries, 5);
    assert.equal(Buffer.from(view.lookup(u32(3))!).toString(), "hello world!");
    assert.equal(view.lookup(u32(5)), undefined);
    assert.equal([...view.entries()].length, 5);
    assert.throws(() => view.lookup(Buffer.alloc(8)), /arr: key is 8 bytes, the map's are 4/);
  });

  it("hashes: FNV-1a slots with linear probing; colliding keys, a deleted slot in the chain, entries()", () => {
    const dev = new FakeDevice();
    const keySize = 6, valueSize = 8, max = 16;
    const m = dev.map(GPU_MAP_TYPES.hash, keySize, valueSize, max);
    assert.equal(m.capacity, 32);
    // Keys that land on one slot, so that probing is exercised.
    const byHome = new Map<number, Buffer[]>();
    for (let i = 0; i < 2000; i++) {
      const k = Buffer.from(`k${String(i).padStart(5, "0")}`);
      const home = Number(fnv1a64(k) & 31n);
      byHome.set(home, [...(byHome.get(home) ?? []), k]);
    }
    const chain = [...byHome.values()].find((ks) => ks.length >= 3)!.slice(0, 3);
    chain.forEach((k, i) => dev.hashUpdate(m, keySize, valueSize, k, u64(BigInt(100 + i))));
    dev.hashUpdate(m, keySize, valueSize, Buffer.from("other1"), u64(7n));
    const view = GpuMapView.at(dev.mem, m.desc);
    chain.forEach((k, i) => assert.equal(Buffer.from(view.lookup(k)!).readBigUInt64LE(0), BigInt(100 + i), `chained key ${i}`));
    // Delete the first of the chain (state 3): the others stay reachable past it.
    const home = Number(fnv1a64(chain[0]!) & 31n);
    dev.buf.writeUInt32LE(HASH_SLOT.deleted, dev.off(m.states) + home * 4);
    assert.equal(view.lookup(chain[0]!), undefined);
    assert.equal(Buffer.from(view.lookup(chain[2]!)!).readBigUInt64LE(0), 102n);
    // A slot being written (state 1) is not live.
    assert.equal(view.lookup(Buffer.from("absent")), undefined);
    const entries = [...view.entries()].map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).readBigUInt64LE(0)]);
    assert.deepEqual(entries.sort(), [[chain[1]!.toString(), 101n], [chain[2]!.toString(), 102n], ["other1", 7n]].sort());
  });

  it("per-CPU arrays on the GPU: per-thread shards written as the PTX indexes them, summed on the host", () => {
    const dev = new FakeDevice();
    const shards = 1024; // native/plugin.cpp kShards
    const m = dev.map(GPU_MAP_TYPES.perCpuArray, 4, 8, 2, shards);
    // <<<(5, 2, 1), (64, 2, 1)>>>: each thread adds 1 to entry 0 and its linear index to entry 1.
    const grid = [5, 2, 1], block = [64, 2, 1];
    let threads = 0, indexSum = 0n;
    for (let bz = 0; bz < grid[2]!; bz++)
      for (let by = 0; by < grid[1]!; by++)
        for (let bx = 0; bx < grid[0]!; bx++)
          for (let tz = 0; tz < block[2]!; tz++)
            for (let ty = 0; ty < block[1]!; ty++)
              for (let tx = 0; tx < block[0]!; tx++) {
                const linBlock = (bz * grid[1]! + by) * grid[0]! + bx;
                const g = linBlock * block[0]! * block[1]! * block[2]! + (tz * block[1]! + ty) * block[0]! + tx;
                const shard = g & (shards - 1);
                for (const [i, add] of [[0, 1n], [1, BigInt(g)]] as const) {
                  const at = dev.off(m.values) + (i * shards + shard) * 8;
                  dev.buf.writeBigUInt64LE(dev.buf.readBigUInt64LE(at) + add, at);
                }
                threads++;
                indexSum += BigInt(g);
              }
    const view = GpuMapView.at(dev.mem, m.desc);
    assert.equal(view.descriptor.capacity, shards);
    assert.equal(Buffer.from(view.lookup(u32(0))!).readBigUInt64LE(0), BigInt(threads), "the thread count, exact");
    assert.equal(Buffer.from(view.lookup(u32(1))!).readBigUInt64LE(0), indexSum);
    const perShard = view.lookupPerShard(0);
    assert.equal(perShard.length, shards);
    // 1280 threads over 1024 shards: the first 256 shards got two threads.
    assert.equal(Buffer.from(perShard[0]!).readBigUInt64LE(0), 2n);
    assert.equal(Buffer.from(perShard[1023]!).readBigUInt64LE(0), 1n);
  });

  it("the ring: committed records in order (lengths unrounded, records 8-aligned), an uncommitted one stops the drain, drops counted", () => {
    const dev = new FakeDevice();
    const size = 4096;
    const data = dev.alloc(size);
    const ring = dev.alloc(32);
    let head = 0;
    const reserve = (len: number): number => {
      const at = head;
      head += stride8(len);
      return dev.off(data) + at;
    };
    // trace_printk("n=%d\n", 5, 6, 7): u32 len = size + 40, kind 1, extra = format size, 3 args, format.
    const fmt = Buffer.from("n=%d\n\0");
    let at = reserve(fmt.length + 40);
    dev.buf.writeUInt32LE(RING_KIND.printk, at + 4);
    dev.buf.writeBigUInt64LE(BigInt(fmt.length), at + 8);
    [5n, 6n, 7n].forEach((v, i) => dev.buf.writeBigUInt64LE(v, at + 16 + 8 * i));
    fmt.copy(dev.buf, at + 40);
    dev.buf.writeUInt32LE(fmt.length + 40, at); // the commit, last
    // perf_event_output of 12 bytes: extra = the map's descriptor address.
    at = reserve(16 + 12);
    dev.buf.writeUInt32LE(RING_KIND.perf, at + 4);
    dev.buf.writeBigUInt64LE(0xdeadn, at + 8);
    Buffer.from("twelve bytes").copy(dev.buf, at + 16);
    dev.buf.writeUInt32LE(28, at);
    // A reserved record not committed yet.
    const pending = reserve(16 + 8);
    const r = dev.off(ring);
    dev.buf.writeBigUInt64LE(data, r);
    dev.buf.writeBigUInt64LE(BigInt(size), r + 8);
    dev.buf.writeBigUInt64LE(BigInt(head), r + 16);
    dev.buf.writeBigUInt64LE(3n, r + 24);

    const d1 = drainRing(dev.mem, ring);
    assert.equal(d1.dropped, 3n);
    assert.equal(d1.records.length, 2);
    assert.deepEqual(d1.records[0]!.printk, { args: [5n, 6n, 7n], format: "n=%d\n" });
    assert.equal(d1.records[1]!.kind, RING_KIND.perf);
    assert.equal(d1.records[1]!.extra, 0xdeadn);
    assert.equal(Buffer.from(d1.records[1]!.payload).toString(), "twelve bytes");
    assert.equal(d1.consumed, BigInt(pending - dev.off(data)), "stopped at the uncommitted record");
    // Committed later: the next drain from there gets it.
    dev.buf.writeUInt32LE(RING_KIND.puts, pending + 4);
    Buffer.from("hi\0").copy(dev.buf, pending + 16);
    dev.buf.writeUInt32LE(24, pending);
    const d2 = drainRing(dev.mem, ring, d1.consumed);
    assert.equal(d2.records.length, 1);
    assert.equal(d2.records[0]!.kind, RING_KIND.puts);
    assert.equal(d2.consumed, BigInt(head));
  });

  it("a dump (what the native piece writes at exit) gives the maps and the ring back; malformed dumps are refused", () => {
    const dev = new FakeDevice();
    const arr = dev.map(GPU_MAP_TYPES.array, 4, 8, 4);
    dev.buf.writeBigUInt64LE(42n, dev.off(arr.values) + 2 * 8);
    const ring = dev.alloc(32);
    const segs: [bigint, number][] = [
      [arr.desc, 64],
      [arr.values, 32],
      [ring, 32],
    ];
    const parts: Buffer[] = [Buffer.from("BHGPUMAP"), u32(1), u32(1), u64(ring), u64(arr.desc)];
    for (const [a, n] of segs) parts.push(u64(a), u64(BigInt(n)), dev.buf.subarray(dev.off(a), dev.off(a) + n));
    const dump = parseGpuDump(Buffer.concat(parts), ["counts"]);
    assert.equal(dump.maps.length, 1);
    assert.equal(dump.maps[0]!.name, "counts");
    assert.equal(Buffer.from(dump.maps[0]!.lookup(u32(2))!).readBigUInt64LE(0), 42n);
    assert.deepEqual(dump.ring?.records, []);
    assert.throws(() => parseGpuDump(Buffer.from("nope")), /not a GPU map dump/);
    assert.throws(() => parseGpuDump(Buffer.concat([...parts.slice(0, 5), u64(1n), u64(100n)])), /segment at 0x1 of 100 bytes truncated/);
  });
});
