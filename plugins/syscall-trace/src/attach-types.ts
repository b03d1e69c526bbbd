/**
 * The one attach type this plugin serves, syscall_trace (2, bpftime's id and
 * name), and the kernel contexts its programs get.
 *
 *   tracepoint/syscalls/sys_enter_<name>   before syscall <name>
 *   tracepoint/syscalls/sys_exit_<name>    after it
 *   tracepoint/raw_syscalls/sys_enter      before every syscall
 *   tracepoint/raw_syscalls/sys_exit       after every syscall
 *
 * and libbpf's short forms `tp/syscalls/...`, `tp/raw_syscalls/...`.
 */
import { AttachTypeId } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout } from "@bpfhook/sdk";

/** sizeof(struct trace_event_raw_sys_enter): common header (8), long id, unsigned long args[6]. */
export const SYS_ENTER_CONTEXT_SIZE = 64;
/** sizeof(struct trace_event_raw_sys_exit): common header (8), long id, long ret. */
export const SYS_EXIT_CONTEXT_SIZE = 24;

/** An enter program's context: all 64 bytes readable, none writable (as the kernel's). */
export const SYS_ENTER_LAYOUT: ContextLayout = Object.freeze({
  name: "trace_event_raw_sys_enter",
  size: SYS_ENTER_CONTEXT_SIZE,
  readable: Object.freeze([{ offset: 0, size: SYS_ENTER_CONTEXT_SIZE }]),
  writable: Object.freeze([]),
});

/** An exit program's context: 24 bytes readable, none writable. */
export const SYS_EXIT_LAYOUT: ContextLayout = Object.freeze({
  name: "trace_event_raw_sys_exit",
  size: SYS_EXIT_CONTEXT_SIZE,
  readable: Object.freeze([{ offset: 0, size: SYS_EXIT_CONTEXT_SIZE }]),
  writable: Object.freeze([]),
});

/**
 * The type's layout when no section says which direction (a config entry, a
 * forced attach): 64 readable bytes. The dispatcher hands every run 64 bytes,
 * an exit context zero-padded past `ret`, so this is true for both.
 */
export const SYSCALL_ANY_LAYOUT: ContextLayout = Object.freeze({
  name: "syscall tracepoint record (enter or exit)",
  size: SYS_ENTER_CONTEXT_SIZE,
  readable: Object.freeze([{ offset: 0, size: SYS_ENTER_CONTEXT_SIZE }]),
  writable: Object.freeze([]),
});

/** The section prefixes (libbpf's "tracepoint" and "tp" forms). */
export const SYSCALLS_PREFIXES = Object.freeze(["tracepoint/syscalls", "tp/syscalls"]);
export const RAW_SYSCALLS_PREFIXES = Object.freeze(["tracepoint/raw_syscalls", "tp/raw_syscalls"]);

export const SYSCALL_TRACE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.SYSCALL_TRACE,
  name: "syscall_trace",
  sectionPrefixes: Object.freeze([...SYSCALLS_PREFIXES, ...RAW_SYSCALLS_PREFIXES]),
  contextSize: SYS_ENTER_CONTEXT_SIZE,
  context: "tracepoint record",
  contextLayout: SYSCALL_ANY_LAYOUT,
  // None refused. bpf_override_return, which the kernel refuses in
  // tracepoints, is honoured here (the private data's `override` policy):
  // on enter the call is skipped with the value, on exit the value replaces
  // the result.
  refusedHelpers: Object.freeze([]),
});
