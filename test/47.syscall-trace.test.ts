/**
 * The syscall-trace plugin (issue 12): its syscall table, sections, config
 * entries and private data; the kernel's contexts as the verifier proves
 * programs against them (per section); the native dispatcher driven
 * directly, as the text transformer's hooks are called (no transformer
 * needed); then programs on this process's real system calls and under
 * `bpfhook run`, which need the transformer (skipped, with the reason, where
 * it is not built).
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { assembleBytes, BpfhookError, Runtime, type BpfMap, type LoadedObject, type RodataValue } from "@bpfhook/core";
import {
  decodePrivateData,
  dispatch,
  encodePrivateData,
  parseSyscallConfig,
  parseSyscallSection,
  setDispatchOnly,
  syscallName,
  syscallNumber,
  syscallTraceSchema,
  syscallTraceStats,
  SYSCALLS_X86_64,
  SYS_ENTER_LAYOUT,
  SYS_EXIT_LAYOUT,
} from "@bpfhook/plugin-syscall-trace";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { testAddon, type TestAddon } from "./support/test-addon.js";
import { testTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const PLUGIN = "@bpfhook/plugin-syscall-trace";
const NR = { getpid: 39, getppid: 110, openat: 257, kill: 62, tgkill: 234, newstat: 4, statx: 332, mount: 165 } as const;
const AT_FDCWD = -100;

/** A NUL-terminated string in memory that lives as long as the test keeps `buf`. */
function cstr(t: TestAddon, s: string): { buf: Buffer; addr: bigint } {
  const buf = Buffer.from(`${s}\0`, "utf8");
  return { buf, addr: t.bufferAddress(buf) };
}

/** opensnoop's struct event (test/fixtures/syscall/opensnoop.bpf.c). */
function openEvent(b: Buffer) {
  const cut = (o: number, n: number) => {
    const s = b.subarray(o, o + n);
    const z = s.indexOf(0);
    return s.toString("utf8", 0, z < 0 ? n : z);
  };
  return {
    pid: b.readUInt32LE(8),
    tid: b.readUInt32LE(12),
    ret: b.readInt32LE(16),
    flags: b.readInt32LE(20),
    headerPid: b.readUInt32LE(24),
    comm: cut(32, 16),
    fname: cut(48, 256),
  };
}

