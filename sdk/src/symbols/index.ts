/**
 * Symbol resolution for plugins: where a function of a module lives in a
 * live process. Read /proc/<pid>/maps, the module's ELF symbol tables and
 * its PT_LOAD headers; no debug info, no ptrace.
 */
export { SymbolResolver, symbolResolver, executablePath } from "./resolver.js";
export type { AddressInfo, FileOffsetRequest, ResolvedAddress, SymbolRequest } from "./resolver.js";
export { matchModule, mappedSummary, isMainModuleName, MAIN_MODULE_NAMES } from "./module-match.js";
export type { MatchContext } from "./module-match.js";
export { parseProcMaps, readProcMaps, groupModules, readProcessModules, findMapping } from "./proc-maps.js";
export type { MapEntry, MappedModule } from "./proc-maps.js";
export {
  readElfImage,
  readSymbols,
  symbolTables,
  stripVersion,
  vaddrToFileOffset,
  fileOffsetToVaddr,
} from "./elf-symbols.js";
export type {
  ElfImage,
  ElfLoadSegment,
  ElfSection,
  ElfSymbol,
  ElfSymbolBind,
  ElfSymbolKind,
  ElfType,
  SymbolTableName,
} from "./elf-symbols.js";
export { loadBias } from "./load-bias.js";
export { SymbolFile, SymbolFileCache } from "./symbol-file.js";
export { symbolError, isSymbolError } from "./errors.js";
export type { SymbolError, SymbolErrorCode, SymbolErrorDetail } from "./errors.js";
