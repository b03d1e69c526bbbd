import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { codec, Runtime, type BpfMap, type RingBufMap } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { testAddon } from "./support/test-addon.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const u64 = (v: bigint | number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

describe("51 runtime: clang-built objects", function () {
  before(function () {
    skipWithoutClang(this);
  });

  let rt: Runtime;
  beforeEach(async () => {
    rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
  });
  afterEach(() => rt.close());

  it("runs a program with BTF maps, global data, a subprogram and a ring buffer", async () => {
    const obj = rt.load(compileFixture("runtime/counter.bpf.c"));
    assert.deepEqual(obj.maps.map((m) => m.name).sort(), [".bss", ".data", ".rodata", "counts", "events"]);
    await obj.program("on_count").attach();

    const events = obj.map<RingBufMap>("events").consumer({
      codec: codec.struct({ pid: codec.u32, key: codec.u32, count: codec.u64 }),
    });
    const seen: { pid: number; key: number; count: bigint }[] = [];
    events.on("data", (e) => seen.push(e));

    for (let i = 0; i < 10; i++) {
      const r = trigger(rt, "count", u64(i));
      assert.equal(r.result, BigInt("c".charCodeAt(0)), ".data initial value reaches the program");
    }
    const fromNative = testAddon().fireSimpleThreads("count", 2, 500);
    assert.equal(fromNative, 1000);

    const counts = obj.map<BpfMap<number, bigint>>("counts");
    let sum = 0n;
    for (const [key, value] of counts.entries()) {
      assert.ok(key >= 0 && key < 8);
      sum += value;
    }
    assert.equal(sum, 1010n * 3n, "every run added .rodata's scale (3) atomically");
    assert.equal(obj.map<BpfMap<number, Buffer>>(".bss").get(0)?.readBigUInt64LE(0), 1010n);

    events.poll();
    events.close();
    assert.equal(seen.length, 1010, "no event lost while the consumer keeps up");
    assert.ok(seen.every((e) => e.pid === process.pid));
    assert.deepEqual(
      seen.slice(0, 3).map((e) => [e.key, e.count]),
      [
        [0, 3n],
        [1, 3n],
        [2, 3n],
      ],
    );
  });

  it("gives programs the helpers with kernel semantics", async () => {
    const obj = rt.load(compileFixture("runtime/helpers.bpf.c"));
    await obj.program("run_helpers").attach({ type: "simple", data: { source: "helpers" }, cookie: 0xc0ffeen });
    const secret = 0x1122334455667788n;
    const layout = codec.struct({
      pid_tgid: codec.u64,
      uid_gid: codec.u64,
      comm: codec.cstring(16),
      ktime: codec.u64,
      ktime_boot: codec.u64,
      ktime_coarse: codec.u64,
      rand1: codec.u32,
      rand2: codec.u32,
      cpu: codec.u32,
      read_ok: codec.i32,
      read_value: codec.u64,
      read_bad: codec.i64,
      read_str_len: codec.i64,
      read_str: codec.cstring(8),
      read_user_ok: codec.i64,
      read_user_str_len: codec.i64,
      strncmp_eq: codec.i64,
      strncmp_lt: codec.i64,
      cookie: codec.u64,
      func_ip: codec.u64,
      override: codec.i64,
      set_retval: codec.i64,
      printk: codec.i64,
      secret: codec.u64,
    });
    const ctx = Buffer.alloc(layout.size);
    ctx.writeBigUInt64LE(secret, ctx.length - 8);
    const before = process.hrtime.bigint();
    const r = trigger(rt, "helpers", ctx);
    const after = process.hrtime.bigint();
    assert.equal(r.count, 1);
    const v = layout.decode(r.context, 0);

    assert.equal(v.pid_tgid >> 32n, BigInt(process.pid), "tgid");
    assert.ok((v.pid_tgid & 0xffffffffn) > 0n, "tid");
    assert.equal(v.uid_gid & 0xffffffffn, BigInt(process.getuid!()), "uid");
    assert.equal(v.uid_gid >> 32n, BigInt(process.getgid!()), "gid");
    const comm = readFileSync(`/proc/self/task/${v.pid_tgid & 0xffffffffn}/comm`, "utf8").trim();
    assert.equal(v.comm.slice(0, 8), comm.slice(0, 8), "comm of the calling thread");
    assert.ok(v.ktime >= before && v.ktime <= after, "ktime_get_ns is CLOCK_MONOTONIC");
    assert.ok(v.ktime_boot >= v.ktime, "boot time includes suspend");
    assert.ok(v.ktime_coarse > 0n && v.ktime_coarse <= after);
    assert.notEqual(v.rand1, v.rand2);
    assert.ok(v.cpu < os.availableParallelism() * 4, "a CPU number");
    assert.equal(v.read_ok, 0);
    assert.equal(v.read_value, secret, "probe_read and probe_read_user copy");
    assert.equal(v.read_user_ok, 0n);
    assert.equal(v.read_bad, -14n, "probe_read of a bad address is -EFAULT, not a crash");
    assert.equal(v.read_str_len, 8n, "probe_read_str truncates and counts the NUL");
    assert.equal(v.read_str, "bpfhook");
    assert.equal(v.read_user_str_len, 3n);
    assert.equal(v.strncmp_eq, 0n);
    assert.ok(v.strncmp_lt < 0n);
    assert.equal(v.cookie, 0xc0ffeen, "get_attach_cookie sees the link's cookie");
    assert.equal(v.func_ip, 0n, "no function behind a simple source");
    assert.equal(v.override, -95n, "override_return needs an attach point that can override (-EOPNOTSUPP)");
    assert.equal(v.set_retval, -95n);
    assert.ok(v.printk > 0n, "trace_printk wrote its line");
  });

  it("trace_printk output reaches the user's stderr", function () {
    // In a child process, so the line can be read back.
    const script = `
      const { Runtime } = require("@bpfhook/core");
      const { trigger } = require("@bpfhook/plugin-simple");
      (async () => {
        const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: ${JSON.stringify(repoRoot)} });
        const obj = rt.load(${JSON.stringify(compileFixture("runtime/helpers.bpf.c"))});
        await obj.program("run_helpers").attach();
        trigger(rt, "helpers", Buffer.alloc(256));
        rt.close();
      })();`;
    const run = spawnSync(process.execPath, ["-e", script], { cwd: repoRoot, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /bpf_trace_printk: printk from bpfhook: 42/);
  });

  it("loads the same object twice into one runtime without map name clashes", () => {
    const a = rt.load(compileFixture("runtime/counter.bpf.c"));
    const b = rt.load(compileFixture("runtime/counter.bpf.c"));
    assert.notEqual(a.objectMap("counts").regionName, b.objectMap("counts").regionName);
    a.map<BpfMap<number, bigint>>("counts").set(1, 5n);
    assert.equal(b.map<BpfMap<number, bigint>>("counts").get(1), undefined, "each object has its own maps");
  });
});
