/**
 * Which mapped module a user's module name means. The rules, first that
 * applies wins:
 *
 *  1. The main executable: "" , "self", "main", "/proc/self/exe" and
 *     "/proc/<pid>/exe" of the target process (libbpf's spelling). Matched
 *     by the path the kernel reports for /proc/<pid>/exe.
 *  2. A name containing "/" is a path (a relative one is taken from our
 *     working directory, as libbpf does): the module mapped from exactly
 *     that path, or else from the same file once symlinks are resolved
 *     ("/lib/x86_64-linux-gnu/libc.so.6" is "/usr/lib/..." on merged-/usr).
 *  3. Otherwise a file name: the module whose basename equals it
 *     ("libc.so.6"), or else whose basename starts with it followed by "."
 *     or "-" ("libc" is libc.so.6 or libc-2.31.so, never libcrypto.so.3).
 *
 * Several different files matching a name is an error (BAD_ARGUMENT) that
 * lists them; nothing matching is NOT_FOUND and lists what is mapped.
 */
import fs from "node:fs";
import path from "node:path";
import { symbolError } from "./errors.js";
import type { MappedModule } from "./proc-maps.js";

/** Module names that mean the main executable (besides /proc/<pid>/exe). */
export const MAIN_MODULE_NAMES: readonly string[] = ["", "self", "main", "/proc/self/exe"];

export interface MatchContext {
  readonly pid: number;
  /** Path of the process's executable, as /proc/<pid>/exe reports it. */
  readonly exePath: string | undefined;
}

export function isMainModuleName(name: string, pid: number): boolean {
  return MAIN_MODULE_NAMES.includes(name) || name === `/proc/${pid}/exe`;
}

export function matchModule(modules: readonly MappedModule[], name: string, ctx: MatchContext): MappedModule {
  if (isMainModuleName(name, ctx.pid)) {
    const main = ctx.exePath === undefined ? undefined : modules.find((m) => m.path === ctx.exePath);
    if (main) return main;
    throw notMapped(modules, name, ctx, `the main executable${ctx.exePath ? ` (${ctx.exePath})` : ""}`);
  }

  if (name.includes("/")) {
    const wanted = path.resolve(name);
    const exact = modules.filter((m) => m.path === wanted);
    if (exact.length > 0) return unique(exact, name, ctx);
    const real = realpathOrUndefined(wanted);
    const same = real === undefined ? [] : modules.filter((m) => m.path === real || realpathOrUndefined(m.path) === real);
    if (same.length > 0) return unique(same, name, ctx);
    throw notMapped(modules, name, ctx);
  }

  const byBase = modules.filter((m) => path.basename(m.path) === name);
  if (byBase.length > 0) return unique(byBase, name, ctx);
  const byPrefix = modules.filter((m) => {
    const base = path.basename(m.path);
    return base.startsWith(`${name}.`) || base.startsWith(`${name}-`);
  });
  if (byPrefix.length > 0) return unique(byPrefix, name, ctx);
  throw notMapped(modules, name, ctx);
}

/** A short list of what is mapped, for messages: basenames, lowest address first. */
export function mappedSummary(modules: readonly MappedModule[], max = 30): string {
  const names = [...new Set(modules.map((m) => path.basename(m.path)))];
  if (names.length === 0) return "(no file-backed mappings)";
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} ... and ${names.length - max} more` : shown;
}

function unique(found: MappedModule[], name: string, ctx: MatchContext): MappedModule {
  const files = [...new Set(found.map((m) => m.path))];
  if (found.length === 1 || (files.length === 1 && found.every((m) => m.inode === found[0]!.inode))) return found[0]!;
  throw symbolError(
    "BAD_ARGUMENT",
    `module '${name}' is ambiguous in process ${ctx.pid}: it matches ${files.join(", ")}; give the full path`,
    { pid: ctx.pid, module: name },
  );
}

function notMapped(modules: readonly MappedModule[], name: string, ctx: MatchContext, what?: string) {
  const label = what ?? `module '${name}'`;
  return symbolError("NOT_FOUND", `${label} is not mapped in process ${ctx.pid}; mapped: ${mappedSummary(modules)}`, {
    pid: ctx.pid,
    module: name,
  });
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}
