/**
 * BPF_MAP_TYPE_BLOOM_FILTER: the kernel's creation rules and sizing, push /
 * has from TypeScript, the false positive rate against theory (and no false
 * negatives), map_extra's hash count, a clang-built object whose programs
 * push and test (both backends, and checked mode), and checked mode's map
 * type rules for the map helpers (in a child process, as test 14).
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import path from "node:path";
import {
  BLOOM_DEFAULT_HASHES,
  BpfhookError,
  bloomBits,
  codec,
  MapFlags,
  Runtime,
  SharedRegion,
  type BloomFilterMap,
} from "@bpfhook/core";
import type { MapSpec } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import type { CheckedCase } from "./support/checked-case.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const checkedChild = path.join(__dirname, "support", "checked-case.js");

function expectMapError(run: () => unknown, errno: number, match: RegExp): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, "MAP_ERROR", e.message);
    assert.equal(e.errno, errno, e.message);
    assert.match(e.message, match);
    return true;
  });
}

/** The textbook rate: (1 - e^(-k n / m))^k. */
function theoreticalRate(n: number, k: number, m: number): number {
  return (1 - Math.exp((-k * n) / m)) ** k;
}

/** Pushes 0 .. n-1, then tests `trials` values never pushed; returns the fraction that passed. */
function measureRate(f: BloomFilterMap<number>, n: number, trials: number): number {
  for (let i = 0; i < n; i++) f.push(i);
  for (let i = 0; i < n; i++) assert.equal(f.has(i), true, `false negative for ${i}`);
  let passed = 0;
  for (let i = 0; i < trials; i++) if (f.has(0x40000000 + i)) passed++;
  return passed / trials;
}

