/**
 * What the raw addon exports. Each native binding file (core/native/addon/*.cpp)
 * has its section here; the friendly API sits on top in the component folders.
 */
export interface NativeAddon {
  setErrorClass(cls: Function): void;

  // ---- vm_binding.cpp ----
  Vm: new () => NativeVm;
  /** Names of the natively implemented helpers registerHelper accepts. */
  vmHelperNames(): string[];

  // ---- runtime_binding.cpp ----
  NativeRuntime: new () => NativeRuntime;
}

/** A loaded, compiled program (runtime_binding.cpp). */
export interface NativeProgram {
  /** Runs the program on `ctx` (by pointer); r0 or a VM_FAULT error. */
  run(ctx?: Uint8Array): bigint;
  release(): void;
  readonly jitSize: number;
}

export interface NativeProgramOptions {
  name: string;
  insns: Uint8Array;
  checked?: boolean;
  budget?: number;
  interpreter?: boolean;
  /** Native map objects, indexed as lddw map-index forms refer to them. */
  maps?: unknown[];
}

/** bh_runtime (runtime_binding.cpp): plugins, programs, links. */
export interface NativeRuntime {
  openPlugin(path: string, name: string): number;
  loadProgram(opts: NativeProgramOptions): NativeProgram;
  attach(plugin: number, program: NativeProgram, type: number, privateData: Uint8Array, cookie?: bigint): number;
  /** 0, or a negative errno (-2 for an unknown link). */
  detach(link: number): number;
  callPlugin(plugin: number, name: string, input: Uint8Array, outSize: number): { rc: number; out: Buffer };
  linkCount(): number;
  close(): void;
}

/**
 * One bh_vm (vm_binding.cpp). Calls follow the C API's order: registerHelper,
 * setChecked and setBudget before load; exec and compile after. Errors are
 * BpfhookError: VM_LOAD (detail.pc), VM_COMPILE, VM_FAULT (detail.pc,
 * detail.fault, detail.address), BAD_ARGUMENT, NOT_FOUND.
 */
export interface NativeVm {
  registerHelper(id: number, name: string): void;
  setChecked(checked: boolean): void;
  setBudget(maxInsts: bigint): void;
  load(code: Uint8Array): void;
  /** r0 as a u64. `ctx` is passed by pointer: the program's stores land in it. */
  exec(ctx: Uint8Array | null, opts: { jit: boolean }): bigint;
  /** Compiles once; returns the code size in bytes. */
  compile(): number;
  jitSize(): number;
  close(): void;
}
