/**
 * Locks in the shared region survive dead holders, and no wait is unbounded.
 *
 * A holder process (region_lock_holder, built by `npm run build:selftests`)
 * opens this test's region by name and takes one of a map's locks through
 * the real lock functions, so the lock word holds its tid. Killed with
 * SIGKILL, it leaves the lock held by a dead thread: a survivor, another
 * process (so that a hang would be killed by its timeout, not hang mocha),
 * must go on within a bounded time with the map intact. Alive, it makes
 * helpers fail with EBUSY (counted) and user-space calls fail with an error
 * naming the map, both within their bounds.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { BpfhookError, codec, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const holderBin = path.join(repoRoot, "core", "build-selftests", "maps", "region_lock_holder");
const EBUSY = 16;

/** Starts a holder and waits for its "held" (or "running") line. */
function startHolder(region: string, map: string, kind: string, arg?: number, ready = "held"): Promise<ChildProcess> {
  const args = [region, map, kind, ...(arg === undefined ? [] : [String(arg)])];
  const child = spawn(holderBin, args, { stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`holder ${kind} did not report '${ready}' in 10 s: ${err}`));
    }, 10_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.split("\n").includes(ready)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`holder ${kind} exited (${code ?? signal}) before '${ready}': ${err}`));
    });
  });
}

/** kill -9, and wait until the kernel has reaped it (its tid is gone). */
function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", (_code, signal) => {
      assert.equal(signal, "SIGKILL");
      resolve();
    });
    child.kill("SIGKILL");
  });
}

/**
 * Runs `body` in a fresh node process with `r` (the region, opened by name)
 * and `core` in scope; `body` returns a JSON-able result. The process has a
 * hard timeout: a survivor that hangs fails the test instead of hanging it.
 */
function survive(regionName: string, body: string): any {
  const script = `
    const core = require("@bpfhook/core");
    const r = core.SharedRegion.open(${JSON.stringify(regionName)});
    const t0 = Date.now();
    const result = (() => { ${body} })();
    result.ms = Date.now() - t0;
    console.log(JSON.stringify(result));
  `;
  const run = spawnSync(process.execPath, ["-e", script], { cwd: repoRoot, encoding: "utf8", timeout: 20_000 });
  assert.equal(run.signal, null, `survivor died or hung (${run.signal}): ${run.stderr}`);
  assert.equal(run.status, 0, `survivor failed: ${run.stderr}`);
  const lines = run.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!);
}