describe("29 bloom filter maps", () => {
  let region: SharedRegion;
  before(() => {
    region = SharedRegion.create({ name: `/bpfhook-t29-${process.pid}`, size: 64 << 20 });
  });
  after(() => region.close());

  describe("from TypeScript", () => {
    it("push adds, has / peek test; the kernel's sizing; values never removed", () => {
      const f = region.createMap({ name: "b1", type: "bloom_filter", value: codec.u32, maxEntries: 1000, mapExtra: 3 });
      assert.equal(f.typeName, "bloom_filter");
      assert.equal(f.keySize, 0);
      assert.equal(f.hashes, 3);
      assert.equal(f.bits, 8192); // 1000 * 3 / 5 * 7 = 4200 -> 8192
      assert.equal(f.has(42), false);
      assert.equal(f.peek(42), false);
      f.push(42).push(43);
      assert.equal(f.has(42), true);
      assert.equal(f.peek(43), true);
      // The bpf() syscall's other commands, as the kernel answers them.
      assert.equal(native().mapUpdate(f.native, null, Buffer.alloc(4), 1), -22, "BPF_NOEXIST: EINVAL");
      assert.equal(native().mapDelete(f.native, null), -95, "delete: EOPNOTSUPP");
      assert.equal(native().mapLookupAndDelete(f.native, null, Buffer.alloc(4)), -95);
      assert.equal(native().mapNextKey(f.native, null, Buffer.alloc(0)), -95, "get_next_key: EOPNOTSUPP");
      // Helper semantics from user space: pop EOPNOTSUPP, push flags BPF_ANY only.
      assert.equal(native().mapHelperPop(f.native, Buffer.alloc(4)), -95);
      assert.equal(native().mapHelperPush(f.native, Buffer.from([1, 0, 0, 0]), 2), -22);
      assert.equal(native().mapHelperPush(f.native, Buffer.from([1, 0, 0, 0]), 0), 0);
      assert.equal(native().mapHelperPeek(f.native, Buffer.from([1, 0, 0, 0])), 0);
      assert.equal(f.has(1), true);
      f.freeze();
      assert.throws(() => f.push(5), (e: unknown) => e instanceof BpfhookError && e.code === "READ_ONLY");
      assert.equal(f.has(42), true, "a frozen filter still answers");
      f.close();
    });

    it("mapExtra 0 means 5 hash functions; sizing is the kernel's (64-bit floor, 2^32 cap)", () => {
      const f = region.createMap({ name: "b2", type: "bloom_filter", valueSize: 8, maxEntries: 1000 });
      assert.equal(f.hashes, BLOOM_DEFAULT_HASHES);
      assert.equal(f.bits, 8192); // 1000 * 5 / 5 * 7 = 7000 -> 8192
      assert.equal(region.maps().find((d) => d.name === "b2")?.mapExtra, 0n, "map_extra kept as given");
      f.push(Buffer.from("abcdefgh"));
      assert.equal(f.has(Buffer.from("abcdefgh")), true);
      f.close();
      assert.equal(bloomBits(1, 5), 64);
      assert.equal(bloomBits(1 << 20, 15), 1 << 25);
      assert.equal(bloomBits(0xffffffff, 1), 2 ** 32);
      assert.equal(bloomBits(0x7fffffff, 15), 2 ** 32, "n * k overflows u32");
      // 2^32 bits are 512 MiB: more than this region has.
      expectMapError(
        () => region.createMap({ name: "b3", type: "bloom_filter", valueSize: 4, maxEntries: 0xffffffff, mapExtra: 1 }),
        -12,
        /ENOMEM \(region '.*' is full/,
      );
    });

    it("refuses what the kernel refuses, naming what is wrong", () => {
      const make = (o: { keySize?: number; valueSize?: number; maxEntries?: number; mapExtra?: number | bigint; flags?: number }) => () =>
        region.createMap({ name: "bad", type: "bloom_filter", valueSize: 4, maxEntries: 10, ...o } as never);
      expectMapError(make({ keySize: 4 }), -22, /^map 'bad': create: EINVAL \(bloom filter: key size must be 0 \(keyless\), got 4\)$/);
      expectMapError(make({ valueSize: 0 }), -22, /value size must be > 0/);
      expectMapError(make({ maxEntries: 0 }), -22, /maxEntries must be > 0/);
      expectMapError(make({ mapExtra: 16 }), -22, /mapExtra is the number of hash functions, 0\.\.15 \(0 = 5\), got 16/);
      expectMapError(make({ mapExtra: 0x103n }), -22, /got 259/);
      expectMapError(make({ flags: MapFlags.NO_PREALLOC }), -22, /flags 0x1 not allowed/);
      expectMapError(make({ flags: MapFlags.MMAPABLE | MapFlags.ZERO_SEED }), -22, /flags 0x400 not allowed/);
      expectMapError(make({ valueSize: (1 << 20) + 1 }), -7, /E2BIG/);
      // Accepted: every hash count up to 15, ZERO_SEED and the access flags.
      for (const mapExtra of [1, 15]) {
        const f = region.createMap({ name: `ok${mapExtra}`, type: "bloom_filter", valueSize: 3, maxEntries: 10, mapExtra,
          flags: MapFlags.ZERO_SEED | MapFlags.RDONLY_PROG });
        assert.equal(f.hashes, mapExtra);
        f.close();
      }
    });

    it("a second mapping of the region (another process's view) sees the same filter", () => {
      const f = region.createMap({ name: "shared", type: "bloom_filter", value: codec.u64, maxEntries: 100 });
      f.push(7n);
      const other = SharedRegion.open(region.name);
      try {
        const g = other.openMap<BloomFilterMap<bigint>>("shared", { value: codec.u64 });
        assert.equal(g.has(7n), true);
        assert.equal(g.hashes, 5);
        g.push(8n);
        assert.equal(f.has(8n), true);
        g.close();
      } finally {
        other.close();
      }
      f.close();
    });
  });

  describe("false positives", () => {
    // n = 10000 values; 100000 values never pushed tested. Bounds: 10% of the
    // textbook rate or 6 standard deviations of the count, whichever is wider
    // (10% is about 7 deviations at k = 3; 6 deviations are about 33% at
    // k = 5, whose rate is only 0.3%): a wrong hash count or bit array size
    // fails, noise does not.
    const n = 10000;
    const trials = 100000;
    for (const { k, seed } of [
      { k: 3, seed: "zero" },
      { k: 3, seed: "random" },
      { k: 1, seed: "random" },
      { k: 0, seed: "random" },
    ] as const) {
      it(`k = ${k === 0 ? "0 (5)" : k}, ${seed} seed: rate near (1 - e^(-kn/m))^k, no false negatives`, () => {
        const f = region.createMap({
          name: `fp${k}${seed}`,
          type: "bloom_filter",
          value: codec.u32,
          maxEntries: n,
          mapExtra: k,
          flags: seed === "zero" ? MapFlags.ZERO_SEED : 0,
          freeOnClose: true,
        });
        const kk = k === 0 ? 5 : k;
        const expected = theoreticalRate(n, kk, f.bits);
        const rate = measureRate(f, n, trials);
        console.log(`      k=${kk} m=${f.bits}: ${(rate * 100).toFixed(3)}% false positives, theory ${(expected * 100).toFixed(3)}%`);
        const tolerance = Math.max(expected * 0.1, 6 * Math.sqrt((expected * (1 - expected)) / trials));
        assert.ok(Math.abs(rate - expected) <= tolerance, `rate ${rate}, theory ${expected} +- ${tolerance}`);
        f.close();
      });
    }

    it("map_extra's hash count is honoured: 15 functions give almost no false positives, 1 gives many", () => {
      const few = region.createMap({ name: "fpk1", type: "bloom_filter", value: codec.u32, maxEntries: 1000, mapExtra: 1, freeOnClose: true });
      const many = region.createMap({ name: "fpk15", type: "bloom_filter", value: codec.u32, maxEntries: 1000, mapExtra: 15, freeOnClose: true });
      const r1 = measureRate(few, 1000, 20000);
      const r15 = measureRate(many, 1000, 20000);
      // Theory: k=1, m=2048: 38.6%; k=15, m=32768: 0.0008%.
      assert.ok(r1 > 0.3 && r1 < 0.47, `k=1: ${r1}`);
      assert.ok(r15 < 0.001, `k=15: ${r15}`);
      few.close();
      many.close();
    });
  });

  describe("programs of a clang-built object", () => {
    before(function () {
      skipWithoutClang(this);
    });
    const range = (first: number, count: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(first, 0);
      b.writeUInt32LE(count, 4);
      return b;
    };
    for (const [label, opts] of [
      ["JIT", { backend: "jit" }],
      ["interpreter", { backend: "interpreter" }],
      ["checked JIT", { backend: "jit", checked: true }],
      ["checked interpreter", { backend: "interpreter", checked: true }],
    ] as const) {
      it(`${label}: one program pushes, another tests; TS sees the programs' values and the reverse`, async () => {
        const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, ...opts });
        try {
          const obj = rt.load(compileFixture("runtime/bloom.bpf.c"));
          const seen = obj.map<BloomFilterMap<number>>("seen");
          assert.equal(seen.typeName, "bloom_filter");
          assert.equal(seen.hashes, 3, "__uint(map_extra, 3)");
          assert.equal(seen.bits, 8192);
          const add = obj.program("add");
          const check = obj.program("check");
          assert.equal(check.run(range(100, 500)), 0n, "an empty filter holds nothing");
          assert.equal(add.run(range(100, 500)), 0n, "every push succeeds");
          assert.equal(check.run(range(100, 500)), 500n, "no false negatives");
          const outside = Number(check.run(range(1_000_000, 2000)));
          // 500 values in 8192 bits with 3 hashes: theory 0.5%; well under 5%.
          assert.ok(outside < 100, `${outside} of 2000 never-pushed values passed`);
          for (const v of [100, 350, 599]) assert.equal(seen.has(v), true);
          seen.push(5000);
          assert.equal(check.run(range(5000, 1)), 1n, "the program sees a value pushed from TS");
          assert.equal(obj.program("bad_flags").run(), BigInt.asUintN(64, -22n), "push with BPF_EXIST: -EINVAL");
          assert.equal(add.faults.count, 0);
          assert.equal(check.faults.count, 0);
        } finally {
          rt.close();
        }
      });
    }
  });

  describe("checked mode: which map helpers take a bloom filter", () => {
    const MAPS: MapSpec[] = [
      { name: "bloom", type: 30, keySize: 0, valueSize: 8, maxEntries: 64, flags: 0, section: ".maps" },
    ];
    const VALUE = "stdw [%r10-8], 7\nlddw %r1, map_fd 0\nmov %r2, %r10\nadd %r2, -8";
    function runChecked(source: string, backend: "jit" | "interpreter") {
      const c: CheckedCase = { source: `${source}\nexit`, maps: MAPS, backend, checked: true };
      const run = spawnSync(process.execPath, [checkedChild, JSON.stringify(c)], { cwd: repoRoot, encoding: "utf8", timeout: 30000 });
      assert.equal(run.signal, null, `child killed by ${run.signal}: ${run.stderr}`);
      assert.equal(run.status, 0, `child exit status ${run.status}: ${run.stderr}`);
      const line = run.stdout.trim().split("\n").pop();
      assert.ok(line, `no result: ${run.stderr}`);
      return JSON.parse(line) as { ok: boolean; r0?: string; code?: string; message?: string };
    }
    for (const backend of ["jit", "interpreter"] as const) {
      it(`${backend}: push then peek pass the argument checks (r0 = peek's 0)`, () => {
        const r = runChecked(`${VALUE}\nmov %r3, 0\ncall 87\n${VALUE}\ncall 89`, backend);
        assert.deepEqual(r, { ok: true, r0: "0" });
      });
      for (const [helper, id, message] of [
        ["bpf_map_lookup_elem", 1, /bpf_map_lookup_elem: arg 1 \(map\): a .* map \(type 30\) is not accepted here/],
        ["bpf_map_update_elem", 2, /bpf_map_update_elem: arg 1 \(map\): a .* map \(type 30\) is not accepted here/],
        ["bpf_map_pop_elem", 88, /bpf_map_pop_elem: arg 1 \(map\): a .* map \(type 30\) is not accepted here/],
      ] as const) {
        it(`${backend}: ${helper} on a bloom filter faults, as the kernel's verifier refuses it`, () => {
          const r = runChecked(`${VALUE}\nmov %r3, %r2\nmov %r4, 0\ncall ${id}`, backend);
          assert.equal(r.ok, false, `expected a fault, got r0 ${r.r0}`);
          assert.equal(r.code, "VM_FAULT");
          assert.match(r.message ?? "", message);
        });
      }
      it(`${backend}: peek of a value outside the program's memory faults naming arg 2`, () => {
        const r = runChecked("lddw %r1, map_fd 0\nmov %r2, 0x10\ncall 89", backend);
        assert.equal(r.ok, false);
        assert.match(r.message ?? "", /bpf_map_peek_elem: arg 2 \(value\): 8 bytes at 0x10/);
      });
    }
  });
});
