import { strict as assert } from "node:assert";
import path from "node:path";
import { BpfhookError, codec, Runtime, type LoadedObject, type ProgArray } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const ENOENT = -2n;
const E2BIG = -7n;
const ELOOP = -40n;
const CHAIN_SLOT = 7;
const MAX_TAIL_CALL_CNT = 33;

/** struct call of tailcall.bpf.c. */
const call = codec.struct({ index: codec.u32, depth: codec.u32, trail: codec.u64, rc: codec.i64 });
type Call = ReturnType<typeof call.decode>;

function ctx(index: number): Buffer {
  const b = Buffer.alloc(call.size);
  call.encode({ index, depth: 0, trail: 0n, rc: 0n }, b, 0);
  return b;
}

function fire(rt: Runtime, source: string, index = 0): { result: bigint; c: Call } {
  const r = trigger(rt, source, ctx(index));
  assert.equal(r.count, 1, `one program attached to '${source}'`);
  return { result: r.result, c: call.decode(r.context, 0) };
}

describe("52 runtime: tail calls through program arrays", function () {
  before(function () {
    skipWithoutClang(this);
  });

  for (const backend of ["jit", "interpreter"] as const) {
    describe(backend, () => {
      let rt: Runtime;
      let obj: LoadedObject;
      let jmp: ProgArray;
      beforeEach(async () => {
        rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, backend });
        obj = rt.load(compileFixture("runtime/tailcall.bpf.c"));
        jmp = obj.map<ProgArray>("jmp");
      });
      afterEach(() => rt.close());

      it("creates the program array outside the shared region", () => {
        assert.equal(jmp.typeName, "prog_array");
        assert.equal(jmp.maxEntries, 8);
        assert.equal(obj.objectMap("jmp").regionName, "");
        assert.ok(!rt.sharedRegion().maps().some((d) => d.type === 3), "no program array in the region");
        assert.deepEqual([...jmp.keys()], []);
      });

      it("dispatches by index: the target runs on the same context and its r0 ends the caller", async () => {
        await obj.program("dispatch").attach();
        jmp.set(0, obj.program("handler_a")).set(1, obj.program("handler_b"));
        assert.equal(jmp.get(0), "handler_a");
        assert.equal(jmp.get(1), "handler_b");
        assert.deepEqual([...jmp.keys()], [0, 1]);

        const a = fire(rt, "dispatch", 0);
        assert.equal(a.result, 1n, "handler_a's r0");
        assert.equal(a.c.trail, 91n, "dispatch, then handler_a, on one context");
        assert.equal(a.c.rc, 0n, "the caller never saw bpf_tail_call return");
        const b = fire(rt, "dispatch", 1);
        assert.equal(b.result, 2n);
        assert.equal(b.c.trail, 92n);
      });

      it("falls through an empty slot or an index out of range", async () => {
        await obj.program("dispatch").attach();
        jmp.set(0, obj.program("handler_a"));
        const empty = fire(rt, "dispatch", 2);
        assert.equal(empty.result, 1000n, "the caller went on");
        assert.equal(empty.c.rc, ENOENT);
        assert.equal(empty.c.trail, 9n, "nothing else ran");
        const outside = fire(rt, "dispatch", 8);
        assert.equal(outside.result, 1000n);
        assert.equal(outside.c.rc, E2BIG);
      });

      it("stops a chain of tail calls after 33", async () => {
        await obj.program("chain").attach();
        jmp.set(CHAIN_SLOT, obj.program("chain"));
        const r = fire(rt, "chain");
        assert.equal(r.c.depth, 1 + MAX_TAIL_CALL_CNT, "1 run + 33 tail calls");
        assert.equal(r.result, BigInt(1 + MAX_TAIL_CALL_CNT), "the innermost run's r0 ends every caller");
        assert.equal(r.c.rc, ELOOP, "the refused tail call returned -ELOOP");
        // Each run starts a new chain.
        assert.equal(fire(rt, "chain").c.depth, 1 + MAX_TAIL_CALL_CNT);
      });

      it("sees slot changes at run time", async () => {
        await obj.program("dispatch").attach();
        jmp.set(0, obj.program("handler_a"));
        assert.equal(fire(rt, "dispatch", 0).result, 1n);
        jmp.set(0, obj.program("handler_b"));
        assert.equal(jmp.get(0), "handler_b");
        assert.equal(fire(rt, "dispatch", 0).result, 2n, "replaced");
        assert.equal(jmp.delete(0), true);
        assert.equal(jmp.delete(0), false, "already empty");
        assert.equal(jmp.get(0), undefined);
        const r = fire(rt, "dispatch", 0);
        assert.equal(r.result, 1000n, "deleted: falls through");
        assert.equal(r.c.rc, ENOENT);
        jmp.set(0, obj.program("handler_a"));
        assert.equal(fire(rt, "dispatch", 0).result, 1n, "filled again");
      });

      it("runs tail calls from Program.run too", () => {
        jmp.set(3, obj.program("handler_b"));
        const c = ctx(3);
        assert.equal(obj.program("dispatch").run(c), 2n);
        assert.equal(call.decode(c, 0).trail, 92n);
      });
    });
  }

  describe("checks", () => {
    let rt: Runtime;
    afterEach(() => rt?.close());

    it("refuses bad slots and programs of another runtime", async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
      const obj = rt.load(compileFixture("runtime/tailcall.bpf.c"));
      const jmp = obj.map<ProgArray>("jmp");
      assert.throws(() => jmp.set(8, obj.program("handler_a")), /map 'jmp': update: E2BIG \(index out of range, 8 slots\)/);
      assert.throws(() => jmp.set(-1, obj.program("handler_a")), /index must be a non-negative integer/);
      assert.throws(() => jmp.get(9), /E2BIG/);
      const other = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
      try {
        const foreign = other.load(compileFixture("runtime/tailcall.bpf.c"));
        assert.throws(
          () => jmp.set(0, foreign.program("handler_a")),
          (err: unknown) =>
            err instanceof BpfhookError && /prog 'handler_a' was loaded by another runtime/.test(err.message),
        );
      } finally {
        other.close();
      }
      rt.close();
      assert.throws(() => jmp.get(0), /closed/);
    });

    it("strict mode refuses the target that writes past its context, naming the store", async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
      assert.throws(
        () => rt.load(compileFixture("runtime/tailcall_bad.bpf.c")),
        (err: unknown) => err instanceof BpfhookError && err.code === "VERIFIER_REFUSED" && /prog 'bad': pc \d+: .*outside the 4096-byte context/.test(err.message),
      );
    });

    it("keeps programs in slots alive while the runtime runs them", async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
      const a = rt.load(compileFixture("runtime/tailcall.bpf.c"));
      const b = rt.load(compileFixture("runtime/tailcall.bpf.c"));
      // b's handler in a's array: b's own handle is dropped, the slot keeps it.
      a.map<ProgArray>("jmp").set(0, b.program("handler_b"));
      b.program("handler_b").native.release();
      global.gc?.();
      assert.equal(a.map<ProgArray>("jmp").get(0), "handler_b");
      const c = ctx(0);
      assert.equal(a.program("dispatch").run(c), 2n);
    });

    it("gives the target the caller's context length and reports its fault as the run's (checked mode)", async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, checked: true });
      const obj = rt.load(compileFixture("runtime/tailcall.bpf.c"));
      const bad = rt.load(compileFixture("runtime/tailcall_bad.bpf.c"));
      const jmp = obj.map<ProgArray>("jmp");
      jmp.set(0, obj.program("handler_a")).set(1, bad.program("bad"));
      // handler_a writes the context: checked mode admits it only if it got the length.
      const c = ctx(0);
      assert.equal(obj.program("dispatch").run(c), 1n);
      assert.equal(call.decode(c, 0).trail, 91n);
      assert.throws(
        () => obj.program("dispatch").run(ctx(1)),
        (err: unknown) =>
          err instanceof BpfhookError &&
          err.code === "VM_FAULT" &&
          /tail call to 'bad': pc \d+: store of 8 bytes/.test(err.message),
      );
      // The fault did not stick to the thread: the next run is clean.
      assert.equal(obj.program("dispatch").run(ctx(0)), 1n);
    });
  });
});
