/**
 * Callbacks: bpf_loop (181) and bpf_for_each_map_elem (164) with clang-built
 * programs (the callback is `lddw rX, <func>`, src 4 after linking), in both
 * backends, fast and checked, with a shared instruction budget; and raw
 * bytecode the VM must refuse (bad callback references) or fault on. Raw
 * programs run in a child process (test/support/checked-case.ts): a VM bug
 * there must not take the suite down.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { assembleBytes, BpfhookError, codec, Runtime, type BpfMap, type LoadedObject, type PerCpuMap } from "@bpfhook/core";
import type { CheckedCase } from "./support/checked-case.js";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const child = path.join(__dirname, "support", "checked-case.js");
const EINVAL = -22n;
const E2BIG = -7n;
const MAX_LOOPS = 1 << 23;

/** struct args of callbacks.bpf.c. */
const args = codec.struct({
  n: codec.u32,
  stop: codec.u32,
  flags: codec.u64,
  ret: codec.i64,
  sum: codec.u64,
  keys: codec.u64,
  calls: codec.u64,
  found: codec.u64,
});
type Args = ReturnType<typeof args.decode>;

function run(obj: LoadedObject, prog: string, input: { n?: number; stop?: number; flags?: bigint } = {}): Args {
  const b = Buffer.alloc(args.size);
  args.encode({ n: input.n ?? 0, stop: input.stop ?? 0, flags: input.flags ?? 0n, ret: 0n, sum: 0n, keys: 0n, calls: 0n, found: 0n }, b, 0);
  const r0 = obj.program(prog).run(b);
  assert.equal(r0, 0n, `${prog} returned 0`);
  return args.decode(b, 0);
}

const MODES = [
  { backend: "jit", checked: false },
  { backend: "interpreter", checked: false },
  { backend: "jit", checked: true },
  { backend: "interpreter", checked: true },
] as const;

