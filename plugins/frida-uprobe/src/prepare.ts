/**
 * prepare(): a validated target to the address the hook engine patches,
 * through the SDK's symbol service, in the process that will run the hook.
 * Errors are the symbol service's (code NOT_FOUND, BAD_ARGUMENT, ELF_*),
 * naming the module, symbol or address and where it was looked for.
 *
 * With `moduleRelative` (PluginHost.target, agent mode) the result is also
 * flagged MODULE_RELATIVE: encode() then writes the module's path and the
 * link-time vaddr, which the native piece resolves in its own process.
 */
import path from "node:path";
import { AttachTypeId, symbolError } from "@bpfhook/sdk";
import type { AttachTypeSpec, ResolvedAddress, SymbolResolver } from "@bpfhook/sdk";
import { UprobeFlags } from "./encode.js";
import type { ResolvedTarget, UprobeTarget } from "./schema.js";

export function resolveTarget(
  target: UprobeTarget,
  type: AttachTypeSpec,
  resolver: SymbolResolver,
  pid: number,
  moduleRelative = false,
): ResolvedTarget {
  const r = resolveAbsolute(target, type, resolver, pid);
  if (!moduleRelative) return r;
  if (r.modulePath === undefined || r.vaddr === undefined) {
    throw symbolError(
      "BAD_ARGUMENT",
      `${type.name} ${r.description}: the address is in no module of process ${pid}, so it can't be moved to another ` +
        `process or image (module-relative attach); name a module and symbol or file offset instead`,
      { pid, address: r.address },
    );
  }
  return { ...r, flags: r.flags | UprobeFlags.MODULE_RELATIVE };
}

function resolveAbsolute(target: UprobeTarget, type: AttachTypeSpec, resolver: SymbolResolver, pid: number): ResolvedTarget {
  if (target.address !== undefined) return resolveAddress(target.address, type, resolver, pid);
  const module = target.module ?? "";
  if (target.symbol === undefined) {
    const r = resolver.resolveFileOffset({ module, offset: target.offset ?? 0n, pid });
    requireExecutable(r, type, `file offset 0x${r.offset.toString(16)} of ${r.modulePath}`);
    const description = `${r.modulePath}:0x${r.offset.toString(16)}`;
    return { address: r.address, vaddr: r.vaddr, flags: 0, description, modulePath: r.modulePath, kind: "offset" };
  }

  const r = resolver.resolveSymbol({ module, symbol: target.symbol, offset: target.offset ?? 0n, pid });
  requireExecutable(r, type, `'${r.symbol}' in ${r.modulePath}`);
  const at = r.offset > 0n ? `+0x${r.offset.toString(16)}` : "";
  const description = `${r.modulePath}:${r.symbol}${at}`;
  if (r.offset > 0n && type.id !== AttachTypeId.UPROBE) {
    // Inside a function [rsp] is not the return address these need; the
    // kernel refuses uretprobes at an offset too.
    throw symbolError(
      "BAD_ARGUMENT",
      `${type.name} ${description}: a ${type.name} must be at the function's entry, not at offset 0x${r.offset.toString(16)}; ` +
        `only uprobe may probe inside a function`,
      { module: r.modulePath, symbol: r.symbol ?? target.symbol },
    );
  }
  if (r.kind !== "ifunc" || target.ifunc === "resolver") {
    return {
      address: r.address,
      vaddr: r.vaddr,
      flags: 0,
      description,
      modulePath: r.modulePath,
      kind: r.kind === "ifunc" ? "ifunc" : "func",
      funcOffset: r.offset,
      funcSize: r.symbolSize ?? 0n,
    };
  }
  // The function callers run is picked by the resolver at run time: the
  // native side calls the resolver in-process, as dlsym() does, and hooks
  // its result. An offset would be into code we have not seen yet.
  if (r.offset > 0n) {
    throw symbolError(
      "BAD_ARGUMENT",
      `${type.name} ${description}: '${r.symbol}' is an IFUNC whose implementation is chosen at run time, so an offset into it ` +
        `can't be resolved; hook its entry, or set ifunc: "resolver" to probe the resolver itself`,
      { module: r.modulePath, symbol: r.symbol ?? target.symbol },
    );
  }
  return {
    address: r.address,
    vaddr: r.vaddr,
    flags: UprobeFlags.IFUNC_RESOLVER,
    description,
    modulePath: r.modulePath,
    kind: "ifunc",
  };
}

function resolveAddress(address: bigint, type: AttachTypeSpec, resolver: SymbolResolver, pid: number): ResolvedTarget {
  const where = `0x${address.toString(16)}`;
  const info = resolver.addressInfo(address, pid);
  if (!info || !info.mapping.executable) {
    const what = info ? ` (it is in a ${info.mapping.perms} mapping of ${info.mapping.path || "anonymous memory"})` : "";
    throw symbolError("NOT_FOUND", `${type.name} address ${where} is not in an executable mapping of process ${pid}${what}`, {
      pid,
      address,
    });
  }
  if (!info.module || info.fileOffset === undefined) {
    return { address, flags: 0, description: `${where} (${info.mapping.path || "anonymous"})`, kind: "address" };
  }
  const modulePath = info.module.path;
  // The link-time address, through the module's PT_LOAD segments (for a
  // module-relative encoding); undefined where the file offset is in none.
  let vaddr: bigint | undefined;
  try {
    vaddr = resolver.resolveFileOffset({ module: modulePath, offset: info.fileOffset, pid }).vaddr;
  } catch {
    vaddr = undefined;
  }
  return {
    address,
    vaddr,
    flags: 0,
    description: `${where} (${path.basename(modulePath)}:0x${info.fileOffset.toString(16)})`,
    modulePath,
    kind: "address",
  };
}

function requireExecutable(r: ResolvedAddress, type: AttachTypeSpec, what: string): void {
  if (r.executable) return;
  throw symbolError(
    "NOT_FOUND",
    `${type.name} ${what} resolves to 0x${r.address.toString(16)}, which is not in an executable mapping of process ${r.pid}`,
    { pid: r.pid, module: r.modulePath, address: r.address },
  );
}
