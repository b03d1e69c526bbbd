/**
 * /proc/<pid>/maps as data: every mapping, and the file-backed ones grouped
 * into modules (one per mapped file). Read afresh on every call, so modules
 * a process dlopen()s after start-up are seen.
 */
import fs from "node:fs";
import { symbolError } from "./errors.js";

export interface MapEntry {
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
  /** As the kernel prints them: "r-xp". */
  readonly perms: string;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly executable: boolean;
  /** File offset mapped at `start`. */
  readonly offset: bigint;
  /** "major:minor" in hex, as printed. */
  readonly dev: string;
  /** 0 for anonymous mappings. */
  readonly inode: bigint;
  /** File path without the " (deleted)" mark, a pseudo-name ("[heap]"), or "". */
  readonly path: string;
  /** The file was unlinked (or replaced) after it was mapped. */
  readonly deleted: boolean;
}

/** One mapped file: all its mappings, lowest first. */
export interface MappedModule {
  readonly path: string;
  readonly deleted: boolean;
  readonly dev: string;
  readonly inode: bigint;
  /** Lowest mapped address of the file (not necessarily its load bias). */
  readonly base: bigint;
  /** Highest mapped address + 1. */
  readonly end: bigint;
  readonly ranges: readonly MapEntry[];
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+([r-][w-][x-][ps])\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)\s+(\d+)\s*(.*)$/;
const DELETED = " (deleted)";

/** Parses the text of a maps file; throws BAD_ARGUMENT naming a line it can't read. */
export function parseProcMaps(text: string): MapEntry[] {
  const entries: MapEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "") continue;
    const m = LINE.exec(line);
    if (!m) throw symbolError("BAD_ARGUMENT", `maps line ${i + 1}: cannot parse '${line}'`);
    const perms = m[3]!;
    // The path is everything after the inode's padding; it may hold spaces.
    let path = m[7]!;
    const deleted = path.endsWith(DELETED);
    if (deleted) path = path.slice(0, -DELETED.length);
    entries.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms,
      readable: perms[0] === "r",
      writable: perms[1] === "w",
      executable: perms[2] === "x",
      offset: BigInt(`0x${m[4]}`),
      dev: m[5]!,
      inode: BigInt(m[6]!),
      path,
      deleted,
    });
  }
  return entries;
}

/** Reads and parses /proc/<pid>/maps; NOT_FOUND when the process is gone or hidden. */
export function readProcMaps(pid: number = process.pid): MapEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/maps`, "utf8");
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw symbolError("NOT_FOUND", `cannot read the memory map of process ${pid} (${why})`, { pid });
  }
  return parseProcMaps(text);
}

/**
 * Groups file-backed mappings by file. Pseudo-mappings ([vdso], [heap]) and
 * anonymous ones are left out: they have no file to read symbols from.
 */
export function groupModules(entries: readonly MapEntry[]): MappedModule[] {
  const byFile = new Map<string, MapEntry[]>();
  for (const e of entries) {
    if (!e.path.startsWith("/") || e.inode === 0n) continue;
    const key = `${e.dev}\0${e.inode}\0${e.path}`;
    let list = byFile.get(key);
    if (!list) byFile.set(key, (list = []));
    list.push(e);
  }
  const modules: MappedModule[] = [];
  for (const list of byFile.values()) {
    list.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const first = list[0]!;
    modules.push({
      path: first.path,
      deleted: list.some((e) => e.deleted),
      dev: first.dev,
      inode: first.inode,
      base: first.start,
      end: list.reduce((max, e) => (e.end > max ? e.end : max), first.end),
      ranges: list,
    });
  }
  return modules.sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
}

/** The modules mapped in a process right now. */
export function readProcessModules(pid: number = process.pid): MappedModule[] {
  return groupModules(readProcMaps(pid));
}

/** The mapping that holds `address`, if any. */
export function findMapping(entries: readonly MapEntry[], address: bigint): MapEntry | undefined {
  return entries.find((e) => address >= e.start && address < e.end);
}