describe("36 callbacks: bpf_loop and bpf_for_each_map_elem", function () {
  before(function () {
    skipWithoutClang(this);
  });

  for (const mode of MODES) {
    describe(`${mode.backend}${mode.checked ? ", checked" : ""}`, () => {
      let rt: Runtime;
      let obj: LoadedObject;
      beforeEach(async () => {
        rt = await Runtime.create({ resolveFrom: repoRoot, backend: mode.backend, checked: mode.checked });
        obj = rt.load(compileFixture("runtime/callbacks.bpf.c"));
      });
      afterEach(() => rt.close());

      it("bpf_loop sums 0..n-1 and returns the number of iterations", () => {
        for (const n of [0, 1, 10, 1000]) {
          const a = run(obj, "loop_sum", { n });
          assert.equal(a.ret, BigInt(n), `n = ${n}`);
          assert.equal(a.calls, BigInt(n));
          assert.equal(a.sum, BigInt((n * (n - 1)) / 2));
        }
      });

      it("bpf_loop stops when the callback returns 1, counting that iteration", () => {
        const a = run(obj, "loop_sum", { n: 100, stop: 5 });
        assert.equal(a.ret, 5n);
        assert.equal(a.calls, 5n);
        assert.equal(a.sum, 0n + 1n + 2n + 3n + 4n);
      });

      it("bpf_loop nests: a callback's own bpf_loop reaches the program's frame through its ctx", () => {
        const n = 6;
        const a = run(obj, "loop_nested", { n });
        assert.equal(a.ret, BigInt(n));
        assert.equal(a.calls, BigInt(3 * n), "three inner iterations per outer one");
        // sum over i of (i + 1) * (0 + 1 + 2)
        assert.equal(a.sum, BigInt((3 * n * (n + 1)) / 2));
      });

      it("bpf_loop takes a NULL ctx; the callback uses maps", () => {
        const arr = obj.map<BpfMap<number, bigint>>("arr");
        arr.set(0, 0n);
        const a = run(obj, "loop_null_ctx", { n: 7 });
        assert.equal(a.ret, 7n);
        assert.equal(arr.get(0), 7n);
      });

      it("bpf_loop refuses flags other than 0 (-EINVAL) and more than 1 << 23 loops (-E2BIG)", () => {
        const bad = run(obj, "loop_sum", { n: 3, flags: 1n });
        assert.equal(bad.ret, EINVAL);
        assert.equal(bad.calls, 0n, "no callback ran");
        const big = run(obj, "loop_sum", { n: MAX_LOOPS + 1 });
        assert.equal(big.ret, E2BIG);
        assert.equal(big.calls, 0n);
      });

      it("bpf_for_each_map_elem visits every array element with its key and live value", () => {
        const arr = obj.map<BpfMap<number, bigint>>("arr");
        for (let i = 0; i < 8; i++) arr.set(i, BigInt(100 + i));
        const a = run(obj, "each_array");
        assert.equal(a.ret, 8n, "elements visited");
        assert.equal(a.calls, 8n);
        assert.equal(a.keys, 0n + 1n + 2n + 3n + 4n + 5n + 6n + 7n);
        assert.equal(a.sum, 800n + 28n);
        assert.equal(a.found, 8n, "bpf_map_lookup_elem(map, key) inside the callback gives the value pointer it was passed");
        const bumped = run(obj, "each_array_bump");
        assert.equal(bumped.ret, 8n);
        for (let i = 0; i < 8; i++) assert.equal(arr.get(i), BigInt(101 + i), "the callback wrote through the value pointer");
      });

      it("bpf_for_each_map_elem stops early on the array and returns the elements visited", () => {
        const a = run(obj, "each_array", { stop: 3 });
        assert.equal(a.ret, 3n);
        assert.equal(a.calls, 3n);
        assert.equal(a.keys, 0n + 1n + 2n);
      });

      it("bpf_for_each_map_elem sums a hash map, and stops early", () => {
        const hash = obj.map<BpfMap<number, bigint>>("hash");
        const empty = run(obj, "each_hash");
        assert.equal(empty.ret, 0n, "an empty map: no callback");
        assert.equal(empty.calls, 0n);
        let keys = 0n;
        let sum = 0n;
        for (let k = 1; k <= 40; k++) {
          hash.set(k * 7, BigInt(k * 1000));
          keys += BigInt(k * 7);
          sum += BigInt(k * 1000);
        }
        const a = run(obj, "each_hash");
        assert.equal(a.ret, 40n);
        assert.equal(a.calls, 40n);
        assert.equal(a.keys, keys);
        assert.equal(a.sum, sum);
        assert.equal(a.found, 40n, "the key and value given are the element's");
        const early = run(obj, "each_hash", { stop: 10 });
        assert.equal(early.ret, 10n);
        assert.equal(early.calls, 10n);
      });

      it("bpf_for_each_map_elem gives a per-CPU array's value of this CPU", () => {
        const pcpu = obj.map<PerCpuMap<number, bigint>>("pcpu");
        // Every CPU holds the same values, so the thread may run anywhere.
        for (let i = 0; i < 4; i++) pcpu.set(i, BigInt(10 + i));
        const a = run(obj, "each_pcpu");
        assert.equal(a.ret, 4n);
        assert.equal(a.sum, 46n);
        assert.equal(a.found, 4n);
      });

      it("bpf_for_each_map_elem refuses flags other than 0", () => {
        const a = run(obj, "each_array", { flags: 2n });
        assert.equal(a.ret, EINVAL);
        assert.equal(a.calls, 0n);
      });
    });
  }

  describe("instruction budget", () => {
    for (const backend of ["jit", "interpreter"] as const) {
      it(`${backend}: callbacks spend the run's budget`, async () => {
        const rt = await Runtime.create({ resolveFrom: repoRoot, backend, budget: 100000 });
        try {
          const obj = rt.load(compileFixture("runtime/callbacks.bpf.c"));
          // A few iterations fit...
          assert.equal(run(obj, "loop_sum", { n: 100 }).ret, 100n);
          // ...a million do not: the budget is the whole run's, callbacks included.
          const b = Buffer.alloc(args.size);
          args.encode({ n: 1 << 20, stop: 0, flags: 0n, ret: 0n, sum: 0n, keys: 0n, calls: 0n, found: 0n }, b, 0);
          assert.throws(
            () => obj.program("loop_sum").run(b),
            (e: unknown) => e instanceof BpfhookError && e.code === "VM_FAULT" && /instruction budget of 100000 exhausted/.test(e.message),
          );
          assert.ok(args.decode(b, 0).calls < 100000n, "the loop was cut short");
        } finally {
          rt.close();
        }
      });
    }
  });
});

