/**
 * Helpers for plugins' encode(): private data crosses the C ABI as bytes the
 * native piece decodes. These write little-endian fixed layouts that C can
 * read as a packed struct, and NUL-terminated strings.
 */
/**
 * Builds a plugin's private data for its native piece: little-endian
 * fields appended in order, `finish()` gives the bytes.
 *
 * @example
 * ```ts
 * encode: ({ data }) => new StructWriter().u64(data.address).u32(data.flags).cstring(data.name).finish()
 * ```
 */
export class StructWriter {
  private readonly parts: Buffer[] = [];
  private length = 0;

  /** Appends a u32 (the low 32 bits of `v`). */
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.push(b);
  }
  /** Appends an i32. */
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v | 0);
    return this.push(b);
  }
  /** Appends a u64 (negative values as their two's complement). */
  u64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)));
    return this.push(b);
  }
  /** A string as a fixed-size NUL-padded field; throws if it does not fit. */
  fixedString(s: string, size: number): this {
    const raw = Buffer.from(s, "utf8");
    if (raw.length >= size) throw new RangeError(`string '${s}' is longer than ${size - 1} bytes`);
    const b = Buffer.alloc(size);
    raw.copy(b);
    return this.push(b);
  }
  /** A NUL-terminated string of any length (for a trailing field). */
  cstring(s: string): this {
    return this.push(Buffer.concat([Buffer.from(s, "utf8"), Buffer.alloc(1)]));
  }
  /** Pads to a multiple of `n` bytes. */
  align(n: number): this {
    const pad = (n - (this.length % n)) % n;
    return pad ? this.push(Buffer.alloc(pad)) : this;
  }
  /** The bytes written so far. */
  finish(): Uint8Array {
    return Buffer.concat(this.parts, this.length);
  }
  private push(b: Buffer): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }
}
