/**
 * The syscall-trace plugin: eBPF programs written for the kernel's syscall
 * tracepoints (tracepoint/syscalls/sys_enter_<name>, sys_exit_<name>,
 * tracepoint/raw_syscalls/sys_enter, sys_exit), run in user space on the
 * calls of the process that loads them. bpfhook's text transformer
 * (plugins/text-transformer, linked into the native piece) sends each system
 * call through the dispatcher (native/dispatch.cpp); no kernel support, no
 * root.
 */
import path from "node:path";
import { definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, NativeCaller } from "@bpfhook/sdk";
import { SYS_ENTER_LAYOUT, SYS_EXIT_LAYOUT, SYSCALL_TRACE } from "./attach-types.js";
import { encodePrivateData } from "./encode.js";
import { syscallTraceSchema } from "./schema.js";
import type { SyscallTracePrivateData } from "./schema.js";
import { parseSyscallConfig, parseSyscallSection } from "./section.js";
import { syscallName } from "./syscalls.js";

export {
  RAW_SYSCALLS_PREFIXES,
  SYS_ENTER_CONTEXT_SIZE,
  SYS_ENTER_LAYOUT,
  SYS_EXIT_CONTEXT_SIZE,
  SYS_EXIT_LAYOUT,
  SYSCALL_ANY_LAYOUT,
  SYSCALL_TRACE,
  SYSCALLS_PREFIXES,
} from "./attach-types.js";
export { decodePrivateData, encodePrivateData } from "./encode.js";
export { PRIVATE_DATA_SIZE, ScFlags, SYSCALL_MAX_NR } from "./encode-constants.js";
export { syscallTraceSchema } from "./schema.js";
export type { SyscallTracePrivateData } from "./schema.js";
export { parseSyscallConfig, parseSyscallSection, resolveSyscall } from "./section.js";
export { closestSyscalls, syscallName, syscallNames, syscallNumber } from "./syscalls.js";
export { SYSCALLS_X86_64 } from "./syscall-table.js";

export const PLUGIN_NAME = "syscall-trace";

/** Where the native piece is built (`npm run build:native` in this package). */
export const NATIVE_LIBRARY = path.resolve(__dirname, "..", "build", "libbpfhook_syscall_trace.so");

function describeData(d: SyscallTracePrivateData): string {
  const side = d.direction === "enter" ? "sys_enter" : "sys_exit";
  const what = d.nr === "all" ? `raw_syscalls/${side} (every syscall)` : `syscalls/${side}_${syscallName(d.nr) ?? `nr${d.nr}`} (nr ${d.nr})`;
  return `${what}${d.override === "deny" ? ", override denied" : ""}`;
}

export const plugin = definePlugin<SyscallTracePrivateData>({
  name: PLUGIN_NAME,
  version: "0.1.0",
  abiVersion: PLUGIN_ABI_VERSION,
  attachTypes: [SYSCALL_TRACE],
  privateDataSchema: syscallTraceSchema,
  nativeLibrary: NATIVE_LIBRARY,
  parseSection: (_type, rest, section) => parseSyscallSection(rest, section),
  parseConfig: (_type, entry) => parseSyscallConfig(entry),
  // The exact context of a section's direction; the type's own layout (64
  // readable bytes, true for both) otherwise.
  contextLayoutFor: (_type: AttachTypeSpec, rest: string): ContextLayout | undefined => {
    if (/^sys_enter(_|$)/.test(rest)) return SYS_ENTER_LAYOUT;
    if (/^sys_exit(_|$)/.test(rest)) return SYS_EXIT_LAYOUT;
    return undefined;
  },
  encode: ({ data, program }) => encodePrivateData(data, program !== undefined && program.helperIds.length === 0),
  describe: ({ data }) => describeData(data),
});

export default plugin;

