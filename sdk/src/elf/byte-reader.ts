/**
 * Bounds-checked little-endian reads over one region of a buffer. Every ELF
 * and BTF parser reads through this, so a truncated or lying file ends in one
 * clear error instead of a RangeError or a silent `undefined`.
 */
import type { ByteSource } from "./byte-source.js";
import { ElfFormatError, type ElfProblemDetail } from "./errors.js";

/**
 * Called when a read falls outside the region, with a description such as
 * "st_value (value 18446744073709551615 too large)" or "e_shoff (bytes 40..48
 * of 30)". It must throw; callers pass one to word the error their way.
 */
export type OutOfBounds = (description: string, detail: ElfProblemDetail) => never;

const throwInvalid: OutOfBounds = (description, detail) => {
  throw new ElfFormatError("ELF_INVALID", description, detail);
};

export class ByteReader implements ByteSource {
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    /** By default an ElfFormatError (ELF_INVALID) with the description as its message. */
    private readonly onOutOfBounds: OutOfBounds = throwInvalid,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.byteLength;
  }

  /** Throws unless [offset, offset + size) lies inside the region. */
  check(offset: number, size: number, what: string): void {
    if (!Number.isInteger(offset) || offset < 0 || size < 0 || offset + size > this.bytes.byteLength) {
      this.onOutOfBounds(`${what} (bytes ${offset}..${offset + size} of ${this.bytes.byteLength})`, { what, offset, length: size });
    }
  }

  u8(offset: number, what = "u8"): number {
    this.check(offset, 1, what);
    return this.view.getUint8(offset);
  }

  u16(offset: number, what = "u16"): number {
    this.check(offset, 2, what);
    return this.view.getUint16(offset, true);
  }

  u32(offset: number, what = "u32"): number {
    this.check(offset, 4, what);
    return this.view.getUint32(offset, true);
  }

  i32(offset: number, what = "i32"): number {
    this.check(offset, 4, what);
    return this.view.getInt32(offset, true);
  }

  u64big(offset: number, what = "u64"): bigint {
    this.check(offset, 8, what);
    return this.view.getBigUint64(offset, true);
  }

  /** A 64-bit field used as an offset or size: see safeNumber. */
  u64(offset: number, what = "u64"): number {
    return this.safeNumber(this.u64big(offset, what), what);
  }

  /**
   * A 64-bit value (read here or decoded elsewhere) as a number. Values past
   * 2^53 cannot be offsets into a buffer we hold, so they are reported as out
   * of bounds.
   */
  safeNumber(value: bigint, what: string): number {
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) this.onOutOfBounds(`${what} (value ${value} too large)`, { what });
    return Number(value);
  }

  i64(offset: number, what = "i64"): bigint {
    this.check(offset, 8, what);
    return this.view.getBigInt64(offset, true);
  }

  /** The bytes of [offset, offset + length), a view (no copy); the ByteSource side of a reader. */
  read(offset: number, length: number, what: string): Uint8Array {
    this.check(offset, length, what);
    return this.bytes.subarray(offset, offset + length);
  }

  /** A sub-region; reads through it are checked against its own bounds. */
  slice(offset: number, size: number, what: string): ByteReader {
    return new ByteReader(this.read(offset, size, what), this.onOutOfBounds);
  }

  /** NUL-terminated string starting at offset; the NUL must be inside the region. */
  cstring(offset: number, what = "string"): string {
    this.check(offset, 0, what);
    const end = this.bytes.indexOf(0, offset);
    if (end < 0) this.onOutOfBounds(`${what} (no terminating NUL)`, { what, offset });
    return utf8.decode(this.bytes.subarray(offset, end));
  }
}

const utf8 = new TextDecoder("utf-8");
