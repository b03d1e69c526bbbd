/**
 * A file's function symbols, indexed by name, built lazily per table and
 * cached per path while the file on disk stays the same (inode, size, mtime).
 * The lookup rule lives here: which of several entries with one name wins.
 */
import fs from "node:fs";
import { hex, symbolError } from "./errors.js";
import { readElfImage, readSymbols, stripVersion, symbolTables } from "./elf-symbols.js";
import type { ElfImage, ElfSymbol, SymbolTableName } from "./elf-symbols.js";

export class SymbolFile {
  private readonly indexes = new Map<SymbolTableName, Map<string, ElfSymbol[]>>();

  constructor(readonly image: ElfImage) {}

  /** The tables present, .dynsym first. */
  get tables(): SymbolTableName[] {
    return symbolTables(this.image);
  }

  /**
   * The function named `name` (a "@VERSION" suffix is ignored), or undefined;
   * `tables` narrows the search (only .dynsym: exported functions).
   * Order: .dynsym before .symtab (exports are what the dynamic linker binds
   * calls to); within a table the default symbol version before a hidden
   * one, global before weak before local. Several local functions of one
   * name at different addresses (static functions of different files) are
   * ambiguous: BAD_ARGUMENT, listing them.
   */
  findFunction(name: string, tables: readonly SymbolTableName[] = this.tables): ElfSymbol | undefined {
    const key = stripVersion(name);
    for (const table of tables) {
      const found = this.index(table).get(key);
      if (!found || found.length === 0) continue;
      const best = [...found].sort(rank)[0]!;
      if (best.bind === "local") {
        const places = [...new Set(found.map((s) => s.value))];
        if (places.length > 1) {
          throw symbolError(
            "BAD_ARGUMENT",
            `symbol '${key}' is ambiguous in ${this.image.path}: ${places.length} local functions in ${table} ` +
              `(at ${places.map((v) => hex(v)).join(", ")}); give a file offset instead`,
            { file: this.image.path, symbol: key },
          );
        }
      }
      return best;
    }
    return undefined;
  }

  /** Every entry named `name` in every table, of any kind: for "it is an import" messages. */
  entriesNamed(name: string): ElfSymbol[] {
    const key = stripVersion(name);
    return this.tables.flatMap((t) => readSymbols(this.image, t, { name: key }));
  }

  private index(table: SymbolTableName): Map<string, ElfSymbol[]> {
    let idx = this.indexes.get(table);
    if (!idx) {
      idx = new Map();
      for (const sym of readSymbols(this.image, table, "functions")) {
        const list = idx.get(sym.name);
        if (list) list.push(sym);
        else idx.set(sym.name, [sym]);
      }
      this.indexes.set(table, idx);
    }
    return idx;
  }
}

const BIND_ORDER = { global: 0, weak: 1, other: 2, local: 3 } as const;

function rank(a: ElfSymbol, b: ElfSymbol): number {
  if (a.hiddenVersion !== b.hiddenVersion) return a.hiddenVersion ? 1 : -1;
  return BIND_ORDER[a.bind] - BIND_ORDER[b.bind];
}

/** SymbolFiles by path, reused until the file changes on disk. */
export class SymbolFileCache {
  private readonly files = new Map<string, { identity: string; file: SymbolFile }>();

  open(path: string): SymbolFile {
    const identity = fileIdentity(path);
    const hit = this.files.get(path);
    if (hit && hit.identity === identity) return hit.file;
    const file = new SymbolFile(readElfImage(path));
    this.files.set(path, { identity, file });
    return file;
  }

  clear(): void {
    this.files.clear();
  }

  get size(): number {
    return this.files.size;
  }
}

/** dev:inode:size:mtime, the same as long as nobody rewrites the file. */
export function fileIdentity(path: string): string {
  try {
    const st = fs.statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw symbolError("NOT_FOUND", `cannot stat ${path} to read its symbols (${why})`, { file: path });
  }
}
