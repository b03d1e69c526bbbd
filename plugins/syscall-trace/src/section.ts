/**
 * Section names and config entries to private data.
 */
import { SYSCALL_MAX_NR } from "./encode-constants.js";
import { closestSyscalls, syscallNumber } from "./syscalls.js";

type Raw = { direction: "enter" | "exit"; nr: number | "all" };

function badArgument(message: string): Error {
  return Object.assign(new Error(message), { code: "BAD_ARGUMENT" });
}

/**
 * `rest` after a syscalls or raw_syscalls prefix: "sys_enter_openat",
 * "sys_exit" ... `raw`: the prefix was raw_syscalls.
 */
export function parseSyscallSection(rest: string, section: string): Raw {
  const raw = /^(tracepoint|tp)\/raw_syscalls(\/|$)/.test(section);
  if (raw) {
    if (rest === "sys_enter") return { direction: "enter", nr: "all" };
    if (rest === "sys_exit") return { direction: "exit", nr: "all" };
    throw badArgument(`section '${section}': raw_syscalls has only sys_enter and sys_exit`);
  }
  const m = /^sys_(enter|exit)_(.+)$/.exec(rest);
  if (!m) {
    throw badArgument(`section '${section}': expected tracepoint/syscalls/sys_enter_<name> or sys_exit_<name>`);
  }
  const direction = m[1] as "enter" | "exit";
  return { direction, nr: resolveSyscall(m[2]!, `section '${section}'`) };
}

/** A syscall name to its number; unknown names are refused with the closest ones. */
export function resolveSyscall(name: string, where: string): number {
  const nr = syscallNumber(name);
  if (nr !== undefined) return nr;
  const near = closestSyscalls(name).join(", ");
  throw Object.assign(new Error(`${where}: no x86-64 syscall '${name}' (closest: ${near})`), { code: "NOT_FOUND" });
}

/**
 * A config entry: { direction, syscall: "openat" | "all" } or { direction, nr },
 * and optionally override. Unknown keys go through for the strict schema to name.
 */
export function parseSyscallConfig(entry: Record<string, unknown>): unknown {
  const { syscall, ...rest } = entry;
  if (syscall === undefined) return entry;
  // Both would leave one silently unused.
  if ("nr" in rest) throw badArgument(`config entry: give 'syscall' or 'nr', not both (syscall ${JSON.stringify(syscall)}, nr ${JSON.stringify(rest["nr"])})`);
  if (syscall === "all") return { ...rest, nr: "all" };
  if (typeof syscall === "number") {
    // Checked here so that the message names the field the entry has ('syscall', not the private data's 'nr').
    if (!Number.isInteger(syscall) || syscall < 0 || syscall >= SYSCALL_MAX_NR) {
      throw badArgument(`config entry: syscall ${syscall} is not an x86-64 syscall number (an integer 0 to ${SYSCALL_MAX_NR - 1}) or a name`);
    }
    return { ...rest, nr: syscall };
  }
  if (typeof syscall !== "string") throw badArgument(`config entry: 'syscall' must be a name, a number or "all"`);
  return { ...rest, nr: resolveSyscall(syscall, "config entry") };
}
