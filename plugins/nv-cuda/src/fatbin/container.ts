/**
 * The fat binary container nvcc embeds in `.nv_fatbin` (the blob `__nv_fatbin`
 * that `__cudaRegisterFatBinary` receives through the wrapper in
 * `.nvFatBinSegment`). Layout, little-endian, as nvcc 13 writes it:
 *
 *   container header (16 bytes): u32 magic 0xBA55ED50, u16 version (1),
 *     u16 header size (16), u64 size of the entries that follow.
 *   entry header (64 bytes for ELF, 80 for PTX; `header size` says which):
 *     +0  u16 kind (1 PTX, 2 ELF)      +2  u16 entry version (0x0101)
 *     +4  u32 header size              +8  u64 payload size (padded)
 *     +16 u32 compressed size (0 when stored)
 *     +20 u32 (64 in every entry seen: not interpreted)
 *     +24 u16 minor, +26 u16 major: the PTX ISA version (ELF: the cubin's)
 *     +28 u32 arch (90 for sm_90)
 *     +32 u32 name offset, +36 u32 name length (0 in nvcc's output)
 *     +40 u64 flags: 0x1 64-bit, 0x2 debug, 0x10 Linux, 0x2000 LZ (speed),
 *         0x8000 zstd (default mode)
 *     +48 u64 (0)   +56 u64 uncompressed size (0 when stored)
 *   the payload follows the entry header; the next entry follows the payload.
 * A section may hold several containers back to back (one per translation
 * unit), each aligned to 8 bytes.
 */
import { decompress as zstdDecompress } from "fzstd";
import { FatbinError } from "./errors.js";
import { decompressNvLz } from "./lz.js";

export const FATBIN_MAGIC = 0xba55ed50;
export const FATBIN_HEADER_SIZE = 16;
export const ENTRY_MIN_HEADER_SIZE = 64;
export const FATBIN_FLAG_64BIT = 0x1n;
export const FATBIN_FLAG_DEBUG = 0x2n;
export const FATBIN_FLAG_LINUX = 0x10n;
export const FATBIN_FLAG_COMPRESS_LZ = 0x2000n;
export const FATBIN_FLAG_COMPRESS_ZSTD = 0x8000n;
/** Refuse entries that claim to grow past this when decompressed (no PTX module is near it). */
export const MAX_UNCOMPRESSED = 512 * 1024 * 1024;
/**
 * The most output one stored byte can give, per compression: an entry that
 * claims more is refused before its output buffer is allocated (a few bytes
 * must not cost 512 MiB). LZ: a sequence of n input bytes gives at most
 * 255 n (each match-length byte adds 255; literals are copied 1:1). zstd: a
 * block gives at most 128 KiB and takes at least 3 bytes (an RLE block: a
 * 3-byte header and 1 byte), so below 2^16 per byte.
 */
export const MAX_EXPANSION: Readonly<Record<"lz" | "zstd", number>> = Object.freeze({ lz: 255, zstd: 1 << 16 });

export type FatbinEntryKind = "ptx" | "elf";
export type FatbinCompression = "none" | "lz" | "zstd";

export interface FatbinEntry {
  /** Position of the entry: container index and entry index inside it ("container 0 entry 2"). */
  readonly where: string;
  readonly kind: FatbinEntryKind;
  /** sm_XX: 90 for sm_90. */
  readonly arch: number;
  /** PTX ISA version of a PTX entry ("9.0"); the cubin's for an ELF one. */
  readonly version: { readonly major: number; readonly minor: number };
  readonly flags: bigint;
  readonly compression: FatbinCompression;
  /** Byte offset of the entry header inside the bytes given to parseFatbin. */
  readonly offset: number;
  readonly headerSize: number;
  /** The stored payload (compressed or not), bounded by the entry. */
  readonly payload: Uint8Array;
  /** Size once decompressed (payload size when stored). */
  readonly uncompressedSize: number;
}

export interface Fatbin {
  readonly containers: number;
  readonly entries: readonly FatbinEntry[];
  /** Bytes the containers cover from the start (the rest, if any, is padding). */
  readonly size: number;
}

export interface ParseFatbinOptions {
  /** Names the input in errors ("vec_add: .nv_fatbin"). */
  readonly what?: string;
  /** Parse only the container at the start (a `__nv_fatbin` blob given by address), not the ones after it. */
  readonly single?: boolean;
}

