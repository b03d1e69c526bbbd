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

  // ---- agent_binding.cpp ----
  NativeAgentArea: NativeAgentAreaStatic;

  // ---- inject_binding.cpp ----
  /**
   * Loads a library into process `pid` with ptrace (bh_inject_dlopen).
   * Throws INJECT_FAILED (errno; detail.dlerror when the target's dlopen failed).
   */
  injectDlopen(
    pid: number,
    path: string,
    opts?: { timeoutMs?: number; noPathCheck?: boolean; callSymbol?: string; callArg?: string },
  ): NativeInjectResult;

  // ---- maps_binding.cpp ----
  // Data operations return 0 or a negative errno (TS builds the error with
  // the map's name); misuse of a handle or a short buffer throws BAD_ARGUMENT.
  possibleCpus(): number;
  /** name null: an unpredictable /bpfhook-<pid>-<random hex> name, retried on EEXIST. */
  regionCreate(name: string | null, size: number, maxMaps: number): NativeRegionHandle | number;
  regionOpen(name: string): NativeRegionHandle | number;
  regionClose(region: NativeRegionHandle): void;
  regionInfo(region: NativeRegionHandle): NativeRegionInfo;
  /** The directory, or -EPROTO if it is corrupt (count past capacity, storage outside the data area). */
  regionMaps(region: NativeRegionHandle): NativeMapDesc[] | number;
  /** The region checked-mode programs may access (SharedRegionBounds). */
  regionSetDefault(region: NativeRegionHandle | null): void;
  /** Unlinks regions whose creator died (bh_region_clean_stale): the names removed, or -errno. */
  regionCleanStale(keep?: string[]): { name: string; pid: number }[] | number;
  mapCreate(region: NativeRegionHandle, spec: NativeMapSpec): NativeMapHandle | number;
  mapOpen(region: NativeRegionHandle, nameOrIndex: string | number): NativeMapHandle | number;
  mapClose(map: NativeMapHandle): void;
  mapInfo(map: NativeMapHandle): NativeMapInfo;
  /** Lock outcomes counted in the map's shared header (bh_map_get_lock_stats). */
  mapLockStats(map: NativeMapHandle): { busy: number; takeovers: number };
  /** Live entries (hash family, LPM, queue/stack), max_entries for arrays, or -errno. */
  mapCount(map: NativeMapHandle): number;
  mapLookup(map: NativeMapHandle, key: Uint8Array | null, out: Uint8Array): number;
  mapUpdate(map: NativeMapHandle, key: Uint8Array | null, value: Uint8Array, flags: number): number;
  mapDelete(map: NativeMapHandle, key: Uint8Array | null): number;
  mapLookupAndDelete(map: NativeMapHandle, key: Uint8Array | null, out: Uint8Array): number;
  mapNextKey(map: NativeMapHandle, key: Uint8Array | null, out: Uint8Array): number;
  /** Address of entry 0's value + offset in an array map (lddw map-value forms), or 0n. */
  mapValueAddress(map: NativeMapHandle, offset: number): bigint;
  /** The program-side helpers, called as a program would (tests). */
  mapHelperLookup(map: NativeMapHandle, key: Uint8Array | null): Buffer | null;
  mapHelperWrite(map: NativeMapHandle, key: Uint8Array | null, offset: number, data: Uint8Array): boolean;
  mapHelperUpdate(map: NativeMapHandle, key: Uint8Array | null, value: Uint8Array, flags: number): number;
  mapHelperDelete(map: NativeMapHandle, key: Uint8Array | null): number;
  mapHelperPush(map: NativeMapHandle, value: Uint8Array, flags: number): number;
  mapHelperPop(map: NativeMapHandle, out: Uint8Array): number;
  mapHelperPeek(map: NativeMapHandle, out: Uint8Array): number;
  /** bpf_ringbuf_output. */
  ringbufOutput(map: NativeMapHandle, data: Uint8Array, flags: number): number;
  /** bpf_ringbuf_reserve, copy, then submit (or discard). */
  ringbufReserve(map: NativeMapHandle, data: Uint8Array, discard: boolean): number;
  /** Packed records {u32 size, u32 0, data padded to 8}, or -errno. */
  ringbufConsume(map: NativeMapHandle, maxRecords: number, maxBytes: number): Buffer | number;
  ringbufStats(map: NativeMapHandle): NativeRingbufStats | number;
  /** bpf_perf_event_output to ring `index` (-1: the calling CPU's). */
  perfOutput(map: NativeMapHandle, index: number, data: Uint8Array): number;
  /** Packed entries {u16 kind (1 sample, 2 lost), u16 0, u32 ring, u32 size, u32 0} + payload padded to 8. */
  perfConsume(map: NativeMapHandle, ring: number, maxRecords: number, maxBytes: number): Buffer | number;
  perfStats(map: NativeMapHandle): NativePerfRingStats[] | number;
  // (Stress runs and benchmark timing loops live in the testing addon,
  // core/native/testing, typed in test/support/testing-addon.ts.)
}

