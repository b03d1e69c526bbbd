/**
 * Bounds-checked little-endian reads over one region of a buffer. Every
 * parser in the loader reads through this, so a truncated or lying file ends
 * in one clear error instead of a RangeError or a silent `undefined`.
 */
export class ByteReader {
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    /** Called with a description when a read falls outside the region. */
    private readonly onOutOfBounds: (what: string) => never,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.byteLength;
  }

  /** Throws unless [offset, offset + size) lies inside the region. */
  check(offset: number, size: number, what: string): void {
    if (!Number.isInteger(offset) || offset < 0 || size < 0 || offset + size > this.bytes.byteLength) {
      this.onOutOfBounds(`${what} (bytes ${offset}..${offset + size} of ${this.bytes.byteLength})`);
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

  /**
   * A 64-bit field used as an offset or size. Values past 2^53 cannot be
   * offsets into a buffer we hold, so they are reported as out of bounds.
   */
  u64(offset: number, what = "u64"): number {
    const v = this.u64big(offset, what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.onOutOfBounds(`${what} (value ${v} too large)`);
    return Number(v);
  }

  i64(offset: number, what = "i64"): bigint {
    this.check(offset, 8, what);
    return this.view.getBigInt64(offset, true);
  }

  /** A sub-region; reads through it are checked against its own bounds. */
  slice(offset: number, size: number, what: string): ByteReader {
    this.check(offset, size, what);
    return new ByteReader(this.bytes.subarray(offset, offset + size), this.onOutOfBounds);
  }

  /** NUL-terminated string starting at offset; the NUL must be inside the region. */
  cstring(offset: number, what = "string"): string {
    this.check(offset, 0, what);
    const end = this.bytes.indexOf(0, offset);
    if (end < 0) this.onOutOfBounds(`${what} (no terminating NUL)`);
    return utf8.decode(this.bytes.subarray(offset, end));
  }
}

const utf8 = new TextDecoder("utf-8");