describe("47 syscall-trace", function () {
  describe("the table, sections, config entries and private data", () => {
    it("holds every x86-64 syscall once, with the kernel's numbers and tracepoint names", () => {
      assert.ok(SYSCALLS_X86_64.length >= 370, `${SYSCALLS_X86_64.length} entries`);
      const nrs = SYSCALLS_X86_64.map(([nr]) => nr);
      assert.equal(new Set(nrs).size, nrs.length, "numbers are unique");
      assert.equal(syscallNumber("read"), 0);
      assert.equal(syscallNumber("openat"), 257);
      assert.equal(syscallNumber("getppid"), 110);
      assert.equal(syscallNumber("exit_group"), 231);
      assert.equal(syscallNumber("clone3"), 435);
      assert.equal(syscallNumber("newstat"), 4, "the entry point's name (tracepoint sys_enter_newstat)");
      assert.equal(syscallNumber("stat"), 4, "and the table's");
      assert.equal(syscallName(4), "newstat");
      assert.equal(syscallName(63), "newuname");
      assert.equal(syscallNumber("futex_waitv"), 449);
      assert.equal(syscallName(166), "umount", "umount2's entry point is sys_umount");
    });

    it("parses the four prefixes, enter and exit, and raw_syscalls", () => {
      assert.deepEqual(parseSyscallSection("sys_enter_openat", "tracepoint/syscalls/sys_enter_openat"), { direction: "enter", nr: 257 });
      assert.deepEqual(parseSyscallSection("sys_exit_openat", "tp/syscalls/sys_exit_openat"), { direction: "exit", nr: 257 });
      assert.deepEqual(parseSyscallSection("sys_enter", "tracepoint/raw_syscalls/sys_enter"), { direction: "enter", nr: "all" });
      assert.deepEqual(parseSyscallSection("sys_exit", "tp/raw_syscalls/sys_exit"), { direction: "exit", nr: "all" });
    });

    it("refuses an unknown name, naming the section and the closest names", () => {
      assert.throws(
        () => parseSyscallSection("sys_enter_opnat", "tracepoint/syscalls/sys_enter_opnat"),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "NOT_FOUND");
          assert.match(e.message, /section 'tracepoint\/syscalls\/sys_enter_opnat': no x86-64 syscall 'opnat' \(closest: .*openat/);
          return true;
        },
      );
      assert.throws(() => parseSyscallSection("sys_enterx", "tracepoint/raw_syscalls/sys_enterx"), /only sys_enter and sys_exit/);
      assert.throws(() => parseSyscallSection("openat", "tracepoint/syscalls/openat"), /sys_enter_<name> or sys_exit_<name>/);
      assert.throws(() => parseSyscallSection("sys_enter_", "tracepoint/syscalls/sys_enter_"), /section 'tracepoint\/syscalls\/sys_enter_': expected .*sys_enter_<name>/);
      assert.throws(() => parseSyscallSection("", "tp/syscalls"), /section 'tp\/syscalls': expected/);
      assert.throws(() => parseSyscallSection("sys_enter_x", "tracepoint/raw_syscalls/sys_enter_x"), /section 'tracepoint\/raw_syscalls\/sys_enter_x': raw_syscalls has only sys_enter and sys_exit/);
      assert.throws(() => parseSyscallSection("sys_enter_openat/x", "tracepoint/syscalls/sys_enter_openat/x"), /no x86-64 syscall 'openat\/x'/);
    });

    it("a config entry's syscall number out of range, or both syscall and nr, is refused naming the entry's own field", () => {
      for (const bad of [600, 512, -1, 1.5]) {
        assert.throws(
          () => parseSyscallConfig({ direction: "enter", syscall: bad }),
          (e: Error & { code?: string }) => e.code === "BAD_ARGUMENT" && new RegExp(`config entry: syscall ${bad} is not an x86-64 syscall number \\(an integer 0 to 511\\)`).test(e.message),
          String(bad),
        );
      }
      assert.deepEqual(parseSyscallConfig({ direction: "enter", syscall: 511 }), { direction: "enter", nr: 511 });
      assert.throws(() => parseSyscallConfig({ direction: "enter", syscall: "openat", nr: 3 }), /config entry: give 'syscall' or 'nr', not both/);
      assert.throws(() => parseSyscallConfig({ direction: "enter", syscall: true }), /'syscall' must be a name, a number or "all"/);
    });

    it("config entries name the call or 'all'; the schema is strict; private data round-trips", () => {
      assert.deepEqual(parseSyscallConfig({ direction: "exit", syscall: "openat" }), { direction: "exit", nr: 257 });
      assert.deepEqual(parseSyscallConfig({ direction: "enter", syscall: "all" }), { direction: "enter", nr: "all" });
      assert.throws(() => parseSyscallConfig({ direction: "enter", syscall: "opneat" }), /config entry: no x86-64 syscall 'opneat'/);
      assert.equal(syscallTraceSchema.safeParse({ direction: "enter", nr: 1, extra: 1 }).success, false);
      assert.equal(syscallTraceSchema.safeParse({ direction: "sideways", nr: 1 }).success, false);
      assert.equal(syscallTraceSchema.safeParse({ direction: "enter", nr: 512 }).success, false);
      for (const d of [
        { direction: "enter", nr: 257, override: "allow" },
        { direction: "exit", nr: "all", override: "deny" },
      ] as const) {
        const bytes = encodePrivateData(d);
        assert.equal(bytes.length, 16);
        assert.deepEqual(decodePrivateData(bytes), d);
      }
    });
  });

  describe("the runtime: sections, contexts, the verifier", () => {
    let rt: Runtime;
    before(function () {
      skipWithoutClang(this);
    });
    beforeEach(async () => {
      rt = await Runtime.create({ plugins: [PLUGIN], resolveFrom: repoRoot });
    });
    afterEach(() => rt?.close());

    it("selects attach type syscall_trace (2) for every form of section", () => {
      for (const s of ["tracepoint/syscalls/sys_enter_openat", "tp/syscalls/sys_exit_read", "tracepoint/raw_syscalls/sys_enter", "tp/raw_syscalls/sys_exit"]) {
        const m = rt.registry.matchSection(s);
        assert.equal(m?.type.id, 2, s);
        assert.equal(m?.type.name, "syscall_trace");
      }
    });

    it("verifies the tools' shapes in strict mode against the kernel's enter and exit contexts", () => {
      for (const f of ["opensnoop", "syscount", "statsnoop", "sigsnoop", "mountsnoop", "override", "bench"]) {
        const obj = rt.load(compileFixture(`syscall/${f}.bpf.c`));
        assert.ok(obj.programs.length > 0, f);
      }
    });

    it("an exit program is proven against the 24-byte exit context, and no program writes its context", async () => {
      await assert.rejects(
        async () => rt.load(compileFixture("syscall/bad_context.bpf.c")),
        (e: BpfhookError) => e.code === "VERIFIER_REFUSED" && /outside the 24-byte context \(trace_event_raw_sys_exit\)/.test(e.message),
      );
      await assert.rejects(
        async () => rt.load(compileFixture("syscall/bad_write.bpf.c")),
        (e: BpfhookError) => e.code === "VERIFIER_REFUSED" && /trace_event_raw_sys_enter\) is not writable/.test(e.message),
      );
      assert.equal(SYS_ENTER_LAYOUT.size, 64);
      assert.equal(SYS_EXIT_LAYOUT.size, 24);
    });
  });

  describe("the dispatcher, driven as the transformer drives it", () => {
    let rt: Runtime;
    let t: TestAddon;
    before(function () {
      skipWithoutClang(this);
      t = testAddon();
    });
    beforeEach(async () => {
      rt = await Runtime.create({ plugins: [PLUGIN], resolveFrom: repoRoot });
      setDispatchOnly(rt, true);
    });
    afterEach(() => {
      rt?.close();
    });

    const load = (f: string, rodata?: Record<string, RodataValue>): LoadedObject =>
      rt.load(compileFixture(`syscall/${f}.bpf.c`), rodata ? { rodata } : undefined);
    const attachAll = async (obj: LoadedObject) => {
      for (const p of obj.programs) await p.attach();
    };

    it("opensnoop: path kept between enter and exit, event with the result, pid/tid/comm/header of this thread", async () => {
      const obj = load("opensnoop");
      await attachAll(obj);
      const path1 = cstr(t, "/etc/hostname");
      const r = dispatch(rt, NR.openat, [AT_FDCWD, path1.addr, 0o2000000, 0], 7);
      assert.deepEqual(r, { action: 0, ret: 7n }, "the call runs, its result unchanged");
      const events: ReturnType<typeof openEvent>[] = [];
      const c = obj.map<any>("events").consumer();
      c.on("data", (b: Buffer) => events.push(openEvent(b)));
      c.poll();
      c.close();
      assert.equal(events.length, 1);
      const e = events[0]!;
      assert.equal(e.fname, "/etc/hostname");
      assert.equal(e.ret, 7);
      assert.equal(e.flags, 0o2000000);
      assert.equal(e.pid, process.pid);
      assert.equal(e.tid, process.pid, "the main thread's tid is the pid");
      assert.equal(e.headerPid, e.tid, "common_pid: the calling thread, as the kernel's");
      assert.equal(e.comm, readFileComm());
      const counts = obj.map<BpfMap<number, bigint>>("counts");
      assert.deepEqual([counts.get(0), counts.get(1)], [1n, 1n]);
      // Another number: nothing runs.
      dispatch(rt, NR.getppid, [], 1);
      assert.deepEqual([counts.get(0), counts.get(1)], [1n, 1n]);
      path1.buf.fill(0);
    });

    it("const volatile filters from rodata: targ_failed, targ_tgid", async () => {
      const failed = load("opensnoop", { targ_failed: true });
      await attachAll(failed);
      const p = cstr(t, "/nope");
      dispatch(rt, NR.openat, [AT_FDCWD, p.addr, 0], 3);
      dispatch(rt, NR.openat, [AT_FDCWD, p.addr, 0], -2);
      const counts = failed.map<BpfMap<number, bigint>>("counts");
      assert.deepEqual([counts.get(0), counts.get(1)], [2n, 1n], "only the failed open is reported");
      failed.close();
      const other = load("opensnoop", { targ_tgid: process.pid + 1 });
      await attachAll(other);
      dispatch(rt, NR.openat, [AT_FDCWD, p.addr, 0], 3);
      const c2 = other.map<BpfMap<number, bigint>>("counts");
      assert.deepEqual([c2.get(0), c2.get(1)], [0n, 0n], "another process's pid filters everything out");
    });

    it("syscount: raw_syscalls counts every number, with latencies", async () => {
      const obj = load("syscount");
      await attachAll(obj);
      for (let i = 0; i < 5; i++) dispatch(rt, NR.getppid, [], 1);
      for (let i = 0; i < 3; i++) dispatch(rt, 0, [0, 0, 0], 0);
      dispatch(rt, 600, [], -38); // not an x86-64 number: raw_syscalls still see it
      const data = obj.map<BpfMap<number, Buffer>>("data");
      const count = (nr: number) => {
        const v = data.get(nr) as unknown as Buffer | { count: bigint } | undefined;
        if (v === undefined) return 0n;
        return Buffer.isBuffer(v) ? v.readBigUInt64LE(0) : BigInt(v.count);
      };
      assert.equal(count(NR.getppid), 5n);
      assert.equal(count(0), 3n);
      assert.equal(count(600), 1n);
    });

    it("statsnoop (perf buffer) and sigsnoop (ring buffer)", async () => {
      const st = load("statsnoop");
      await attachAll(st);
      const p = cstr(t, "/etc/passwd");
      dispatch(rt, NR.statx, [AT_FDCWD, p.addr, 0, 0x7ff, 0], 0);
      dispatch(rt, NR.newstat, [p.addr, 0], -2);
      const stats: { ret: number; nr: number; path: string }[] = [];
      const pc = st.map<any>("events").consumer();
      pc.on("data", (s: { data: Buffer } | Buffer) => {
        const b = Buffer.isBuffer(s) ? s : s.data;
        stats.push({ ret: b.readInt32LE(12), nr: b.readUInt32LE(16), path: b.toString("utf8", 24, b.indexOf(0, 24)) });
      });
      pc.poll();
      pc.close();
      assert.deepEqual(stats, [
        { ret: 0, nr: NR.statx, path: "/etc/passwd" },
        { ret: -2, nr: NR.newstat, path: "/etc/passwd" },
      ]);

      const sg = load("sigsnoop");
      await attachAll(sg);
      dispatch(rt, NR.kill, [process.pid, 0], 0);
      dispatch(rt, NR.tgkill, [process.pid, 12345, 10], -3);
      const sigs: { pid: number; tpid: number; sig: number; ret: number }[] = [];
      const rc = sg.map<any>("events").consumer();
      rc.on("data", (b: Buffer) => sigs.push({ pid: b.readUInt32LE(0), tpid: b.readUInt32LE(4), sig: b.readInt32LE(8), ret: b.readInt32LE(12) }));
      rc.poll();
      rc.close();
      assert.deepEqual(sigs, [
        { pid: process.pid, tpid: process.pid, sig: 0, ret: 0 },
        { pid: process.pid, tpid: 12345, sig: 10, ret: -3 },
      ]);
    });

    it("overrides on enter (the call is skipped with the value) and on exit (the result replaced)", async () => {
      const obj = load("override", { deny_path: "/tmp/denied" });
      await attachAll(obj);
      assert.deepEqual(dispatch(rt, NR.getpid, [], process.pid), { action: 1, ret: 4242n }, "getpid returns 4242, unexecuted");
      const denied = cstr(t, "/tmp/denied");
      const other = cstr(t, "/tmp/other");
      assert.deepEqual(dispatch(rt, NR.openat, [AT_FDCWD, denied.addr, 0], 5), { action: 1, ret: -2n });
      assert.deepEqual(dispatch(rt, NR.openat, [AT_FDCWD, other.addr, 0], 5), { action: 0, ret: 5n });
      assert.deepEqual(dispatch(rt, NR.getppid, [], 100), { action: 0, ret: 1000100n });
      const seen = obj.map<BpfMap<number, bigint>>("seen");
      assert.deepEqual([seen.get(0), seen.get(1), seen.get(2), seen.get(3)], [1n, 1n, 1n, 0n]);
    });

    it("override 'deny' (a config entry): bpf_override_return returns -EPERM and changes nothing", async () => {
      const obj = load("override");
      await obj.program("fake_getpid").attach({ type: "syscall_trace", data: { direction: "enter", syscall: "getpid", override: "deny" } });
      assert.deepEqual(dispatch(rt, NR.getpid, [], 77), { action: 0, ret: 77n });
      assert.equal(obj.map<BpfMap<number, bigint>>("seen").get(3), -1n, "-EPERM");
    });

    it("a context read past the 64-byte record: refused at load (strict), a fault that ends the run (checked), the call unharmed", async () => {
      const past = { name: "past", section: "tracepoint/syscalls/sys_enter_getppid", insns: assembleBytes("ldxdw %r0, [%r1+64]\nexit") };
      await assert.rejects(
        async () => rt.load({ programs: [past] }),
        (e: BpfhookError) => e.code === "VERIFIER_REFUSED" && /64-byte context \(trace_event_raw_sys_enter\)/.test(e.message),
      );
      // A section no plugin here serves: pending at load, proven against syscall_trace's 64 bytes at a forced attach.
      const foreign = rt.load({ programs: [{ name: "foreign", section: "kprobe/do_sys_open", insns: assembleBytes("ldxdw %r0, [%r1+100]\nexit") }] });
      await assert.rejects(
        foreign.program("foreign").attach({ type: "syscall_trace", data: { direction: "enter", syscall: "openat" }, force: true }),
        (e: BpfhookError) => e.code === "VERIFIER_REFUSED" && /64-byte context/.test(e.message),
      );
      assert.equal(rt.attachments.length, 0);
      for (const backend of ["jit", "interpreter"] as const) {
        const checked = await Runtime.create({ plugins: [PLUGIN], resolveFrom: repoRoot, verifier: "checked", backend });
        try {
          setDispatchOnly(checked, true);
          const obj = checked.load({ programs: [past, { name: "exit_past", section: "tp/syscalls/sys_exit_getppid", insns: assembleBytes("ldxdw %r0, [%r1+4096]\nexit") }] });
          for (const p of obj.programs) await p.attach();
          assert.deepEqual(dispatch(checked, NR.getppid, [], 5), { action: 0, ret: 5n }, backend);
        } finally {
          checked.close();
        }
      }
    });

    it("explicit private data out of range is refused naming the field; detach twice is a no-op; attach after close is refused", async () => {
      const obj = load("bench");
      const counter = obj.program("counter");
      await assert.rejects(counter.attach({ type: "syscall_trace", data: { direction: "enter", nr: 512 } }), (e: BpfhookError) => e.code === "SCHEMA_INVALID" && /nr: /.test(e.message));
      await assert.rejects(counter.attach({ type: "syscall_trace", data: { direction: "enter", nr: -1 } }), (e: BpfhookError) => e.code === "SCHEMA_INVALID" && /nr: /.test(e.message));
      await assert.rejects(counter.attach({ type: "syscall_trace", data: { direction: "both", nr: 1 } }), (e: BpfhookError) => e.code === "SCHEMA_INVALID" && /direction/.test(e.message));
      await assert.rejects(counter.attach({ type: "syscall_trace", data: { direction: "enter", syscall: 600 } }), /syscall 600 is not an x86-64 syscall number/);
      assert.equal(rt.attachments.length, 0, "nothing half-attached");
      const link = await counter.attach({ type: "syscall_trace", data: { direction: "enter", syscall: "getppid" } });
      dispatch(rt, NR.getppid, [], 1);
      link.detach();
      link.detach();
      dispatch(rt, NR.getppid, [], 1);
      assert.equal(obj.map<BpfMap<number, bigint>>("calls").get(0), 1n);
      rt.close();
      await assert.rejects(counter.attach(), /runtime is closed/);
    });

    it("detach: a detached program never runs again; the others keep running", async () => {
      const obj = load("bench");
      const a = await obj.program("counter").attach();
      const b = await obj.program("counter").attach();
      const calls = obj.map<BpfMap<number, bigint>>("calls");
      dispatch(rt, NR.getppid, [], 1);
      assert.equal(calls.get(0), 2n);
      a.detach();
      dispatch(rt, NR.getppid, [], 1);
      assert.equal(calls.get(0), 3n);
      b.detach();
      dispatch(rt, NR.getppid, [], 1);
      assert.equal(calls.get(0), 3n);
      const s = syscallTraceStats(rt);
      assert.equal(s.installed, false);
      assert.equal(s.dispatchOnly, true);
      assert.equal(s.graceTimeouts, 0);
    });
  });

  describe("vector state: kept only where a program's helpers may change it", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.close());
    const guardedAfter = async (opts: { backend?: "jit" | "interpreter" }, names: string[]) => {
      rt?.close();
      rt = await Runtime.create({ plugins: [PLUGIN], resolveFrom: repoRoot, ...opts });
      setDispatchOnly(rt, true);
      const obj = rt.load(compileFixture("syscall/vector.bpf.c"));
      for (const n of names) await obj.program(n).attach();
      dispatch(rt, NR.getppid, [], 1);
      return syscallTraceStats(rt).guarded;
    };
    before(function () {
      skipWithoutClang(this);
    });

    it("JIT programs on the core's vector-clean helpers and map types run unguarded; LRU maps and comm are guarded", async () => {
      assert.equal(await guardedAfter({}, ["hash_counter", "ring_event"]), 0);
      assert.equal(await guardedAfter({}, ["hash_counter", "lru_counter", "comm"]), 2);
      // The interpreter is C that may reach anything: always guarded.
      assert.equal(await guardedAfter({ backend: "interpreter" }, ["hash_counter"]), 1);
    });
  });

  describe("real system calls of this process (embedded mode)", function () {
    this.timeout(60000);
    let transformerMissing: string | undefined;
    before(function () {
      skipWithoutClang(this);
      transformerMissing = transformerReason();
      if (transformerMissing) {
        console.log(`      skipped: ${transformerMissing}`);
        this.skip();
      }
    });

    /**
     * A child Node process loads the programs and makes the calls: overrides
     * on entry (getpid, openat of one path) and exact counts from native
     * threads. `asNobody`: the child runs as uid/gid 65534 (no root: no
     * page 0, the rel32 and Syscall User Dispatch mechanisms).
     */
    function embedded(asNobody: boolean) {
      const dir = testTempDir("bpfhook-sc-");
      chmodSync(dir, 0o755);
      const denied = path.join(dir, "denied");
      writeFileSync(denied, "x", { mode: 0o644 });
      // The fixtures' build folder is private (0700): copies the child can read.
      const copy = (f: string) => {
        const to = path.join(dir, `${f}.bpf.o`);
        copyFileSync(compileFixture(`syscall/${f}.bpf.c`), to);
        chmodSync(to, 0o644);
        return to;
      };
      const script = `
        const { Runtime } = require("@bpfhook/core");
        const { syscallTraceStats } = require("${PLUGIN}");
        const { testAddon } = require(${JSON.stringify(path.join(__dirname, "support", "test-addon.js"))});
        (async () => {
          const t = testAddon();
          const rt = await Runtime.create({ plugins: ["${PLUGIN}"], resolveFrom: ${JSON.stringify(repoRoot)} });
          const obj = rt.load(${JSON.stringify(copy("override"))}, { rodata: { deny_path: ${JSON.stringify(denied)} } });
          const overrides = [];
          for (const p of obj.programs) overrides.push(await p.attach());
          const bench = rt.load(${JSON.stringify(copy("bench"))});
          await bench.program("counter").attach();
          const out = {};
          out.getpid = t.libcGetpid();
          out.denied = t.openClose(${JSON.stringify(denied)});
          out.other = t.openClose(${JSON.stringify(denied)} + "-not") ;
          const before = bench.map("calls").get(0);
          out.threads = t.getppidThreads(8, 5000);
          out.counted = Number(bench.map("calls").get(0) - before);
          // Vector registers across a traced getppid: the counter is JIT code
          // that reaches no C (nothing saved); comm calls libc (xmm0-15 and
          // the AVX state saved around it).
          out.vectors = t.getppidKeepsVectors();
          const vec = rt.load(${JSON.stringify(copy("vector"))});
          // A vector-clean helper (not general registers only): xmm0-15 kept
          // by the dispatcher, nothing by the transformer.
          const hash = await vec.program("hash_counter").attach();
          out.vectorsWithHelper = t.getppidKeepsVectors();
          hash.detach();
          const comm = await vec.program("comm").attach();
          out.vectorsWithComm = t.getppidKeepsVectors();
          comm.detach();
          // The in-place context of a plain program: kill(getpid(), 0), with
          // getpid no longer overridden.
          for (const l of overrides) l.detach();
          const kctx = await vec.program("kill_ctx").attach();
          out.killRet = t.killSelf(0);
          kctx.detach();
          const seen = vec.map(".bss").get(0);
          const u64 = (i) => seen.readBigUInt64LE(i * 8).toString();
          out.seen = { hits: u64(0), pid: u64(1), id: u64(2), args: [0, 1, 2, 3, 4, 5].map((i) => u64(3 + i)), header: u64(9) };
          out.pid = process.pid;
          out.stats = syscallTraceStats(rt);
          rt.close();
          out.after = t.libcGetpid();
          out.deniedAfter = t.openClose(${JSON.stringify(denied)}) >= 0;
          console.log(JSON.stringify(out));
        })().catch((e) => { console.error(e); process.exit(2); });`;
      const [cmd, args] = asNobody
        ? ["setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script]]
        : [process.execPath, ["-e", script]];
      const r = spawnSync(cmd, args as string[], { encoding: "utf8", timeout: 50000, cwd: repoRoot });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(out.getpid, 4242, "getpid overridden on entry");
      assert.equal(out.denied, -2, "openat of the denied path fails with ENOENT, the file not opened");
      assert.equal(out.other, -2, "a missing file: the real ENOENT");
      assert.equal(out.threads, 40000);
      assert.equal(out.counted, 40000, "every getppid of every thread counted once");
      assert.equal(out.vectors, 0, "xmm0-15 and the AVX-512 state intact across a getppid traced by JIT code alone");
      assert.equal(out.vectorsWithHelper, 0, "and across one traced by a program on vector-clean helpers (SSE C)");
      assert.equal(out.vectorsWithComm, 0, "and across one traced by a program that calls libc");
      assert.equal(out.killRet, 0);
      assert.equal(out.seen.hits, "1", "kill_ctx ran once");
      assert.equal(out.seen.pid, String(out.pid), "header pid: the calling thread (the main one)");
      assert.equal(out.seen.header, String(BigInt(out.pid) << 32n), "header: type, flags, preempt_count 0, then the pid");
      assert.equal(out.seen.id, "62", "id: SYS_kill");
      assert.deepEqual(out.seen.args.slice(0, 2), [String(out.pid), "0"], "args: kill(getpid(), 0)");
      assert.notEqual(out.after, 4242, "detached at close");
      assert.equal(out.deniedAfter, true, "the file opens again after close");
      assert.equal(out.stats.missed, 0);
      if (asNobody) assert.equal(out.stats.sitesPage0, 0, "no page 0 without root");
      return out.stats;
    }

    it("embedded: overrides on entry and exact counts from many native threads, in a child process", () => {
      const st = embedded(false);
      console.log(`      mechanisms ${st.mechanisms}: ${st.sitesFound} sites (${st.sitesRel32} rel32, ${st.sitesPage0} page0, ${st.sitesSud} sud)`);
    });

    it("the same as an unprivileged user (setpriv --reuid=65534)", function () {
      if (process.getuid?.() !== 0) {
        console.log("      skipped: not root, so this process is the unprivileged run already");
        this.skip();
      }
      if (spawnSync("setpriv", ["--version"]).status !== 0) {
        console.log("      skipped: setpriv (util-linux) is not installed");
        this.skip();
      }
      // The child loads the packages from this checkout: nobody must be able to.
      const probe = path.join(repoRoot, "core", "package.json");
      const canRead = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", probe]);
      if (canRead.status !== 0) {
        console.log(`      skipped: uid 65534 cannot read ${probe} (a directory above the checkout is closed to others, as a mktemp -d is)`);
        this.skip();
      }
      const st = embedded(true);
      console.log(`      as 65534: mechanisms ${st.mechanisms}: ${st.sitesFound} sites (${st.sitesRel32} rel32, ${st.sitesSud} sud)`);
    });
  });

  describe("agent mode: bpfhook run", function () {
    this.timeout(120000);
    const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
    before(function () {
      skipWithoutClang(this);
      const reason = transformerReason();
      if (reason) {
        console.log(`      skipped: ${reason}`);
        this.skip();
      }
    });

    const runJ = (object: string, cmd: string[], env: NodeJS.ProcessEnv = {}) => {
      const r = spawnSync(process.execPath, [cli, "run", "-j", object, "--", ...cmd], {
        encoding: "utf8",
        timeout: 100000,
        env: { ...process.env, ...env },
      });
      const lines = r.stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { type: string; data: any });
      return { r, lines };
    };
    const opened = (lines: { type: string; data: any }[], pid?: number) =>
      lines.filter((l) => l.type === "event" && l.data.map === "events" && (pid === undefined || l.data.value.pid === pid)).map((l) => l.data.value);

    it("opensnoop on cat FILE and ls DIR: the files opened, with their results", () => {
      const dir = testTempDir("bpfhook-sc-agent-");
      const file = path.join(dir, "hello.txt");
      writeFileSync(file, "hello\n");
      const object = compileFixture("syscall/opensnoop.bpf.c");
      const cat = runJ(object, ["cat", file]);
      assert.equal(cat.r.status, 0, cat.r.stderr);
      const catOpens = opened(cat.lines).filter((e) => e.fname === file);
      assert.equal(catOpens.length, 1, JSON.stringify(opened(cat.lines)));
      assert.ok(catOpens[0].ret >= 0);
      const ls = runJ(object, ["ls", dir]);
      assert.equal(ls.r.status, 0, ls.r.stderr);
      assert.ok(opened(ls.lines).some((e) => e.fname === dir && e.ret >= 0), "ls opened the directory");
    });

    it("from a config file: opensnoop with its const volatile filter (targ_failed) set by rodata", () => {
      const dir = testTempDir("bpfhook-sc-config-");
      const file = path.join(dir, "there.txt");
      const missing = path.join(dir, "missing.txt");
      writeFileSync(file, "x\n");
      copyFileSync(compileFixture("syscall/opensnoop.bpf.c"), path.join(dir, "opensnoop.bpf.o"));
      const config = path.join(dir, "opensnoop.yaml");
      writeFileSync(
        config,
        ['plugins: ["@bpfhook/plugin-syscall-trace"]', "objects:", "  - path: opensnoop.bpf.o", "    rodata: { targ_failed: true }", ""].join("\n"),
      );
      const r = spawnSync(process.execPath, [cli, "run", "-j", "-c", config, "--", "sh", "-c", `cat ${file} >/dev/null; cat ${missing} 2>/dev/null; true`], {
        encoding: "utf8",
        timeout: 100000,
      });
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { type: string; data: any });
      const names = opened(lines).map((e) => [e.fname, e.ret]);
      assert.ok(names.some(([f, ret]) => f === missing && ret === -2), JSON.stringify(names));
      assert.ok(!names.some(([f]) => f === file), `a successful open was reported although targ_failed is set: ${JSON.stringify(names)}`);
      assert.ok(opened(lines).every((e) => e.ret < 0), "targ_failed: only failed opens");
    });

    it("sigsnoop on a shell's kill: the signal, its target and the result", () => {
      const r = runJ(compileFixture("syscall/sigsnoop.bpf.c"), ["sh", "-c", "kill -0 $$; kill -0 2147483646 2>/dev/null; true"]);
      assert.equal(r.r.status, 0, r.r.stderr);
      const ev = r.lines.filter((l) => l.type === "event").map((l) => l.data.value);
      assert.equal(ev.length, 2, JSON.stringify(ev));
      assert.deepEqual([ev[0].tpid === ev[0].pid, ev[0].sig, ev[0].ret, ev[0].comm], [true, 0, 0, "sh"]);
      assert.deepEqual([ev[1].tpid, ev[1].ret], [2147483646, -3], "ESRCH");
    });

    it("mountsnoop: mount and umount in a new mount namespace (root)", function () {
      if (process.getuid?.() !== 0) {
        console.log("      skipped: mounting needs root (CAP_SYS_ADMIN)");
        this.skip();
      }
      const dir = testTempDir("bpfhook-sc-mnt-");
      const probe = spawnSync("unshare", ["-m", "true"]);
      if (probe.status !== 0) {
        console.log(`      skipped: unshare -m is refused here (${probe.stderr?.toString().trim()})`);
        this.skip();
      }
      const r = runJ(compileFixture("syscall/mountsnoop.bpf.c"), ["unshare", "-m", "sh", "-c", `mount -t tmpfs bhnone ${dir} && umount ${dir}`]);
      assert.equal(r.r.status, 0, r.r.stderr);
      const ev = r.lines.filter((l) => l.type === "event").map((l) => l.data.value);
      const mount = ev.find((e) => e.op === 0 && e.dest === dir);
      const umount = ev.find((e) => e.op === 1 && e.dest === dir);
      assert.deepEqual([mount?.src, mount?.fs, mount?.ret], ["bhnone", "tmpfs", 0], JSON.stringify(ev));
      assert.equal(umount?.ret, 0, JSON.stringify(ev));
    });

    it("the opens of a shell script and a Node script match strace -f's, call for call", function () {
      if (!existsSync("/usr/bin/strace")) {
        console.log("      skipped: /usr/bin/strace is not installed (scripts/setup.sh installs it)");
        this.skip();
      }
      const dir = testTempDir("bpfhook-sc-strace-");
      const sh = path.join(dir, "s.sh");
      writeFileSync(sh, `#!/bin/sh\nfor i in 1 2 3; do cat ${sh} > /dev/null; done\nls ${dir} > /dev/null\n`, { mode: 0o755 });
      const js = path.join(dir, "s.js");
      writeFileSync(js, `const fs = require("fs"); for (let i = 0; i < 20; i++) fs.closeSync(fs.openSync(${JSON.stringify(sh)}, "r"));\n`);
      const object = compileFixture("syscall/opensnoop.bpf.c");
      // The files the command itself opens. The dynamic loader's opens of
      // libraries come before the agent exists in each new image (strace
      // sees them, no preloaded agent can), and the agent's own control
      // thread opens files too: both are left out of the comparison.
      const mine = (p: string) => p === sh || p === js || p === dir || p === "/dev/null";
      for (const cmd of [[sh], [process.execPath, js]]) {
        const ours = runJ(object, cmd);
        assert.equal(ours.r.status, 0, ours.r.stderr);
        const ourOpens = opened(ours.lines).filter((e) => mine(e.fname)).map((e) => e.fname as string).sort();
        const out = path.join(dir, "strace.out");
        const strace = spawnSync("/usr/bin/strace", ["-f", "-qq", "-e", "trace=open,openat", "-o", out, ...cmd], { encoding: "utf8" });
        if (strace.status !== 0) {
          console.log(`      strace could not trace here (${strace.stderr.trim().split("\n").pop()}): compared with nothing`);
          continue;
        }
        const text = readFileSync(out, "utf8");
        const theirOpens = [...text.matchAll(/\bopen(?:at)?\((?:AT_FDCWD|-?\d+), "([^"]*)"|\bopen\("([^"]*)"/g)]
          .map((m) => (m[1] ?? m[2])!)
          .filter(mine)
          .sort();
        assert.ok(theirOpens.length > 0, text.slice(0, 2000));
        assert.deepEqual(ourOpens, theirOpens, `${cmd.join(" ")}: opens traced by bpfhook vs strace -f`);
        // strace -c's total, for the record: ours is lower by the loader's opens before the agent.
        const c = spawnSync("/usr/bin/strace", ["-f", "-c", "-e", "trace=open,openat", "-o", out, ...cmd], { encoding: "utf8" });
        const total = c.status === 0 ? readFileSync(out, "utf8").match(/\s(\d+)\s+(?:\d+\s+)?total/)?.[1] : undefined;
        const counts = ours.lines.find((l) => l.type === "map" && l.data.name === "counts");
        const exits = counts?.data.entries.find((e: { key: number }) => e.key === 1)?.value;
        console.log(`      ${path.basename(cmd[cmd.length - 1]!)}: ${ourOpens.length} of its own opens in both; all opens: bpfhook ${exits}, strace -c ${total}`);
      }
    });
  });
});

/** The main thread's name as the kernel reports it (bpf_get_current_comm). */
function readFileComm(): string {
  return readFileSync(`/proc/self/task/${process.pid}/comm`, "utf8").trim();
}

/** Why programs cannot run on real system calls here, or undefined if they can. */
let transformerProbe: string | null | undefined;
function transformerReason(): string | undefined {
  if (transformerProbe !== undefined) return transformerProbe ?? undefined;
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      `const { Runtime } = require("@bpfhook/core");
       (async () => {
         const rt = await Runtime.create({ plugins: ["${PLUGIN}"], resolveFrom: ${JSON.stringify(repoRoot)} });
         const obj = rt.load(${JSON.stringify(compileFixture("syscall/bench.bpf.c"))});
         try { await obj.program("empty").attach(); console.log("ok"); } catch (e) { console.log("no: " + e.message); }
         rt.close();
       })();`,
    ],
    { encoding: "utf8", cwd: repoRoot, timeout: 30000 },
  );
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  transformerProbe = line === "ok" ? null : `the text transformer cannot run here: ${line || r.stderr.trim() || `exit ${r.status}`}`;
  return transformerProbe ?? undefined;
}