// ---- maps_binding.cpp types ----

declare const regionBrand: unique symbol;
declare const mapBrand: unique symbol;
/** A mapping of a shared region (a type-tagged Node-API external). */
export type NativeRegionHandle = { readonly [regionBrand]: true };
/** A process-local bh_map* (a type-tagged external); what runtime.loadProgram's `maps` takes. */
export type NativeMapHandle = { readonly [mapBrand]: true };

export interface NativeRegionInfo {
  name: string;
  size: number;
  used: number;
  generation: number;
  ncpus: number;
  layoutVersion: number;
  mapCount: number;
  maxMaps: number;
  owner: boolean;
  creatorPid: number;
  /** Directory entries holding live maps (mapCount counts freed ones too). */
  liveMaps: number;
  /** Bytes on the allocator's free list. */
  freeBytes: number;
  baseAddress: bigint;
}

export interface NativeMapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  mapExtra: bigint;
  /** Free the map's storage when this process's last handle on it closes. */
  freeOnClose?: boolean;
}

export interface NativeMapDesc {
  index: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  mapExtra: bigint;
  storageOffset: number;
  storageSize: number;
}

export interface NativeMapInfo extends NativeMapDesc {
  ncpus: number;
  /** Bytes a user-space lookup/update copies (per-CPU: round_up(valueSize, 8) * ncpus). */
  userValueSize: number;
  /** The bh_map* programs see. */
  address: bigint;
  /** Corrupt indices/lengths this handle met in the shared storage (bh_map_corruptions). */
  corruptions: number;
}

export interface NativeRingbufStats {
  size: number;
  producerPos: number;
  consumerPos: number;
  available: number;
  drops: number;
}

export interface NativePerfRingStats {
  ring: number;
  size: number;
  head: number;
  tail: number;
  lost: number;
}

/** A loaded, compiled program (runtime_binding.cpp). */
export interface NativeProgram {
  /** Runs the program on `ctx` (by pointer); r0 or a VM_FAULT error. */
  run(ctx?: Uint8Array): bigint;
  release(): void;
  readonly jitSize: number;
  /** Runs that faulted (checked mode, budget) and the last fault's message. */
  readonly faults: { count: number; last?: string };
}

export interface NativeProgramOptions {
  name: string;
  insns: Uint8Array;
  checked?: boolean;
  budget?: number;
  interpreter?: boolean;
  /** Native map objects or this runtime's program arrays, indexed as lddw map-index forms refer to them. */
  maps?: unknown[];
  /** The region holding the maps, which checked mode lets the program access (default: the default region). */
  region?: NativeRegionHandle;
}

/**
 * A program array (BPF_MAP_TYPE_PROG_ARRAY) owned by a NativeRuntime
 * (runtime_binding.cpp). Data calls return 0 or a negative errno; all throw
 * once the runtime is closed.
 */
export interface NativeProgArray {
  /** -E2BIG past maxEntries, -EXDEV for a program of another runtime. */
  update(index: number, program: NativeProgram): number;
  /** -ENOENT if the slot was empty. */
  delete(index: number): number;
  /** The slot's program name, or null. */
  lookup(index: number): string | null;
  readonly maxEntries: number;
}

/** bh_runtime (runtime_binding.cpp): plugins, programs, links. */
export interface NativeRuntime {
  /** `global`: load with RTLD_GLOBAL (the plugin said why it needs it); otherwise RTLD_LOCAL. */
  openPlugin(path: string, name: string, global: boolean): number;
  loadProgram(opts: NativeProgramOptions): NativeProgram;
  /** A program array for bpf_tail_call, alive until close(); pass it in loadProgram's `maps`. */
  createProgArray(maxEntries: number): NativeProgArray;
  attach(plugin: number, program: NativeProgram, type: number, privateData: Uint8Array, cookie?: bigint): number;
  /** 0, or a negative errno (-2 for an unknown link). */
  detach(link: number): number;
  /** `fault`: when rc < 0 and a program the call ran faulted, why ("prog 'p': pc 3: ..."). */
  callPlugin(
    plugin: number,
    name: string,
    input: Uint8Array,
    outSize: number,
  ): { rc: number; out: Buffer; fault?: string };
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
  /**
   * For the testing addon only (VM benchmark timing loops): the loaded bh_vm*
   * (0n if none or closed), this addon's bh_vm_exec, and the JIT code once
   * compile() ran (else 0n). Valid until close().
   */
  nativeAddresses(): NativeVmAddresses;
  close(): void;
}

