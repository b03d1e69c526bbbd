/**
 * The friendly face of the native VM: load a program once with its options,
 * then run it as often as needed in the interpreter or the JIT.
 *
 *   const vm = loadProgram(assemble("mov %r0, 7\nexit"), { budget: 10_000 });
 *   vm.exec(null, "jit") // 7n
 */
import { encodeInsns, type Insn } from "../asm/insn.js";
import { BpfhookError } from "../errors.js";
import type { NativeVm } from "../native/addon-types.js";
import { native } from "../native/binding.js";
import { checkBackend, checkCode, checkCtx, checkVmOptions, type VmBackend, type VmOptions } from "./options.js";

/** The helpers the addon implements natively (registerable by name). */
export function nativeHelperNames(): string[] {
  return native().vmHelperNames();
}

export class EbpfVm {
  readonly name: string | undefined;
  /** Instruction slots in the program (lddw counts two). */
  readonly slots: number;
  #vm: NativeVm | undefined;

  private constructor(vm: NativeVm, slots: number, name: string | undefined) {
    this.#vm = vm;
    this.slots = slots;
    this.name = name;
  }

  /** Creates a VM, registers helpers, sets modes and loads (validates) `code`. */
  static load(code: Uint8Array | readonly Insn[], opts?: VmOptions): EbpfVm {
    const bytes = Array.isArray(code) ? encodeInsns(code as readonly Insn[]) : (code as Uint8Array);
    checkCode("loadProgram", bytes);
    const addon = native();
    const o = checkVmOptions("loadProgram", opts, addon.vmHelperNames());
    const vm = new addon.Vm();
    const ebpf = new EbpfVm(vm, bytes.length / 8, o.name);
    try {
      for (const [id, helper] of o.helpers) vm.registerHelper(id, helper);
      vm.setChecked(o.checked);
      vm.setBudget(o.budget);
      ebpf.#inContext(() => vm.load(bytes));
    } catch (e) {
      vm.close(); // free it now; a failed load leaves nothing to keep
      throw e;
    }
    return ebpf;
  }

  /**
   * Runs the program with r1 = ctx (its bytes, by pointer: stores land in
   * it), r2 = ctx.length, and returns r0 as a u64. Faults throw VM_FAULT.
   */
  exec(ctx: Uint8Array | null = null, backend: VmBackend = "interpreter"): bigint {
    const c = checkCtx("exec", ctx);
    const jit = checkBackend("exec", backend) === "jit";
    const vm = this.#open("exec");
    return this.#inContext(() => vm.exec(c, { jit }));
  }

  /** JIT-compiles now (exec with "jit" does it on first use); returns the code size. */
  compile(): number {
    const vm = this.#open("compile");
    return this.#inContext(() => vm.compile());
  }

  /** Bytes of x86-64 code, 0 before compile. */
  get jitSize(): number {
    return this.#vm?.jitSize() ?? 0;
  }

  /** Frees the native VM now rather than at garbage collection. */
  close(): void {
    this.#vm?.close();
    this.#vm = undefined;
  }

  #open(fn: string): NativeVm {
    if (!this.#vm) throw new BpfhookError("BAD_ARGUMENT", `${fn}: the VM is closed`);
    return this.#vm;
  }

  /** Prefixes native errors with the program's name, keeping code and detail. */
  #inContext<T>(run: () => T): T {
    try {
      return run();
    } catch (e) {
      if (this.name === undefined || !(e instanceof BpfhookError)) throw e;
      throw new BpfhookError(e.code, `prog '${this.name}': ${e.message}`, { ...e.detail });
    }
  }
}

export function loadProgram(code: Uint8Array | readonly Insn[], opts?: VmOptions): EbpfVm {
  return EbpfVm.load(code, opts);
}
