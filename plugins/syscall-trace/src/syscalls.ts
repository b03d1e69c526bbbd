/**
 * Syscall names and numbers (x86-64), from the project's own table
 * (syscall-table.ts): tracefs is not there to ask.
 */
import { SYSCALLS_X86_64 } from "./syscall-table.js";

const byName = new Map<string, number>();
const byNr = new Map<number, string>();
for (const [nr, name, entry] of SYSCALLS_X86_64) {
  byName.set(name, nr);
  // The tracepoint's name (the entry point's) is the primary one.
  byNr.set(nr, entry ?? name);
  if (entry !== undefined) byName.set(entry, nr);
}

/** Every name a section or config may use (table names and entry-point names). */
export function syscallNames(): string[] {
  return [...byName.keys()];
}

/** The number of `name` ("openat", "newstat" or "stat"), or undefined. */
export function syscallNumber(name: string): number | undefined {
  return byName.get(name);
}

/** The tracepoint name of `nr` ("newstat" for 4), or undefined. */
export function syscallName(nr: number): string | undefined {
  return byNr.get(nr);
}

/** Up to `n` known names closest to `name` (edit distance), for messages. */
export function closestSyscalls(name: string, n = 3): string[] {
  const scored = syscallNames().map((s) => ({ s, d: distance(name, s) }));
  scored.sort((a, b) => a.d - b.d || a.s.localeCompare(b.s));
  return scored.slice(0, n).map((x) => x.s);
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}
