/**
 * The symbol service: turns (module, symbol[, offset]) or (module, file
 * offset) into an absolute address in a live process, and says what lies at
 * an address. Symbol tables are cached per file (see SymbolFileCache).
 *
 * Resolving reuses the last reading of a process's maps (its modules, the
 * executable's path, each module's symbol file) while it still holds: the
 * module a request names must be in it, and still be the same file mapped at
 * the same place, which one stat of /proc/<pid>/map_files/<range> (the
 * mapped file's inode) proves. Otherwise (a module loaded since, one
 * unloaded or moved, map_files unreadable) the maps are read again. So a
 * module loaded after start-up is found as soon as it is mapped, and
 * attaching many probes does not re-read the maps each time. `modules()`,
 * `findModule()` and `addressInfo()` always read them afresh.
 *
 * Addresses are bigints throughout; x86-64 user addresses exceed 2^53.
 */
import fs from "node:fs";
import path from "node:path";
import { hex, symbolError } from "./errors.js";
import { fileOffsetToVaddr, vaddrToFileOffset } from "./elf-symbols.js";
import type { SymbolTableName } from "./elf-symbols.js";
import { loadBias } from "./load-bias.js";
import { matchModule } from "./module-match.js";
import { findMapping, groupModules, readProcMaps } from "./proc-maps.js";
import type { MapEntry, MappedModule } from "./proc-maps.js";
import { SymbolFileCache } from "./symbol-file.js";
import type { SymbolFile } from "./symbol-file.js";

export interface SymbolRequest {
  /** Module name, path or main-executable alias (see module-match.ts). */
  readonly module: string;
  /** Function name; a "@VERSION" suffix is ignored (the default version wins). */
  readonly symbol: string;
  /** Bytes past the symbol's start; must lie inside the function when its size is known. */
  readonly offset?: bigint | number;
  /** Target process; this one by default. */
  readonly pid?: number;
}

export interface FileOffsetRequest {
  readonly module: string;
  /** Offset in the module's file (what kernel uprobes take), inside a PT_LOAD segment. */
  readonly offset: bigint | number;
  readonly pid?: number;
}

export interface ResolvedAddress {
  /** Absolute address in the target process. */
  readonly address: bigint;
  readonly pid: number;
  /** Path of the module as mapped. */
  readonly modulePath: string;
  /** Run-time address minus link-time address for this module. */
  readonly bias: bigint;
  /** Link-time address (st_value + offset, or the file offset's p_vaddr). */
  readonly vaddr: bigint;
  /** The file offset of the address, when the file holds its bytes. */
  readonly fileOffset: bigint | undefined;
  /**
   * "func": a function (plus offset). "ifunc": an IFUNC symbol; `address` is
   * its resolver, which returns the implementation chosen for this CPU (what
   * dlsym() returns); the caller decides which to hook. "offset": from a
   * file offset, no symbol involved.
   */
  readonly kind: "func" | "ifunc" | "offset";
  readonly symbol?: string;
  readonly symbolSize?: bigint;
  readonly table?: SymbolTableName;
  /** Offset added to the symbol (0 without one). */
  readonly offset: bigint;
  /** The address lies in an executable mapping of the module. */
  readonly executable: boolean;
}

export interface AddressInfo {
  readonly address: bigint;
  readonly mapping: MapEntry;
  /** The module the mapping belongs to, for a file-backed mapping. */
  readonly module?: MappedModule;
  /** The file offset of the address, for a file-backed mapping. */
  readonly fileOffset?: bigint;
}

/** One reading of a process's maps, reused while the modules it names stay mapped. */
interface MapsSnapshot {
  readonly modules: MappedModule[];
  readonly exePath: string | undefined;
  /** Symbol files of its modules, opened on first use. */
  readonly files: Map<MappedModule, SymbolFile>;
}

export class SymbolResolver {
  private readonly snapshots = new Map<number, MapsSnapshot>();

  constructor(private readonly cache = new SymbolFileCache()) {}

  /** The modules mapped in `pid` right now. */
  modules(pid: number = process.pid): MappedModule[] {
    return groupModules(readProcMaps(pid));
  }

  /** The module a name means in `pid` (rules in module-match.ts). */
  findModule(name: string, pid: number = process.pid): MappedModule {
    return matchModule(this.modules(pid), name, { pid, exePath: executablePath(pid) });
  }