/** Parses every container in `bytes` (a `.nv_fatbin` section or one blob). */
export function parseFatbin(bytes: Uint8Array, options: ParseFatbinOptions = {}): Fatbin {
  const what = options.what ?? "fat binary";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: (FatbinEntry & { paddedSize: number })[] = [];
  let pos = 0;
  let containers = 0;
  while (pos + 4 <= bytes.length) {
    if (view.getUint32(pos, true) !== FATBIN_MAGIC) {
      if (containers === 0) {
        throw new FatbinError("FATBIN_INVALID", `${what}: container 0: magic is 0x${view.getUint32(pos, true).toString(16)}, not 0xba55ed50`);
      }
      // Between containers: zero padding only.
      if (view.getUint32(pos, true) !== 0) {
        throw new FatbinError("FATBIN_INVALID", `${what}: container ${containers}: magic at byte ${pos} is 0x${view.getUint32(pos, true).toString(16)}, not 0xba55ed50`);
      }
      pos += 4;
      continue;
    }
    const c = `${what}: container ${containers}`;
    if (pos + FATBIN_HEADER_SIZE > bytes.length) {
      throw new FatbinError("FATBIN_INVALID", `${c}: header (16 bytes at ${pos}) is truncated: ${bytes.length - pos} bytes left`);
    }
    const version = view.getUint16(pos + 4, true);
    const headerSize = view.getUint16(pos + 6, true);
    const fatSize = view.getBigUint64(pos + 8, true);
    if (version !== 1) throw new FatbinError("FATBIN_UNSUPPORTED", `${c}: version is ${version}, only 1 is known`);
    if (headerSize < FATBIN_HEADER_SIZE || pos + headerSize > bytes.length) {
      throw new FatbinError("FATBIN_INVALID", `${c}: header size ${headerSize} is out of bounds (at least 16, ${bytes.length - pos} bytes left)`);
    }
    const start = pos + headerSize;
    if (fatSize > BigInt(bytes.length - start)) {
      throw new FatbinError("FATBIN_INVALID", `${c}: fat size ${fatSize} runs past the end of the data (${bytes.length - start} bytes after the header)`);
    }
    const end = start + Number(fatSize);
    let e = start;
    let index = 0;
    while (e < end) {
      const entry = parseEntry(bytes, view, e, end, `${c} entry ${index}`);
      entries.push(entry);
      e += entry.headerSize + entry.paddedSize;
      index++;
    }
    containers++;
    pos = end;
    if (options.single) break;
  }
  if (containers === 0) throw new FatbinError("FATBIN_INVALID", `${what}: no container (${bytes.length} bytes)`);
  return { containers, entries: entries.map(({ paddedSize: _p, ...rest }) => rest), size: pos };
}

