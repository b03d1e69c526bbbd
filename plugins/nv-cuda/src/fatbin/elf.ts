/**
 * Fat binaries of an executable or shared object, found through the SDK's
 * ELF layer: the `.nv_fatbin` section (every container nvcc emitted) and the
 * `.nvFatBinSegment` wrappers that `__cudaRegisterFatBinary` receives
 * (struct { u32 magic 0x466243b1; u32 version; u64 data; u64 filename_or_fatbins; }),
 * whose `data` is the link-time address of one container. Late attach reads
 * the same wrappers in a loaded module's memory.
 */
import { openSync, readSync, closeSync } from "node:fs";
import { readElfImage, type ElfImage, type ElfSection } from "@bpfhook/sdk";
import { FatbinError } from "./errors.js";
import { parseFatbin, type Fatbin } from "./container.js";

export const FATBIN_WRAPPER_MAGIC = 0x466243b1;
export const FATBIN_WRAPPER_SIZE = 24;

export interface FatbinWrapper {
  readonly index: number;
  readonly magic: number;
  readonly version: number;
  /** Link-time address of the container the wrapper names. */
  readonly data: bigint;
  /** The container, parsed (one container from `data` on). */
  readonly fatbin: Fatbin;
}

export interface ElfFatbins {
  readonly path: string;
  /** Every container of `.nv_fatbin`; undefined when the file has none. */
  readonly section?: Fatbin;
  readonly wrappers: readonly FatbinWrapper[];
}

/** Reads `size` bytes of `path` at `offset` (sections come from the SDK's bounded headers). */
function readBytes(path: string, offset: bigint, size: bigint, what: string): Uint8Array {
  if (size > 1n << 31n) throw new FatbinError("FATBIN_INVALID", `${path}: ${what} is ${size} bytes (too large)`);
  const out = Buffer.alloc(Number(size));
  const fd = openSync(path, "r");
  try {
    const got = readSync(fd, out, 0, out.length, Number(offset));
    if (got !== out.length) throw new FatbinError("FATBIN_INVALID", `${path}: ${what} is truncated (${got} of ${out.length} bytes)`);
  } finally {
    closeSync(fd);
  }
  return out;
}

function sectionBytes(image: ElfImage, section: ElfSection): Uint8Array {
  return readBytes(image.path, section.offset, section.size, `section ${section.name}`);
}

/** The raw `.nv_fatbin` section of an ELF file, undefined when it has none. */
export function fatbinSectionBytes(path: string): Uint8Array | undefined {
  const image = readElfImage(path);
  const fatSection = image.sections.find((s) => s.name === ".nv_fatbin");
  return fatSection && fatSection.size > 0n ? sectionBytes(image, fatSection) : undefined;
}

/** The fat binaries of an ELF file; a file without CUDA code gives an empty result, not an error. */
export function findFatbins(path: string): ElfFatbins {
  const image = readElfImage(path);
  // Each section is read once: a library built from many translation units
  // has a wrapper per unit, all pointing into one large .nv_fatbin, and
  // reading from each one to the section's end would be quadratic in its size.
  const read = new Map<ElfSection, Uint8Array>();
  const bytesOf = (sec: ElfSection): Uint8Array => {
    let b = read.get(sec);
    if (b === undefined) read.set(sec, (b = sectionBytes(image, sec)));
    return b;
  };
  const fatSection = image.sections.find((s) => s.name === ".nv_fatbin");
  const section = fatSection && fatSection.size > 0n ? parseFatbin(bytesOf(fatSection), { what: `${path}: .nv_fatbin` }) : undefined;
  const wrappers: FatbinWrapper[] = [];
  const seg = image.sections.find((s) => s.name === ".nvFatBinSegment");
  if (seg && seg.size > 0n) {
    const bytes = bytesOf(seg);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; (i + 1) * FATBIN_WRAPPER_SIZE <= bytes.length; i++) {
      const at = i * FATBIN_WRAPPER_SIZE;
      const magic = view.getUint32(at, true);
      const what = `${path}: .nvFatBinSegment wrapper ${i}`;
      if (magic !== FATBIN_WRAPPER_MAGIC) throw new FatbinError("FATBIN_INVALID", `${what}: magic is 0x${magic.toString(16)}, not 0x466243b1`);
      const data = view.getBigUint64(at + 8, true);
      // The container lies in a section with file contents: find it by address.
      const holder = image.sections.find((s) => s.addr !== 0n && data >= s.addr && data < s.addr + s.size && s.type !== 8 /* NOBITS */);
      if (!holder) throw new FatbinError("FATBIN_INVALID", `${what}: data address 0x${data.toString(16)} is in no section of the file`);
      const blob = bytesOf(holder).subarray(Number(data - holder.addr));
      wrappers.push({ index: i, magic, version: view.getUint32(at + 4, true), data, fatbin: parseFatbin(blob, { what, single: true }) });
    }
  }
  return { path, section, wrappers };
}