  resolveSymbol(req: SymbolRequest): ResolvedAddress {
    const pid = req.pid ?? process.pid;
    const offset = toOffset(req.offset ?? 0n, "offset");
    const { snap, module } = this.lookup(req.module, pid);
    const file = this.cachedSymbolFile(snap, module, pid);
    const sym = file.findFunction(req.symbol);
    if (!sym) throw this.symbolNotFound(req.symbol, module, file, snap.modules, pid);
    if (sym.size > 0n && offset >= sym.size) {
      throw symbolError(
        "BAD_ARGUMENT",
        `offset ${hex(offset)} is past the end of '${sym.name}' (${sym.size} bytes) in ${module.path}`,
        { pid, module: module.path, symbol: sym.name },
      );
    }
    const bias = loadBias(module, file.image);
    const vaddr = sym.value + offset;
    const address = bias + vaddr;
    return {
      address,
      pid,
      modulePath: module.path,
      bias,
      vaddr,
      fileOffset: vaddrToFileOffset(file.image, vaddr),
      kind: sym.kind === "ifunc" ? "ifunc" : "func",
      symbol: sym.name,
      symbolSize: sym.size,
      table: sym.table,
      offset,
      executable: isExecutable(module, address),
    };
  }

  resolveFileOffset(req: FileOffsetRequest): ResolvedAddress {
    const pid = req.pid ?? process.pid;
    const offset = toOffset(req.offset, "file offset");
    const { snap, module } = this.lookup(req.module, pid);
    const file = this.cachedSymbolFile(snap, module, pid);
    const seg = fileOffsetToVaddr(file.image, offset);
    if (!seg) {
      const spans = file.image.loads.map((l) => `${hex(l.offset)}-${hex(l.offset + l.filesz)}`).join(", ");
      throw symbolError(
        "NOT_FOUND",
        `file offset ${hex(offset)} of ${module.path} is in no loaded segment (PT_LOAD file ranges: ${spans || "none"})`,
        { pid, module: module.path },
      );
    }
    const bias = loadBias(module, file.image);
    const address = bias + seg.at;
    return {
      address,
      pid,
      modulePath: module.path,
      bias,
      vaddr: seg.at,
      fileOffset: offset,
      kind: "offset",
      offset,
      executable: isExecutable(module, address),
    };
  }

  /** What is mapped at `address` in `pid`; undefined when nothing is. */
  addressInfo(address: bigint, pid: number = process.pid): AddressInfo | undefined {
    const entries = readProcMaps(pid);
    const mapping = findMapping(entries, address);
    if (!mapping) return undefined;
    if (!mapping.path.startsWith("/") || mapping.inode === 0n) return { address, mapping };
    const module = groupModules(entries).find((m) => m.ranges.includes(mapping));
    const fileOffset = mapping.offset + (address - mapping.start);
    return module ? { address, mapping, module, fileOffset } : { address, mapping, fileOffset };
  }

  /** Forgets cached symbol tables and maps readings (they are also dropped when a file changes). */
  clearCache(): void {
    this.cache.clear();
    this.snapshots.clear();
  }

  /**
   * The module `name` means in `pid`: from the last maps reading if it names
   * one there that is still mapped as it was, else from a fresh reading.
   */
  private lookup(name: string, pid: number): { snap: MapsSnapshot; module: MappedModule } {
    const last = this.snapshots.get(pid);
    if (last) {
      let module: MappedModule | undefined;
      try {
        module = matchModule(last.modules, name, { pid, exePath: last.exePath });
      } catch {
        module = undefined; // not there (yet): read again
      }
      if (module && stillMapped(module, pid)) return { snap: last, module };
    }
    const snap: MapsSnapshot = { modules: this.modules(pid), exePath: executablePath(pid), files: new Map() };
    this.snapshots.set(pid, snap);
    return { snap, module: matchModule(snap.modules, name, { pid, exePath: snap.exePath }) };
  }

  /** symbolFile(), once per module of a snapshot (the same mapped file has the same symbols). */
  private cachedSymbolFile(snap: MapsSnapshot, module: MappedModule, pid: number): SymbolFile {
    let file = snap.files.get(module);
    if (!file) {
      file = this.symbolFile(module, pid);
      snap.files.set(module, file);
    }
    return file;
  }