describe("28 region locks: dead holders are taken over, waits are bounded", function () {
  this.timeout(60_000);
  const name = `/bpfhook-t25-${process.pid}`;
  let region: SharedRegion;

  before(function () {
    if (!existsSync(holderBin)) {
      console.log(`      skipped: ${holderBin} not built (run 'npm run build:selftests')`);
      this.skip();
    }
    region = SharedRegion.create({ name, size: 64 << 20 });
  });
  after(() => region?.close());

  describe("a holder killed with SIGKILL while holding the lock", () => {
    for (const type of ["hash", "lru_hash", "percpu_hash"] as const) {
      it(`${type}: bucket seqlock (32 KiB values)`, async () => {
        const mapName = `dead_${type}`;
        const m = region.createMap({ name: mapName, type, key: codec.u32, keySize: 4, valueSize: 32768, maxEntries: 64 });
        const v = Buffer.alloc(m.ncpus > 1 && type === "percpu_hash" ? 32768 * m.ncpus : 32768);
        for (let k = 0; k < 10; k++) {
          v.writeUInt32LE(k, 0);
          if (type === "percpu_hash") (m as any).setPerCpu(k, Array.from({ length: m.ncpus }, () => Buffer.from(v.subarray(0, 32768))));
          else (m as any).set(k, Buffer.from(v.subarray(0, 32768)));
        }
        await killHard(await startHolder(name, mapName, "hash", 3));
        const res = survive(
          name,
          `const m = r.openMap(${JSON.stringify(mapName)}, { key: core.codec.u32 });
           const v = Buffer.alloc(32768, 7);
           if (m.setPerCpu) m.setPerCpu(3, Array.from({ length: m.ncpus }, () => v)); else m.set(3, v);
           const firsts = [];
           for (let k = 0; k < 10; k++) { const got = m.get(k); firsts.push((Array.isArray(got) ? got[0] : got).readUInt32LE(0)); }
           return { firsts, size: m.size, takeovers: m.lockTakeovers };`,
        );
        assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
        assert.deepEqual(res.firsts, [0, 1, 2, 0x07070707, 4, 5, 6, 7, 8, 9]);
        assert.equal(res.size, 10);
        assert.equal(res.takeovers, 1);
        m.close();
      });
    }

    it("hash: a writer killed at a random moment of a 32 KiB update loop never wedges the next writer", async () => {
      const m = region.createMap({ name: "hammer", type: "hash", key: codec.u32, valueSize: 32768, maxEntries: 16 });
      for (let round = 0; round < 4; round++) {
        const child = await startHolder(name, "hammer", "hammer-hash", undefined, "running");
        await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 40)));
        await killHard(child);
        const res = survive(
          name,
          `const m = r.openMap("hammer", { key: core.codec.u32 });
           for (let k = 0; k < 4; k++) m.set(k, Buffer.alloc(32768, k));
           const ok = [0, 1, 2, 3].every((k) => m.get(k).every((b) => b === k));
           return { ok, size: m.size };`,
        );
        assert.ok(res.ms < 3000, `round ${round}: survivor took ${res.ms} ms`);
        assert.equal(res.ok, true);
        assert.equal(res.size, 4);
      }
      m.close();
    });

    it("lpm_trie: trie seqlock; entries stay readable and the count is right", async () => {
      const m = region.createMap({ name: "dead_lpm", type: "lpm_trie", keySize: 8, valueSize: 4, maxEntries: 16 });
      const key = (len: number, a: number, b: number) => Buffer.from([len, 0, 0, 0, 10, a, b, 0]);
      m.set(key(8, 0, 0), Buffer.from([1, 0, 0, 0]));
      m.set(key(16, 1, 0), Buffer.from([2, 0, 0, 0]));
      await killHard(await startHolder(name, "dead_lpm", "lpm"));
      const res = survive(
        name,
        `const m = r.openMap("dead_lpm");
         const key = (len, a, b) => Buffer.from([len, 0, 0, 0, 10, a, b, 0]);
         m.set(key(24, 1, 2), Buffer.from([3, 0, 0, 0]));
         return { a: m.get(key(32, 9, 9))[0], b: m.get(key(32, 1, 9))[0], c: m.get(key(32, 1, 2))[0], size: m.size, takeovers: m.lockTakeovers };`,
      );
      assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
      assert.deepEqual([res.a, res.b, res.c, res.size, res.takeovers], [1, 2, 3, 3, 1]);
      m.close();
    });

    for (const type of ["queue", "stack"] as const) {
      it(`${type}: map spinlock`, async () => {
        const q = region.createMap({ name: `dead_${type}`, type, value: codec.u32, maxEntries: 8 });
        q.push(1).push(2);
        await killHard(await startHolder(name, `dead_${type}`, "queue"));
        const res = survive(
          name,
          `const q = r.openMap(${JSON.stringify(`dead_${type}`)}, { value: core.codec.u32 });
           q.push(3);
           return { popped: [q.pop(), q.pop(), q.pop()], takeovers: q.lockTakeovers };`,
        );
        assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
        assert.deepEqual(res.popped, type === "queue" ? [1, 2, 3] : [3, 2, 1]);
        assert.equal(res.takeovers, 1);
        q.close();
      });
    }

    const ringbufCases = {
      "ringbuf-prod": "producer lock",
      "ringbuf-cons": "consumer lock",
      "ringbuf-reserve": "a record reserved and never submitted",
    } as const;
    for (const [kind, what] of Object.entries(ringbufCases)) {
      it(`ringbuf: ${what}`, async () => {
        const mapName = `dead_${kind.replace("-", "_")}`;
        const rb = region.createMap({ name: mapName, type: "ringbuf", maxEntries: 4096 });
        assert.equal(rb.output(Buffer.from([1, 0, 0, 0])), true);
        await killHard(await startHolder(name, mapName, kind));
        const res = survive(
          name,
          `const rb = r.openMap(${JSON.stringify(mapName)});
           const wrote = rb.output(Buffer.from([3, 0, 0, 0]));
           const c = rb.consumer({ codec: core.codec.u32 });
           const got = [];
           c.on("data", (v) => got.push(v));
           c.poll();
           c.poll();  // a BUSY record stops a pass; the next asks whether its producer lives
           c.close();
           return { wrote, got, takeovers: rb.lockTakeovers };`,
        );
        assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
        assert.equal(res.wrote, true);
        assert.deepEqual(res.got, [1, 3]);
        assert.equal(res.takeovers, 1);
        rb.close();
      });
    }

    for (const kind of ["perf-prod", "perf-cons"] as const) {
      it(`perf_event_array: ring ${kind === "perf-prod" ? "producer" : "consumer"} lock`, async () => {
        const mapName = `dead_${kind.replace("-", "_")}`;
        const pa = region.createMap({ name: mapName, type: "perf_event_array", maxEntries: 2, mapExtra: 4096 });
        assert.equal(pa.output(Buffer.from([1, 0, 0, 0]), 0), true);
        await killHard(await startHolder(name, mapName, kind, 0));
        const res = survive(
          name,
          `const pa = r.openMap(${JSON.stringify(mapName)});
           const wrote = pa.output(Buffer.from([2, 0, 0, 0]), 0);
           const c = pa.consumer({ codec: core.codec.u32 });
           const got = [];
           c.on("data", (s) => got.push(s.data));
           c.poll();
           c.close();
           return { wrote, got, takeovers: pa.lockTakeovers };`,
        );
        assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
        assert.equal(res.wrote, true);
        assert.deepEqual(res.got, [1, 2]);
        assert.equal(res.takeovers, 1);
        pa.close();
      });
    }

    it("stack_trace: a bucket left half written is emptied by the takeover", async () => {
      const st = region.createMap({ name: "dead_stacktrace", type: "stack_trace", valueSize: 64, maxEntries: 8 });
      await killHard(await startHolder(name, "dead_stacktrace", "stack", 2));
      const res = survive(
        name,
        `const st = r.openMap("dead_stacktrace");
         const got = st.get(2);
         return { got: got === undefined ? null : got.map(String), takeovers: st.lockTakeovers };`,
      );
      assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
      assert.equal(res.got, null, "no torn stack is handed out");
      assert.equal(res.takeovers, 1);
      st.close();
    });

    it("region: the directory lock; createMap goes on and earlier maps stay listed", async () => {
      const before = region.maps().length;
      await killHard(await startHolder(name, "-", "region"));
      const res = survive(
        name,
        `const m = r.createMap({ name: "after_dead_dir", type: "array", valueSize: 8, maxEntries: 4 });
         return { n: r.maps().length, idx: m.index };`,
      );
      assert.ok(res.ms < 3000, `survivor took ${res.ms} ms`);
      assert.equal(res.n, before + 1);
      assert.equal(res.idx, before);
    });
  });

  describe("a live holder", () => {
    it("hash: helpers fail with EBUSY within their short bound (counted); reads go on; user space gets a clear error", async () => {
      const m = region.createMap({ name: "live_hash", type: "hash", key: codec.u32, value: codec.u32, maxEntries: 16 });
      m.set(3, 30).set(4, 40);
      const holder = await startHolder(name, "live_hash", "hash", 3);
      try {
        const key = Buffer.from([3, 0, 0, 0]);
        const busy0 = m.busyFailures;
        let t = Date.now();
        assert.equal(native().mapHelperUpdate(m.native, key, Buffer.from([9, 0, 0, 0]), 0), -EBUSY);
        assert.equal(native().mapHelperDelete(m.native, key), -EBUSY);
        assert.ok(Date.now() - t < 1000, `helpers took ${Date.now() - t} ms`);
        assert.equal(m.busyFailures, busy0 + 2);
        // Lock-free readers are not held back by a writer that does not write.
        assert.equal(m.get(3), 30);
        assert.ok(native().mapHelperLookup(m.native, key) !== null);
        assert.equal(m.get(4), 40);
        t = Date.now();
        assert.throws(
          () => m.set(3, 31),
          (e: unknown) => e instanceof BpfhookError && e.errno === -EBUSY && /map 'live_hash': update: EBUSY/.test(e.message),
        );
        const waited = Date.now() - t;
        assert.ok(waited >= 900 && waited < 5000, `user-space wait ${waited} ms`);
      } finally {
        await killHard(holder);
      }
      // Once the holder is gone, the lock is taken over.
      m.set(3, 32);
      assert.equal(m.get(3), 32);
      assert.equal(m.lockTakeovers, 1);
      m.close();
    });

    it("queue: push from a helper fails with EBUSY and is counted", async () => {
      const q = region.createMap({ name: "live_queue", type: "queue", value: codec.u32, maxEntries: 4 });
      const holder = await startHolder(name, "live_queue", "queue");
      try {
        const t = Date.now();
        assert.equal(native().mapHelperPush(q.native, Buffer.from([1, 0, 0, 0]), 0), -EBUSY);
        assert.ok(Date.now() - t < 1000);
        assert.equal(q.busyFailures, 1);
      } finally {
        await killHard(holder);
      }
      q.push(5);
      assert.equal(q.pop(), 5);
      q.close();
    });

    it("region: createMap fails with EBUSY naming the map and the region, within about a second", async () => {
      const holder = await startHolder(name, "-", "region");
      try {
        const t = Date.now();
        assert.throws(
          () => region.createMap({ name: "blocked_map", type: "array", valueSize: 8, maxEntries: 4 }),
          (e: unknown) =>
            e instanceof BpfhookError && e.errno === -EBUSY && /map 'blocked_map': create: EBUSY/.test(e.message) &&
            e.message.includes(name),
        );
        assert.ok(Date.now() - t < 5000);
      } finally {
        await killHard(holder);
      }
      region.createMap({ name: "blocked_map", type: "array", valueSize: 8, maxEntries: 4 }).close();
    });
  });
});
