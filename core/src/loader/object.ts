/**
 * loadObject: from a clang-built eBPF object to programs and map specs. Each
 * step lives in its own module; this one only decides their order.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from "node:fs";
import { BpfhookError } from "../errors.js";
import { applyDataRelocations, Btf } from "./btf.js";
import { parseCoreRelocations, type CoreRelocation } from "./btf-ext.js";
import { LoadContext } from "./context.js";
import { parseElf, type ElfFile } from "./elf.js";
import { collectFunctions } from "./functions.js";
import { indexCoreRelocations, Linker } from "./linker.js";
import { collectExterns } from "./externs.js";
import { collectMaps } from "./maps.js";
import { RelocationResolver } from "./relocations.js";
import type { BpfObject, LoadObjectOptions } from "./types.js";

const LICENSE_SECTION = "license";
const VERSION_SECTION = "version";

export function loadObject(pathOrBuffer: string | Uint8Array, opts: LoadObjectOptions = {}): BpfObject {
  const { bytes, ctx } = open(pathOrBuffer, opts);
  const elf = parseElf(bytes, ctx);
  const btf = readBtf(elf, ctx);
  const core = btf === undefined ? [] : readCoreRelocations(elf, btf, ctx);

  const maps = collectMaps(elf, btf, ctx);
  const externs = collectExterns(elf, btf, maps.specs, opts.kconfig, ctx);
  const functions = collectFunctions(elf, ctx);
  const linker = new Linker(functions, new RelocationResolver(elf, maps, externs, ctx), indexCoreRelocations(core), ctx);

  const object: BpfObject = {
    license: readLicense(elf, ctx),
    programs: functions.programs.map((p) => linker.link(p)),
    maps: maps.specs,
  };
  if (ctx.file !== undefined) object.file = ctx.file;
  // Not enumerable: the object stays plain data for comparisons and JSON.
  if (btf !== undefined) Object.defineProperty(object, "structsOfSize", { value: (size: number) => btf.structsOfSize(size) });
  const version = readVersion(elf, ctx);
  if (version !== undefined) object.kernelVersion = version;
  return object;
}

function open(pathOrBuffer: string | Uint8Array, opts: LoadObjectOptions): { bytes: Uint8Array; ctx: LoadContext } {
  if (typeof pathOrBuffer !== "string") {
    if (!(pathOrBuffer instanceof Uint8Array)) {
      throw new BpfhookError("BAD_ARGUMENT", "loadObject: expected a path or a Uint8Array");
    }
    const ctx = opts.name !== undefined ? new LoadContext(opts.name, opts.name) : new LoadContext("eBPF object");
    return { bytes: pathOrBuffer, ctx };
  }
  const ctx = new LoadContext(pathOrBuffer, pathOrBuffer);
  return { bytes: readRegularFile(pathOrBuffer), ctx };
}

/**
 * The bytes of a regular file. Anything else is refused before a byte is
 * read: /dev/zero would be read forever, a FIFO would block (it is opened
 * non-blocking, so even the open returns at once), a directory has no bytes.
 */
export function readRegularFile(path: string): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new BpfhookError("BAD_ARGUMENT", `${path}: not a regular file (${fileKind(st)}); give an ELF object file`, { file: path });
    }
    return readFileSync(fd);
  } catch (cause) {
    if (cause instanceof BpfhookError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code === "ENOENT" ? "NOT_FOUND" : "BAD_ARGUMENT";
    throw new BpfhookError(code, `${path}: cannot read: ${(cause as Error).message}`, { file: path, cause });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  return "not a file";
}

/** .BTF with its datasec offsets filled in from .rel.BTF; undefined without -g. */
function readBtf(elf: ElfFile, ctx: LoadContext): Btf | undefined {
  const section = elf.sectionByName(".BTF");
  if (section === undefined) return undefined;
  const bytes = applyDataRelocations(section.data, elf.relocations.get(section.index) ?? [], ctx, section.name);
  return Btf.parse(bytes, ctx, section.name);
}

function readCoreRelocations(elf: ElfFile, btf: Btf, ctx: LoadContext): CoreRelocation[] {
  const section = elf.sectionByName(".BTF.ext");
  if (section === undefined) return [];
  const bytes = applyDataRelocations(section.data, elf.relocations.get(section.index) ?? [], ctx, section.name);
  return parseCoreRelocations(bytes, btf, ctx, section.name);
}

function readLicense(elf: ElfFile, ctx: LoadContext): string {
  const section = elf.sectionByName(LICENSE_SECTION);
  if (section === undefined) return "";
  const end = section.data.indexOf(0);
  if (end < 0) ctx.invalid("license is not NUL-terminated", { section: section.name });
  return new TextDecoder().decode(section.data.subarray(0, end));
}

function readVersion(elf: ElfFile, ctx: LoadContext): number | undefined {
  const section = elf.sectionByName(VERSION_SECTION);
  if (section === undefined) return undefined;
  // data, not size: a NOBITS section claims a size but has no bytes in the file.
  if (section.data.length !== 4) {
    ctx.invalid(`version section has ${section.data.length} bytes, expected 4`, { section: section.name });
  }
  return new DataView(section.data.buffer, section.data.byteOffset, 4).getUint32(0, true);
}
