import { strict as assert } from "node:assert";
import { BpfhookError, codec, SharedRegion, type BpfMap } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";

function expectError(run: () => unknown, code: string, errno?: number): BpfhookError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (errno !== undefined) assert.equal(e.errno, errno, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

describe("21 maps", () => {
  let region: SharedRegion;
  before(() => {
    region = SharedRegion.create({ name: `/bpfhook-t21-${process.pid}`, size: 64 << 20 });
  });
  after(() => region.close());

  describe("hash", () => {
    it("gets, sets, deletes and honours update flags", () => {
      const m = region.createMap({ name: "h1", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 16 });
      assert.equal(m.get(1), undefined);
      m.set(1, 10n).set(2, 20n);
      assert.equal(m.get(1), 10n);
      assert.equal(m.has(2), true);
      assert.equal(m.size, 2);
      const e = expectError(() => m.set(1, 11n, "noexist"), "MAP_ERROR", -17);
      assert.equal(e.message, "map 'h1': update: EEXIST (key exists (BPF_NOEXIST))");
      expectError(() => m.set(3, 30n, "exist"), "MAP_ERROR", -2);
      m.set(1, 11n, "exist");
      assert.equal(m.get(1), 11n);
      expectError(() => m.set(1, 1n, 4), "MAP_ERROR", -22);  // BPF_F_LOCK: no spin locks
      assert.equal(m.delete(1), true);
      assert.equal(m.delete(1), false);
      assert.equal(m.take(2), 20n);
      assert.equal(m.size, 0);
      m.close();
    });

    it("is full at max_entries with E2BIG naming the map, and replacements still work", () => {
      const m = region.createMap({ name: "counts", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 1024 });
      for (let i = 0; i < 1024; i++) m.set(i, BigInt(i));
      const e = expectError(() => m.set(5000, 1n), "MAP_ERROR", -7);
      assert.equal(e.message, "map 'counts': update: E2BIG (map full, 1024 entries)");
      m.set(10, 99n);
      assert.equal(m.get(10), 99n);
      m.delete(0);
      m.set(5000, 1n);
      m.close();
    });

    it("iterates every key exactly once", () => {
      const m = region.createMap({ name: "h2", type: "hash", key: codec.u64, value: codec.u32, maxEntries: 300 });
      const want = new Set<bigint>();
      for (let i = 0n; i < 200n; i++) {
        m.set(i * 7919n, Number(i));
        want.add(i * 7919n);
      }
      const keys = [...m.keys()];
      assert.equal(keys.length, 200);
      assert.deepEqual(new Set(keys), want);
      const entries = new Map(m.entries());
      assert.equal(entries.get(7919n * 3n), 3);
      assert.equal([...m].length, 200);
      m.clear();
      assert.equal(m.size, 0);
      assert.deepEqual([...m.keys()], []);
      m.close();
    });

    it("hashes struct keys bytewise with padding zeroed", () => {
      const flow = codec.struct({ saddr: codec.u32, dport: codec.u16, proto: codec.u8 });
      assert.equal(flow.size, 8);
      assert.deepEqual(flow.offsets, { saddr: 0, dport: 4, proto: 6 });
      const m = region.createMap({ name: "flows", type: "hash", key: flow, value: codec.u64, maxEntries: 8 });
      m.set({ saddr: 0x0a000001, dport: 443, proto: 6 }, 5n);
      assert.equal(m.get({ saddr: 0x0a000001, dport: 443, proto: 6 }), 5n);
      assert.equal(m.get({ saddr: 0x0a000001, dport: 443, proto: 17 }), undefined);
      assert.deepEqual([...m.keys()], [{ saddr: 0x0a000001, dport: 443, proto: 6 }]);
      m.close();
    });

    it("program-side helpers: lookup returns a pointer programs write through", () => {
      const m = region.createMap({ name: "h3", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 4 });
      const n = native();
      assert.equal(n.mapHelperLookup(m.native, u32(1)), null);
      assert.equal(n.mapHelperUpdate(m.native, u32(1), u64(5n), 0), 0);
      assert.equal(n.mapHelperUpdate(m.native, u32(1), u64(5n), 1), -17);
      assert.equal(n.mapHelperWrite(m.native, u32(1), 0, u64(77n)), true);
      assert.equal(m.get(1), 77n);
      assert.deepEqual(n.mapHelperLookup(m.native, u32(1)), u64(77n));
      assert.equal(n.mapHelperDelete(m.native, u32(1)), 0);
      assert.equal(n.mapHelperDelete(m.native, u32(1)), -2);
      m.close();
    });
  });

  describe("array", () => {
    it("has every index, refuses delete, bounds-checks and gives value pointers", () => {
      const m = region.createMap({ name: "arr", type: "array", value: codec.u64, maxEntries: 8 });
      assert.equal(m.keySize, 4);
      assert.equal(m.get(3), 0n);
      m.set(3, 33n);
      assert.equal(m.get(3), 33n);
      assert.equal(m.get(8), undefined);
      const big = expectError(() => m.set(8, 1n), "MAP_ERROR", -7);
      assert.equal(big.message, "map 'arr': update: E2BIG (index out of range, 8 entries)");
      expectError(() => m.set(3, 1n, "noexist"), "MAP_ERROR", -17);
      const del = expectError(() => m.delete(3), "MAP_ERROR", -22);
      assert.equal(del.message, "map 'arr': delete: EINVAL (array elements cannot be deleted)");
      assert.deepEqual([...m.keys()], [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.equal(m.size, 8);
      // A program writes through the pointer lookup returns.
      assert.equal(native().mapHelperWrite(m.native, u32(5), 0, u64(55n)), true);
      assert.equal(m.get(5), 55n);
      assert.equal(native().mapHelperWrite(m.native, u32(9), 0, u64(1n)), false);
      // lddw map-value forms: entry 0's value plus an offset, inside the value.
      const addr = m.valueAddress(0);
      assert.ok(addr > 0n);
      assert.equal(m.valueAddress(4), addr + 4n);
      assert.equal(m.valueAddress(8), 0n);
      m.close();
    });
  });

  describe("per-CPU", () => {
    it("per-CPU array: a value per possible CPU, programs touch their own", () => {
      const m = region.createMap({ name: "pca", type: "percpu_array", value: codec.u32, maxEntries: 4 });
      const ncpus = region.ncpus;
      assert.equal(m.stride, 8, "value size rounded up to 8, as the kernel lays out per-CPU values");
      assert.deepEqual(m.get(0), Array.from({ length: ncpus }, () => 0));
      m.set(1, 7);
      assert.deepEqual(m.get(1), Array.from({ length: ncpus }, () => 7));
      const per = Array.from({ length: ncpus }, (_, i) => 100 + i);
      m.setPerCpu(2, per);
      assert.deepEqual(m.get(2), per);
      expectError(() => m.setPerCpu(2, [1, ...per]), "BAD_ARGUMENT");
      // The helper's pointer is one CPU's slot: writing it changes one value.
      native().mapHelperWrite(m.native, u32(0), 0, u32(9));
      const after = m.get(0)!;
      assert.equal(after.filter((v) => v === 9).length, 1);
      assert.equal(after.reduce((a, b) => a + b, 0), 9);
      m.close();
    });

    it("per-CPU hash: program updates set this CPU and zero the others", () => {
      const m = region.createMap({ name: "pch", type: "percpu_hash", key: codec.u32, value: codec.u64, maxEntries: 4 });
      assert.equal(native().mapHelperUpdate(m.native, u32(1), u64(5n), 0), 0);
      const vals = m.get(1)!;
      assert.equal(vals.length, region.ncpus);
      assert.equal(vals.reduce((a, b) => a + b, 0n), 5n);
      m.set(2, 3n);
      assert.deepEqual(m.get(2), Array.from({ length: region.ncpus }, () => 3n));
      assert.deepEqual(
        [...m.keys()].sort((a, b) => a - b),
        [1, 2],
      );
      m.close();
    });
  });

  describe("LRU hash", () => {
    it("evicts the least recently used instead of failing", () => {
      const m = region.createMap({ name: "lru", type: "lru_hash", key: codec.u32, value: codec.u32, maxEntries: 4 });
      for (let k = 1; k <= 4; k++) m.set(k, k);
      assert.ok(native().mapHelperLookup(m.native, u32(1)) !== null, "a program touches 1");
      m.set(5, 5);
      assert.equal(m.size, 4);
      assert.equal(m.has(2), false, "2 was the least recently used");
      assert.deepEqual(
        [...m.keys()].sort((a, b) => a - b),
        [1, 3, 4, 5],
      );
      m.set(6, 6);
      assert.equal(m.has(3), false);
      m.close();
    });
  });

  describe("LPM trie", () => {
    it("matches the longest prefix", () => {
      const key = codec.lpmKey(4);
      const m = region.createMap({
        name: "routes",
        type: "lpm_trie",
        key,
        value: codec.u32,
        maxEntries: 8,
        flags: 1 /* BPF_F_NO_PREALLOC */,
      });
      const ip = (s: string) => Buffer.from(s.split(".").map(Number));
      m.set({ prefixlen: 8, data: ip("10.0.0.0") }, 1);
      m.set({ prefixlen: 16, data: ip("10.1.0.0") }, 2);
      m.set({ prefixlen: 24, data: ip("10.1.2.0") }, 3);
      m.set({ prefixlen: 0, data: ip("0.0.0.0") }, 0);
      const at = (s: string) => m.get({ prefixlen: 32, data: ip(s) });
      assert.equal(at("10.1.2.3"), 3);
      assert.equal(at("10.1.9.9"), 2);
      assert.equal(at("10.200.0.1"), 1);
      assert.equal(at("192.168.1.1"), 0);
      assert.equal(m.size, 4);
      assert.equal(m.delete({ prefixlen: 16, data: ip("10.1.0.0") }), true);
      assert.equal(at("10.1.9.9"), 1);
      assert.equal([...m.keys()].length, 3);
      for (let i = 0; i < 5; i++) m.set({ prefixlen: 32, data: ip(`1.1.1.${i}`) }, i);
      const full = expectError(() => m.set({ prefixlen: 32, data: ip("2.2.2.2") }, 9), "MAP_ERROR", -28);
      assert.equal(full.message, "map 'routes': update: ENOSPC (trie full, 8 entries)");
      expectError(() => m.set({ prefixlen: 33, data: ip("1.1.1.1") }, 9), "BAD_ARGUMENT");
      m.close();
    });
  });

  describe("queue and stack", () => {
    it("queue is FIFO, stack LIFO; full is E2BIG unless BPF_EXIST drops the oldest", () => {
      const q = region.createMap({ name: "q", type: "queue", value: codec.u64, maxEntries: 3 });
      const s = region.createMap({ name: "s", type: "stack", value: codec.u64, maxEntries: 3 });
      for (const v of [1n, 2n, 3n]) {
        q.push(v);
        s.push(v);
      }
      assert.equal(q.size, 3);
      const e = expectError(() => q.push(4n), "MAP_ERROR", -7);
      assert.equal(e.message, "map 'q': push: E2BIG (queue full, 3 entries)");
      q.push(4n, "exist");
      assert.equal(q.peek(), 2n);
      assert.deepEqual([q.pop(), q.pop(), q.pop(), q.pop()], [2n, 3n, 4n, undefined]);
      assert.deepEqual([s.pop(), s.pop(), s.pop(), s.pop()], [3n, 2n, 1n, undefined]);
      // Program side: push / pop / peek helpers.
      const n = native();
      const out = Buffer.alloc(8);
      assert.equal(n.mapHelperPop(q.native, out), -2);
      assert.equal(n.mapHelperPush(q.native, u64(9n), 0), 0);
      assert.equal(n.mapHelperPeek(q.native, out), 0);
      assert.equal(out.readBigUInt64LE(), 9n);
      assert.equal(n.mapHelperPush(q.native, u64(9n), 1 /* BPF_NOEXIST */), -22);
      q.close();
      s.close();
    });
  });

  describe("limits and codecs", () => {
    it("refuses sizes and flags the type does not allow, with kernel errnos", () => {
      const bad = (opts: Parameters<SharedRegion["createMap"]>[0], errno: number, re?: RegExp) => {
        const e = expectError(() => region.createMap(opts), "MAP_ERROR", errno);
        if (re) assert.match(e.message, re);
      };
      bad({ name: "b1", type: "hash", keySize: 513, valueSize: 8, maxEntries: 4 }, -7);
      bad({ name: "b2", type: "hash", keySize: 4, valueSize: 8, maxEntries: 0 }, -22);
      bad({ name: "b3", type: "array", keySize: 8, valueSize: 8, maxEntries: 4 }, -22, /array: key size 4/);
      bad({ name: "b4", type: "hash", keySize: 4, valueSize: 8, maxEntries: 4, flags: 1 << 20 }, -22);
      bad({ name: "b5", type: "ringbuf", maxEntries: 5000 }, -22, /power of two >= 4096/);
      bad({ name: "b6", type: "queue", keySize: 4, valueSize: 8, maxEntries: 4 }, -22);
      bad({ name: "b7", type: "lpm_trie", keySize: 4, valueSize: 8, maxEntries: 4 }, -22);
      bad({ name: "bad name", type: "array", valueSize: 8, maxEntries: 4 }, -22);
      expectError(() => region.createMap({ name: "b8", type: "bloom" as "hash", keySize: 4, valueSize: 4, maxEntries: 1 }), "BAD_ARGUMENT");
      expectError(() => region.createMap({ name: "b9", type: "hash", valueSize: 4, maxEntries: 1 }), "BAD_ARGUMENT");
    });

    it("checks codec sizes against the map and values against the codec", () => {
      const m = region.createMap({ name: "c1", type: "hash", keySize: 8, valueSize: 4, maxEntries: 4 });
      expectError(() => region.openMap("c1", { key: codec.u32 }), "BAD_ARGUMENT");
      expectError(() => m.set(Buffer.alloc(4), Buffer.alloc(4)), "BAD_ARGUMENT");
      m.set(Buffer.alloc(8, 1), Buffer.from([1, 2, 3, 4]));
      assert.deepEqual(m.get(Buffer.alloc(8, 1)), Buffer.from([1, 2, 3, 4]));
      const typed = region.openMap<BpfMap<bigint, number>>("c1", { key: codec.u64, value: codec.u32 });
      assert.equal(typed.get(0x0101010101010101n), 0x04030201);
      expectError(() => typed.set(-1n, 0), "BAD_ARGUMENT");
      m.close();
      typed.close();
    });

    it("struct, array, cstring and i64 codecs round-trip with C layout", () => {
      const ev = codec.struct({
        pid: codec.u32,
        comm: codec.cstring(16),
        ts: codec.u64,
        delta: codec.i64,
        args: codec.array(codec.u16, 3),
      });
      assert.equal(ev.size, 48);
      assert.deepEqual(ev.offsets, { pid: 0, comm: 4, ts: 24, delta: 32, args: 40 });
      const m = region.createMap({ name: "events_tbl", type: "array", value: ev, maxEntries: 2 });
      const v = { pid: 42, comm: "node", ts: 1n << 40n, delta: -5n, args: [1, 2, 3] };
      m.set(1, v);
      assert.deepEqual(m.get(1), v);
      expectError(() => m.set(0, { ...v, comm: "x".repeat(16) }), "BAD_ARGUMENT");
      assert.equal(codec.struct({ a: codec.u8, b: codec.u64 }, { packed: true }).size, 9);
      m.close();
    });
  });
});