/** Raw addresses of a Vm (NativeVm.nativeAddresses), valid until its close(). */
export interface NativeVmAddresses {
  vm: bigint;
  exec: bigint;
  jit: bigint;
}

/** What injectDlopen returns (bh_inject_result). */
export interface NativeInjectResult {
  /** The target's dlopen handle; 0n when reused. */
  handle: bigint;
  /** Lowest address the library is mapped at in the target (0n if not found). */
  base: bigint;
  /** The library (same inode) was already mapped: nothing was injected. */
  reused: boolean;
  /** dlopen came from __libc_dlopen_mode (glibc < 2.34). */
  usedLibcDlopenMode: boolean;
  /** callSymbol was called in the target; callRet is its int result. */
  called: boolean;
  callRet: number;
}

/** Options of NativeAgentArea.create (bh_agent_area_opts; 0/absent = defaults). */
export interface NativeAgentAreaOptions {
  /** Table capacities (defaults 32, 256, 64, 1024, 64). */
  capPlugins?: number;
  capProgs?: number;
  capProgArrays?: number;
  capAttach?: number;
  capProcs?: number;
  /** Keep probes attached when the controller dies (BH_AGENT_F_KEEP_ON_EXIT). */
  keepOnExit?: boolean;
  /** How long a starting agent waits for the first plan (0: 5000 ms). */
  startWaitMs?: number;
}

/** The static side of NativeAgentArea (agent_binding.cpp). */
export interface NativeAgentAreaStatic {
  /** Writes a new agent area into `region` (owner, layout 3, none yet: AGENT_ERROR EEXIST otherwise). */
  create(region: NativeRegionHandle, opts?: NativeAgentAreaOptions): NativeAgentArea;
  /** The area of an existing region, validated (AGENT_ERROR -ENOENT / -EPROTO). */
  open(region: NativeRegionHandle): NativeAgentArea;
}

/** BH_AGENT_ATTACH_* (attachResult().state) */
export const AgentAttachState = { UNUSED: 0, WANT: 1, REMOVED: 2 } as const;
/** BH_AGENT_RESULT_* (attachResult().result) */
export const AgentResult = { PENDING: 0, ATTACHED: 1, FAILED: 2, DETACHED: 3 } as const;
/** BH_AGENT_PROC_* (processes()[i].state) */
export const AgentProcState = { FREE: 0, STARTING: 1, RUNNING: 2, GONE: 3 } as const;

/**
 * The controller's side of the agent area (core/native/agent/include/bpfhook/agent_area.h).
 * Adders return the record index; errors are BpfhookError AGENT_ERROR (errno:
 * -ENOSPC table full, -EINVAL bad reference) or REGION_FULL (-ENOMEM).
 */
export interface NativeAgentArea {
  addPlugin(name: string, path: string, global: boolean): number;
  /** maps: region maps (by index + gen) or prog array records, in lddw map-index order. */
  addProgram(
    name: string,
    insns: Uint8Array,
    maps: (NativeMapHandle | { progArray: number })[],
    opts: { checked?: boolean; interpreter?: boolean; budget?: number },
  ): number;
  addProgArray(maxEntries: number): number;
  /** prog -1 empties the slot. */
  setProgArraySlot(array: number, slot: number, prog: number): void;
  addAttach(plugin: number, prog: number, type: number, data: Uint8Array, cookie: bigint): number;
  /** false: unknown or removed already. */
  removeAttach(index: number): boolean;
  /** Ring buffer maps of this region for trace_printk lines and agent logs (null: none). */
  setRings(printk: NativeMapHandle | null, log: NativeMapHandle | null): void;
  /** Raises plan_seq and wakes the agents; returns the new seq. */
  publish(): number;
  heartbeat(): void;
  info(): {
    planSeq: number;
    agentEvent: number;
    controllerPid: number;
    controllerStart: bigint;
    flags: number;
    nAttach: number;
    nProgs: number;
    nPlugins: number;
  };
  /** state: AgentAttachState; result: AgentResult; error: negative errno when FAILED; pid: the agent that wrote it. */
  attachResult(index: number): NativeAgentAttachResult;
  /** Non-free process records. */
  processes(): NativeAgentProcess[];
}

export interface NativeAgentAttachResult {
  /** bh_agent_attach_rec.state: 1 want, 2 removed. */
  state: number;
  /** 0 pending, 1 attached, 2 failed, 3 detached. */
  result: number;
  error: number;
  pid: number;
  message: string;
}

export interface NativeAgentProcess {
  pid: number;
  state: number;
  startTime: bigint;
  appliedSeq: number;
  attached: number;
  failed: number;
  parent: number;
  heartbeatNs: bigint;
  comm: string;
}