/** What the native piece did (call "stats"). */
export interface SyscallTraceStats {
  /** The text transformer is installed (some program is attached). */
  readonly installed: boolean;
  /** Attaches do not install the transformer (setDispatchOnly). */
  readonly dispatchOnly: boolean;
  /** BH_TT_MECH_* in use: 1 rel32, 2 page0, 4 sud. */
  readonly mechanisms: number;
  readonly modulesScanned: number;
  readonly sitesFound: number;
  readonly sitesRel32: number;
  readonly sitesPage0: number;
  readonly sitesSud: number;
  readonly sitesUntouched: number;
  readonly bytesUndecodable: number;
  /** Calls not traced because no per-thread slot was free. */
  readonly missed: number;
  /** Detaches whose wait for running programs gave up after a second. */
  readonly graceTimeouts: number;
  /** Threads that have made a traced call (slots in use). */
  readonly threads: number;
  /**
   * Attachments whose runs keep the AVX/AVX-512 state (the program runs in
   * the interpreter or calls a helper that may change it); the others, JIT
   * programs that call no helper or only the core's vector-clean ones
   * (BH_PROG_F_VECTOR_CLEAN), run without that cost.
   */
  readonly guarded: number;
}

export function syscallTraceStats(host: NativeCaller): SyscallTraceStats {
  const { out } = host.callNative(PLUGIN_NAME, "stats", new Uint8Array(0), 96);
  const u64 = (o: number) => Number(out.readBigUInt64LE(o));
  return {
    installed: out.readUInt32LE(0) !== 0,
    mechanisms: out.readUInt32LE(4),
    modulesScanned: out.readUInt32LE(8),
    dispatchOnly: out.readUInt32LE(12) !== 0,
    sitesFound: u64(16),
    sitesRel32: u64(24),
    sitesPage0: u64(32),
    sitesSud: u64(40),
    sitesUntouched: u64(48),
    bytesUndecodable: u64(56),
    missed: u64(64),
    graceTimeouts: u64(72),
    threads: u64(80),
    guarded: u64(88),
  };
}

/** BH_TT_MECH_*: restrict the transformer's mechanisms (before the first attach; 0 = automatic). */
export const Mechanism = Object.freeze({ AUTO: 0, REL32: 1, PAGE0: 2, SUD: 4 });

/**
 * Chooses the mechanisms the next install uses (the environment variable
 * BPFHOOK_SYSCALL_MECHANISMS="rel32,sud" does the same, e.g. in agent mode).
 * Throws (EBUSY) while the transformer is installed.
 */
export function setMechanisms(host: NativeCaller, mechanisms: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(mechanisms, 0);
  host.callNative(PLUGIN_NAME, "set_mechanisms", b, 0);
}

/**
 * Tests and benchmarks: attaches stop installing the transformer, and
 * `dispatch` drives the hooks directly. Throws (EBUSY) while installed.
 */
export function setDispatchOnly(host: NativeCaller, on: boolean): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(on ? 1 : 0, 0);
  host.callNative(PLUGIN_NAME, "dispatch_only", b, 0);
}

export interface DispatchResult {
  /** 0: the call would run; 1: an enter program overrode it (skipped). */
  readonly action: number;
  /** The result the caller would see: `result`, an enter override, or an exit's replacement. */
  readonly ret: bigint;
}

/**
 * Runs the hooks for one fabricated call, as the transformer would: enter,
 * then (unless skipped) the call "returns" `result`, then exit. For tests.
 */
export function dispatch(host: NativeCaller, nr: number, args: readonly (bigint | number)[], result: bigint | number): DispatchResult {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(BigInt(nr), 0);
  for (let i = 0; i < 6; i++) b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(args[i] ?? 0)), 8 + i * 8);
  b.writeBigInt64LE(BigInt(result), 56);
  const { out } = host.callNative(PLUGIN_NAME, "dispatch", b, 16);
  return { action: out.readInt32LE(0), ret: out.readBigInt64LE(8) };
}
