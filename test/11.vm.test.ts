import { strict as assert } from "node:assert";
import { assembleBytes, BpfhookError, loadProgram, nativeHelperNames, VM_BACKENDS, type VmOptions } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";

/** Asserts that `run` throws a BpfhookError with `code`, and returns it. */
function expectError(run: () => unknown, code: string): BpfhookError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

const load = (source: string, opts?: VmOptions) => loadProgram(assembleBytes(source), opts);

describe("11 vm binding", () => {
  describe("load errors carry the pc", () => {
    const cases: [what: string, source: string, pc: number][] = [
      ["unknown opcode", "mov %r0, 0\n.raw 0x00000000000000ff\nexit", 1],
      ["write to r10", "mov %r0, 0\nmov %r1, 1\nmov %r10, 1\nexit", 2],
      ["jump out of range", "ja +5\nexit", 0],
      ["division by an immediate zero", "mov %r0, 1\ndiv %r0, 0\nexit", 1],
      ["call to an unregistered helper", "mov %r0, 0\ncall 99\nexit", 1],
      ["bad source register", "lddw %r0, 1\nmov %r0, %r12\nexit", 2],
    ];
    for (const [what, source, pc] of cases) {
      it(`${what} at pc ${pc}`, () => {
        const e = expectError(() => load(source), "VM_LOAD");
        assert.match(e.message, new RegExp(`\\bpc ${pc}\\b`));
        assert.equal(e.detail.pc, pc);
      });
    }

    it("starts messages with the program's name when it has one", () => {
      const e = expectError(() => load("ja +5\nexit", { name: "broken" }), "VM_LOAD");
      assert.match(e.message, /^prog 'broken': pc 0/);
      assert.equal(e.detail.pc, 0);
    });
  });

  for (const backend of VM_BACKENDS) {
    describe(`runs in the ${backend}`, () => {
      it("returns r0 as a u64 bigint", () => {
        assert.equal(load("mov %r0, -1\nexit").exec(null, backend), 0xffffffffffffffffn);
        assert.equal(load("lddw %r0, 0x1122334455667788\nexit").exec(null, backend), 0x1122334455667788n);
      });

      it("passes ctx by pointer in r1 with its length in r2, and sees the program's stores", () => {
        const ctx = Buffer.from([1, 2, 3, 4]);
        const vm = load("ldxb %r0, [%r1+3]\nadd %r0, %r2\nstb [%r1+0], 0x7f\nexit");
        assert.equal(vm.exec(ctx, backend), 8n);
        assert.equal(ctx[0], 0x7f);
      });

      it("faults in checked mode on a bad pointer instead of crashing", () => {
        const vm = load("lddw %r1, 0x10\nldxdw %r0, [%r1+0]\nexit", { checked: true });
        const e = expectError(() => vm.exec(null, backend), "VM_FAULT");
        assert.equal(e.detail.fault, "out_of_bounds");
        assert.equal(e.detail.pc, 2);
        assert.equal(e.detail.address, 0x10n);
        assert.match(e.message, /pc 2/);
      });

      it("checks ctx bounds in checked mode: inside passes, one byte past faults", () => {
        const vm = load("ldxw %r0, [%r1+0]\nexit", { checked: true });
        assert.equal(vm.exec(Buffer.from([1, 0, 0, 0]), backend), 1n);
        const e = expectError(() => vm.exec(Buffer.from([1, 0, 0]), backend), "VM_FAULT");
        assert.equal(e.detail.fault, "out_of_bounds");
        assert.equal(e.detail.pc, 0);
      });

      it("stops an infinite loop with the budget", () => {
        const vm = load("mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit", { budget: 10_000 });
        const e = expectError(() => vm.exec(null, backend), "VM_FAULT");
        assert.equal(e.detail.fault, "budget");
      });

      it("lets a loop within the budget finish", () => {
        const vm = load("mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 100, loop\nexit", { budget: 10_000 });
        assert.equal(vm.exec(null, backend), 100n);
      });

      it("calls native helpers with r1-r5 in order", () => {
        const vm = load("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 1\nexit", {
          helpers: { 1: "gather_bytes" },
        });
        assert.equal(vm.exec(null, backend), 0x0102030405n);
      });

      it("unwinds on helper 5 with a zero argument and continues otherwise", () => {
        const src = (r1: number) => `mov %r1, ${r1}\ncall 5\nmov %r0, 2\nexit`;
        assert.equal(load(src(0), { helpers: { 5: "unwind" } }).exec(null, backend), 0n);
        assert.equal(load(src(7), { helpers: { 5: "unwind" } }).exec(null, backend), 2n);
      });

      it("ends the program from a helper with its value (exit_with)", () => {
        const vm = load("mov %r1, 9\ncall 7\nmov %r0, 1\nexit", { helpers: { 7: "exit_with" } });
        assert.equal(vm.exec(null, backend), 9n);
      });

      it("lets helpers write the context (memfrob)", () => {
        const ctx = Buffer.from("abc");
        const vm = load("call 3\nexit", { helpers: { 3: "memfrob" } });
        assert.equal(vm.exec(ctx, backend), 3n);
        assert.deepEqual([...ctx], [..."abc"].map((c) => c.charCodeAt(0) ^ 42));
      });

      it("checks helper arguments in checked mode: memfrob past the context faults, inside it runs", () => {
        const vm = load("call 3\nexit", { helpers: { 3: "memfrob" }, checked: true });
        const ctx = Buffer.from("abc");
        assert.equal(vm.exec(ctx, backend), 3n);
        const e = expectError(
          () => load("add %r2, 1\ncall 3\nexit", { helpers: { 3: "memfrob" }, checked: true }).exec(ctx, backend),
          "VM_FAULT",
        );
        assert.equal(e.detail.fault, "helper_arg");
        assert.equal(e.detail.pc, 1);
        assert.match(e.message, /pc 1: memfrob: arg 1 \(buf\): 4 bytes at 0x[0-9a-f]+ outside writable stack, context/);
      });

      it("calls a helper through a register (callx)", () => {
        const vm = load("mov %r1, 1\nmov %r2, 5\ncall %r2\nexit", { helpers: { 5: "unwind" } });
        assert.equal(vm.exec(null, backend), 1n);
      });

      it("faults on callx to an unregistered helper id", () => {
        const vm = load("mov %r2, 6\ncall %r2\nexit", { helpers: { 5: "unwind" } });
        const e = expectError(() => vm.exec(null, backend), "VM_FAULT");
        assert.equal(e.detail.fault, "bad_helper");
        assert.equal(e.detail.pc, 1);
      });
    });
  }

  describe("jit", () => {
    it("compiles once and reports its size", () => {
      const vm = load("mov %r0, 3\nexit");
      assert.equal(vm.jitSize, 0);
      const size = vm.compile();
      assert.ok(size > 0);
      assert.equal(vm.jitSize, size);
      assert.equal(vm.compile(), size);
      assert.equal(vm.exec(null, "jit"), 3n);
    });
  });

  describe("argument checks name the bad option", () => {
    const code = assembleBytes("mov %r0, 0\nexit");
    const cases: [what: string, run: () => unknown, message: RegExp][] = [
      ["negative budget", () => loadProgram(code, { budget: -1 }), /option 'budget'/],
      ["fractional budget", () => loadProgram(code, { budget: 1.5 }), /option 'budget'/],
      ["checked not boolean", () => loadProgram(code, { checked: "yes" as unknown as boolean }), /option 'checked'/],
      ["misspelt option", () => loadProgram(code, { chcked: true } as VmOptions), /unknown option 'chcked'/],
      ["unknown helper name", () => loadProgram(code, { helpers: { 5: "nope" } }), /option 'helpers\[5\]'.*unknown native helper "nope"/],
      ["helper id out of range", () => loadProgram(code, { helpers: { 70000: "unwind" } }), /option 'helpers': id '70000'/],
      ["code not a multiple of 8", () => loadProgram(code.subarray(0, 7)), /multiple of 8 bytes, got 7/],
      ["empty code", () => loadProgram(Buffer.alloc(0)), /non-empty/],
      ["unknown backend", () => loadProgram(code).exec(null, "wasm" as "jit"), /backend must be 'interpreter' or 'jit', got "wasm"/],
      ["ctx not bytes", () => loadProgram(code).exec("ctx" as unknown as Buffer), /ctx must be a Buffer/],
    ];
    for (const [what, run, message] of cases) {
      it(what, () => {
        const e = expectError(run, "BAD_ARGUMENT");
        assert.match(e.message, message);
      });
    }

    it("lists the native helpers", () => {
      assert.deepEqual(nativeHelperNames().sort(), ["add_one", "bpf_loop", "exit_with", "gather_bytes", "memfrob", "unwind"]);
    });
  });

  describe("life cycle", () => {
    it("refuses exec after close", () => {
      const vm = load("mov %r0, 0\nexit");
      vm.close();
      expectError(() => vm.exec(), "BAD_ARGUMENT");
    });

    it("refuses set-up calls after load and exec before load (native guard)", () => {
      const vm = new (native().Vm)();
      expectError(() => vm.exec(null, { jit: false }), "BAD_ARGUMENT");
      vm.load(assembleBytes("mov %r0, 0\nexit"));
      expectError(() => vm.registerHelper(5, "unwind"), "BAD_ARGUMENT");
      expectError(() => vm.setBudget(1n), "BAD_ARGUMENT");
      expectError(() => vm.load(assembleBytes("exit")), "BAD_ARGUMENT");
      vm.close();
    });

    it("rejects an unknown helper name natively too", () => {
      const vm = new (native().Vm)();
      expectError(() => vm.registerHelper(5, "nope"), "NOT_FOUND");
      vm.close();
    });
  });
});