function parseEntry(bytes: Uint8Array, view: DataView, at: number, end: number, where: string): FatbinEntry & { paddedSize: number } {
  if (at + ENTRY_MIN_HEADER_SIZE > end) {
    throw new FatbinError("FATBIN_INVALID", `${where}: header (64 bytes at ${at}) is truncated: ${end - at} bytes left in the container`);
  }
  const kindId = view.getUint16(at, true);
  const headerSize = view.getUint32(at + 4, true);
  const size = view.getBigUint64(at + 8, true);
  const compressedSize = view.getUint32(at + 16, true);
  const minor = view.getUint16(at + 24, true);
  const major = view.getUint16(at + 26, true);
  const arch = view.getUint32(at + 28, true);
  const flags = view.getBigUint64(at + 40, true);
  const uncompressed = view.getBigUint64(at + 56, true);
  if (kindId !== 1 && kindId !== 2) throw new FatbinError("FATBIN_UNSUPPORTED", `${where}: kind is ${kindId}, not 1 (PTX) or 2 (ELF)`);
  if (headerSize < ENTRY_MIN_HEADER_SIZE || headerSize > end - at) {
    throw new FatbinError("FATBIN_INVALID", `${where}: header size ${headerSize} is out of bounds (64 to ${end - at})`);
  }
  if (size > BigInt(end - at - headerSize)) {
    throw new FatbinError("FATBIN_INVALID", `${where}: payload size ${size} runs past the container (${end - at - headerSize} bytes left)`);
  }
  const paddedSize = Number(size);
  const lz = (flags & FATBIN_FLAG_COMPRESS_LZ) !== 0n;
  const zstd = (flags & FATBIN_FLAG_COMPRESS_ZSTD) !== 0n;
  if (lz && zstd) throw new FatbinError("FATBIN_INVALID", `${where}: flags 0x${flags.toString(16)} name two compressions`);
  const compression: FatbinCompression = lz ? "lz" : zstd ? "zstd" : "none";
  let stored = paddedSize;
  let uncompressedSize = paddedSize;
  if (compression !== "none") {
    if (compressedSize === 0 || compressedSize > paddedSize) {
      throw new FatbinError("FATBIN_INVALID", `${where}: compressed size ${compressedSize} is out of bounds (1 to payload size ${paddedSize})`);
    }
    if (uncompressed === 0n || uncompressed > BigInt(MAX_UNCOMPRESSED)) {
      throw new FatbinError("FATBIN_INVALID", `${where}: uncompressed size ${uncompressed} is out of bounds (1 to ${MAX_UNCOMPRESSED})`);
    }
    const most = BigInt(compressedSize) * BigInt(MAX_EXPANSION[compression]);
    if (uncompressed > most) {
      throw new FatbinError(
        "FATBIN_INVALID",
        `${where}: uncompressed size ${uncompressed} is more than ${compression} can give from compressed size ${compressedSize} (at most ${most})`,
      );
    }
    stored = compressedSize;
    uncompressedSize = Number(uncompressed);
  }
  const start = at + headerSize;
  return {
    where,
    kind: kindId === 1 ? "ptx" : "elf",
    arch,
    version: { major, minor },
    flags,
    compression,
    offset: at,
    headerSize,
    payload: bytes.subarray(start, start + stored),
    uncompressedSize,
    paddedSize,
  };
}

/** The entry's bytes, decompressed (a copy when compressed, a view when stored). */
export function entryData(entry: FatbinEntry): Uint8Array {
  switch (entry.compression) {
    case "none":
      return entry.payload;
    case "lz":
      return decompressNvLz(entry.payload, entry.uncompressedSize, entry.where);
    case "zstd": {
      // The frame header states the content size: it must be the entry's, so the
      // decoder writes into a buffer of exactly that size and cannot be made to grow.
      const declared = zstdContentSize(entry.payload, entry.where);
      if (declared !== undefined && declared !== BigInt(entry.uncompressedSize)) {
        throw new FatbinError("FATBIN_INVALID", `${entry.where}: zstd payload gives ${declared} bytes, the header says ${entry.uncompressedSize}`);
      }
      try {
        return zstdDecompress(entry.payload, new Uint8Array(entry.uncompressedSize));
      } catch (err) {
        throw new FatbinError("FATBIN_INVALID", `${entry.where}: zstd payload is corrupt: ${(err as Error).message}`);
      }
    }
  }
}

/** Frame_Content_Size of a zstd frame (RFC 8878 3.1.1.1), undefined when the frame does not state it. */
export function zstdContentSize(frame: Uint8Array, where: string): bigint | undefined {
  const bad = (field: string): never => {
    throw new FatbinError("FATBIN_INVALID", `${where}: zstd payload is corrupt (${field})`);
  };
  if (frame.length < 5) bad("frame header truncated");
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.getUint32(0, true) !== 0xfd2fb528) bad(`magic 0x${view.getUint32(0, true).toString(16)}`);
  const fhd = frame[4]!;
  const single = (fhd >> 5) & 1;
  const fcsSize = [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
  const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  if (fcsSize === 0) return undefined;
  if (at + fcsSize > frame.length) bad("frame header truncated");
  switch (fcsSize) {
    case 1:
      return BigInt(frame[at]!);
    case 2:
      return BigInt(view.getUint16(at, true) + 256);
    case 4:
      return BigInt(view.getUint32(at, true));
    default:
      return view.getBigUint64(at, true);
  }
}

/** A PTX entry's text: decompressed, up to its first NUL (nvcc pads entries with NULs). */
export function entryPtx(entry: FatbinEntry): string {
  if (entry.kind !== "ptx") throw new FatbinError("FATBIN_UNSUPPORTED", `${entry.where}: is an ELF (cubin) entry, not PTX`);
  const data = entryData(entry);
  let end = data.indexOf(0);
  if (end < 0) end = data.length;
  return Buffer.from(data.buffer, data.byteOffset, end).toString("utf8");
}