  /**
   * The symbols of the file behind a module. Normally its path; when that
   * file was deleted or replaced since it was mapped, the mapped file itself
   * through /proc/<pid>/map_files (needs privileges).
   */
  private symbolFile(module: MappedModule, pid: number): SymbolFile {
    if (!module.deleted && inodeOf(module.path) === module.inode) return this.cache.open(module.path);
    const first = module.ranges[0]!;
    const viaProc = `/proc/${pid}/map_files/${first.start.toString(16)}-${first.end.toString(16)}`;
    if (inodeOf(viaProc) !== undefined) return this.cache.open(viaProc);
    // Overlay file systems may report other inodes in maps than stat() does:
    // a path that still exists is the best we have.
    if (!module.deleted && inodeOf(module.path) !== undefined) return this.cache.open(module.path);
    throw symbolError(
      "NOT_FOUND",
      `${module.path} (mapped in process ${pid}) was deleted or replaced on disk, and ${viaProc} cannot be read`,
      { pid, module: module.path, file: module.path },
    );
  }

  private symbolNotFound(
    name: string,
    module: MappedModule,
    file: SymbolFile,
    modules: readonly MappedModule[],
    pid: number,
  ) {
    const entries = file.entriesNamed(name);
    const detail = { pid, module: module.path, file: file.image.path, symbol: name };
    const data = entries.find((e) => e.defined && e.kind !== "func" && e.kind !== "ifunc");
    if (data) {
      const what = data.kind === "object" ? "data object" : "non-function symbol";
      return symbolError("NOT_FOUND", `symbol '${name}' in ${module.path} is a ${what}, not a function`, detail);
    }
    const tables = file.tables;
    const searched =
      tables.length === 0
        ? "the file has no symbol tables"
        : tables.includes(".symtab")
          ? tables.join(", ")
          : `${tables.join(", ")}; no .symtab, the file is stripped`;
    const imported = entries.some((e) => !e.defined) ? `; ${path.basename(module.path)} imports it` : "";
    const elsewhere = this.exportersOf(name, module, modules, pid);
    const hint = elsewhere.length > 0 ? `; it is exported by ${elsewhere.join(", ")}` : "";
    return symbolError("NOT_FOUND", `symbol '${name}' not found in ${module.path} (${searched})${imported}${hint}`, detail);
  }

  /** Other mapped modules whose .dynsym defines `name` as a function (for hints; best effort). */
  private exportersOf(name: string, except: MappedModule, modules: readonly MappedModule[], pid: number): string[] {
    const found: string[] = [];
    for (const m of modules) {
      if (m === except || found.length >= 3) continue;
      try {
        if (this.symbolFile(m, pid).findFunction(name, [".dynsym"])) found.push(path.basename(m.path));
      } catch {
        // Not an ELF file (fonts, locale archives...) or unreadable: no hint from it.
      }
    }
    return found;
  }
}

/** The resolver plugins share; its cache lives as long as the process. */
export const symbolResolver = new SymbolResolver();

/** /proc/<pid>/exe's target, without the " (deleted)" mark; undefined when hidden. */
export function executablePath(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "");
  } catch {
    return undefined;
  }
}

/**
 * The module's first mapping is still its file, at the same addresses: the
 * kernel names each mapping of a file /proc/<pid>/map_files/<start>-<end>,
 * and stat() through it gives the mapped file's inode. False when the link
 * is gone (unmapped, or mapped elsewhere), names another file, or cannot be
 * read (no permission): then the maps are read again.
 */
function stillMapped(module: MappedModule, pid: number): boolean {
  const first = module.ranges[0]!;
  try {
    const st = fs.statSync(`/proc/${pid}/map_files/${first.start.toString(16)}-${first.end.toString(16)}`, {
      bigint: true,
      throwIfNoEntry: false,
    });
    return st !== undefined && st.ino === module.inode;
  } catch {
    return false;
  }
}

function isExecutable(module: MappedModule, address: bigint): boolean {
  return module.ranges.some((r) => r.executable && address >= r.start && address < r.end);
}

function inodeOf(p: string): bigint | undefined {
  try {
    return fs.statSync(p, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}

function toOffset(v: bigint | number, what: string): bigint {
  if (typeof v === "number" && !Number.isSafeInteger(v)) {
    throw symbolError("BAD_ARGUMENT", `${what} must be an integer, got ${v}`);
  }
  const b = BigInt(v);
  if (b < 0n) throw symbolError("BAD_ARGUMENT", `${what} must not be negative, got ${b}`);
  return b;
}
