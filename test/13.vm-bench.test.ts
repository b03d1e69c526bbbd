import { strict as assert } from "node:assert";
import { assembleBytes } from "@bpfhook/core";
import type { NativeVm } from "@bpfhook/core/dist/native/addon-types.js";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { expectError } from "./support/expect-error.js";
import { testingAddon, type Backend } from "./support/testing-addon.js";

// bench/vm/programs/helper.bpf.c by hand: acc = seed; for i < n: acc = add_one(acc ^ i).
const HELPER_LOOP = `
    ldxdw %r6, [%r1+0]
    ldxdw %r0, [%r1+8]
    mov %r7, 0
loop:
    jge %r7, %r6, done
    mov %r1, %r0
    xor %r1, %r7
    call 1000
    add %r7, 1
    ja loop
done:
    exit
`;

/** struct loop_ctx { u64 n; u64 seed; } */
function loopCtx(n: bigint, seed: bigint): Uint8Array {
  const ctx = new Uint8Array(16);
  const view = new DataView(ctx.buffer);
  view.setBigUint64(0, n, true);
  view.setBigUint64(8, seed, true);
  return ctx;
}

describe("13 vm benchmark entry points (testing addon, bench_binding.cpp)", () => {
  const bench = () => testingAddon();
  const vms: NativeVm[] = [];
  const loaded = (source: string): NativeVm => {
    const vm = new (native().Vm)();
    vms.push(vm);
    vm.registerHelper(1000, "add_one");
    vm.load(assembleBytes(source));
    return vm;
  };
  after(() => vms.forEach((vm) => vm.close()));

  it("lives in the testing addon only: the production addon exports no stress or benchmark entry points", () => {
    const core = native() as unknown as Record<string, unknown>;
    for (const name of ["vmBenchRun", "vmBenchNative", "vmBenchInfo", "mapStress", "mapBench"]) {
      assert.equal(core[name], undefined, `bpfhook_core.node exports ${name}`);
    }
  });

  it("Vm.nativeAddresses gives the loaded bh_vm, the core's bh_vm_exec and the JIT code once compiled", () => {
    const unloaded = new (native().Vm)();
    vms.push(unloaded);
    assert.equal(unloaded.nativeAddresses().vm, 0n);
    const vm = loaded("mov %r0, 7\nexit");
    const fresh = vm.nativeAddresses();
    assert.notEqual(fresh.vm, 0n);
    assert.notEqual(fresh.exec, 0n);
    assert.equal(fresh.jit, 0n, "not compiled yet: the accessor must not compile");
    vm.compile();
    const compiled = vm.nativeAddresses();
    assert.equal(compiled.vm, fresh.vm);
    assert.equal(compiled.exec, fresh.exec);
    assert.notEqual(compiled.jit, 0n);
    vm.close();
    assert.equal(vm.nativeAddresses().vm, 0n);
  });

  it("lists the gcc -O2 workloads with their context sizes", () => {
    const info = bench().vmBenchInfo();
    assert.match(info.compiler, /-O2$/);
    assert.deepEqual(
      info.workloads.map((w) => w.name),
      ["arith", "memory", "mix", "helper"],
    );
    assert.ok(info.workloads.every((w) => w.ctxSize >= 16));
  });

  it("times the JIT, the interpreter and the gcc twin, which agree on r0", () => {
    const vm = loaded(HELPER_LOOP);
    const ctx = loopCtx(1000n, 0x1234n);
    let expected = 0x1234n;
    for (let i = 0n; i < 1000n; i++) expected = (expected ^ i) + 1n;
    for (const backend of ["jit", "interpreter"] as const) {
      const t = bench().vmBenchRun(vm, backend, ctx, 3);
      assert.equal(t.r0, expected, backend);
      assert.ok(t.ns > 0, backend);
    }
    const gcc = bench().vmBenchNative("helper", ctx, 3);
    assert.equal(gcc.r0, expected);
    assert.ok(gcc.ns > 0);
  });

  it("refuses what is not a loaded Vm, a bad backend, bad runs, unknown workloads and short contexts", async () => {
    const ctx = loopCtx(1n, 1n);
    const unloaded = new (native().Vm)();
    vms.push(unloaded);
    await expectError(() => bench().vmBenchRun({} as NativeVm, "jit", ctx, 1), "BAD_ARGUMENT", /loaded program/);
    await expectError(() => bench().vmBenchRun(unloaded, "jit", ctx, 1), "BAD_ARGUMENT", /loaded program/);
    const vm = loaded("mov %r0, 1\nexit");
    await expectError(() => bench().vmBenchRun(vm, "gcc" as Backend, ctx, 1), "BAD_ARGUMENT", /backend/);
    await expectError(() => bench().vmBenchRun(vm, "jit", ctx, 0), "BAD_ARGUMENT", /runs/);
    await expectError(() => bench().vmBenchNative("nope", ctx, 1), "NOT_FOUND");
    await expectError(() => bench().vmBenchNative("memory", ctx, 1), "BAD_ARGUMENT", /at least/);
    vm.close();
    await expectError(() => bench().vmBenchRun(vm, "jit", ctx, 1), "BAD_ARGUMENT", /loaded program/);
  });
});