// ---- raw bytecode --------------------------------------------------------------

interface ChildResult {
  ok: boolean;
  r0?: string;
  code?: string;
  message?: string;
}

function runChild(c: CheckedCase): ChildResult {
  const r = spawnSync(process.execPath, [child, JSON.stringify(c)], { cwd: repoRoot, encoding: "utf8", timeout: 30000 });
  assert.equal(r.signal, null, `the child was killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, `the child exited with ${r.status}: ${r.stderr}`);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as ChildResult;
}

/**
 * `source` assembled, with the lddw at instruction `at` (assembled as
 * `lddw %rX, 0`) turned into a function reference (src 4) to instruction
 * `target`, as libbpf links `r2 = callback ll`. Hex for CheckedCase.
 */
function withFuncRef(source: string, at: number, target: number): string {
  const bytes = Buffer.from(assembleBytes(source));
  assert.equal(bytes[at * 8], 0x18, `instruction ${at} is an lddw`);
  bytes[at * 8 + 1] = (bytes[at * 8 + 1]! & 0x0f) | (4 << 4);
  bytes.writeInt32LE(target - at - 1, at * 8 + 4);
  return bytes.toString("hex");
}

// bpf_loop(4, cb, ctx = r10 - 8 or as given, 0); then exit with its return.
// Instructions: 0-1 lddw r2, 2 r1, 3 r3, 4 r3 +=, 5 r4, 6 call, 7 exit, 8.. callback.
const LOOP = (cb: string, r3 = "mov %r3, %r10\nadd %r3, -8") =>
  `lddw %r2, 0\nmov %r1, 4\n${r3}\nmov %r4, 0\ncall 181\nexit\n${cb}`;
const CB_AT = 8;

describe("36 callbacks: raw bytecode", () => {
  for (const backend of ["jit", "interpreter"] as const) {
    describe(backend, () => {
      it("runs a callback from raw bytecode (src 4 resolved by the VM)", () => {
        const r = runChild({ source: "", hex: withFuncRef(LOOP("mov %r0, 0\nexit"), 0, CB_AT), backend, checked: true });
        assert.deepEqual(r, { ok: true, r0: "4" });
      });

      it("refuses a function reference out of range, to pc 0, or into an lddw", () => {
        for (const [target, why] of [
          [50, /lddw source 4 \(function\): callback at pc 50 is out of range/],
          [0, /callback at pc 0 is the entry function, which cannot be a callback/],
          [1, /pc 0: callback to pc 1 lands in the middle of the lddw at pc 0/],
        ] as const) {
          const r = runChild({ source: "", hex: withFuncRef(LOOP("mov %r0, 0\nexit"), 0, target), backend, checked: false });
          assert.equal(r.ok, false, `target ${target} refused`);
          assert.match(r.message ?? "", why);
        }
      });

      it("refuses a callback that the code before it falls into", () => {
        // The callback target is the `exit` of the main function's tail.
        const r = runChild({ source: "", hex: withFuncRef(LOOP("mov %r0, 0\nexit"), 0, 7), backend, checked: false });
        assert.equal(r.ok, false);
        assert.match(r.message ?? "", /falls through into the function at pc 7/);
      });

      it("fast mode: bpf_loop returns -EINVAL for a value that is not a callback", () => {
        const src = LOOP("mov %r0, 0\nexit").replace("lddw %r2, 0", "lddw %r2, 12345");
        // The callback is unreferenced here: it is dead code after exit.
        const r = runChild({ source: src, backend, checked: false });
        assert.deepEqual(r, { ok: true, r0: String(2n ** 64n - 22n) });
      });

      it("checked mode: a callback argument that is not a callback of this program faults", () => {
        const src = LOOP("mov %r0, 0\nexit").replace("lddw %r2, 0", "lddw %r2, 12345");
        const r = runChild({ source: src, backend, checked: true });
        assert.equal(r.ok, false);
        assert.match(r.message ?? "", /pc 6: bpf_loop: arg 2 \(callback_fn\): 0x3039 is not a callback of this program/);
      });

      it("checked mode: callback_ctx must be 0 or on the stack", () => {
        const r = runChild({ source: "", hex: withFuncRef(LOOP("mov %r0, 0\nexit", "mov %r3, %r1\nadd %r3, 0"), 0, CB_AT), backend, checked: true });
        assert.equal(r.ok, false);
        assert.match(r.message ?? "", /bpf_loop: arg 3 \(callback_ctx\): 0x[0-9a-f]+ is neither 0 nor in the current or a caller's stack frame/);
      });

      it("checked mode: a bad access inside a callback ends the run with the callback's pc", () => {
        const r = runChild({
          source: "",
          hex: withFuncRef(LOOP("mov %r1, 16\nldxdw %r0, [%r1]\nexit"), 0, CB_AT),
          backend,
          checked: true,
        });
        assert.equal(r.ok, false);
        assert.match(r.message ?? "", /pc 9: load of 8 bytes at 0x10 outside stack, context and regions/);
      });

      it("checked mode: the callback reads the caller's frame through ctx and gets a fresh zeroed frame", () => {
        // main: *(u64 *)(r10 - 8) = 5; bpf_loop(4, cb, r10 - 8, 0); r0 = *(r10 - 8)
        // cb: r0 = *(u64 *)(r10 - 8) (0: a fresh frame); *(u64 *)r2 += r1 + r0; r0 = 0
        const src = [
          "lddw %r2, 0", "stdw [%r10-8], 5", "mov %r1, 4", "mov %r3, %r10", "add %r3, -8", "mov %r4, 0", "call 181",
          "ldxdw %r0, [%r10-8]", "exit",
          "ldxdw %r0, [%r10-8]", "ldxdw %r3, [%r2]", "add %r3, %r1", "add %r3, %r0", "stxdw [%r2], %r3", "mov %r0, 0", "exit",
        ].join("\n");
        const r = runChild({ source: "", hex: withFuncRef(src, 0, 10), backend, checked: true });
        assert.deepEqual(r, { ok: true, r0: String(5 + 0 + 1 + 2 + 3) });
      });

      it("callbacks nested past the call depth limit fault", () => {
        // The callback calls bpf_loop with itself: depth grows until refused.
        const src = [
          "lddw %r2, 0", "mov %r1, 1", "mov %r3, 0", "mov %r4, 0", "call 181", "exit",
          "lddw %r2, 0", "mov %r1, 1", "mov %r3, 0", "mov %r4, 0", "call 181", "mov %r0, 0", "exit",
        ].join("\n");
        let hex = withFuncRef(src, 0, 7);
        const bytes = Buffer.from(hex, "hex");
        bytes[7 * 8 + 1] = (bytes[7 * 8 + 1]! & 0x0f) | (4 << 4);
        bytes.writeInt32LE(7 - 7 - 1, 7 * 8 + 4);
        hex = bytes.toString("hex");
        for (const checked of [false, true]) {
          const r = runChild({ source: "", hex, backend, checked });
          assert.equal(r.ok, false, `checked ${checked}`);
          assert.equal(r.code, "VM_FAULT");
          assert.match(r.message ?? "", /nest/);
        }
      });
    });
  }
});
