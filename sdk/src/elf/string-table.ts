/**
 * A string table section (.shstrtab, .strtab, .dynstr): NUL-terminated
 * names found by offset. Two ways to look one up, because the two readers
 * want different things: the loader refuses a broken object outright
 * (name), the symbol service takes a system library as it finds it
 * (nameOrEmpty).
 */
import { ByteReader, type OutOfBounds } from "./byte-reader.js";

export class StringTable {
  private readonly reader: ByteReader;
  /** The same bytes as a Buffer (a view): its toString is the fastest decoder for the many short names of big tables. */
  private readonly buffer: Buffer;

  /** `onOutOfBounds` words the errors of name(); by default they are ElfFormatErrors. */
  constructor(bytes: Uint8Array, onOutOfBounds?: OutOfBounds) {
    this.reader = new ByteReader(bytes, onOutOfBounds);
    this.buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get bytes(): Uint8Array {
    return this.reader.bytes;
  }

  /** The name at `offset`; throws when it starts outside the table or has no NUL. */
  name(offset: number, what = "string"): string {
    return this.reader.cstring(offset, what);
  }

  /** The name at `offset`: "" when it starts outside the table, the rest of the table when it has no NUL. */
  nameOrEmpty(offset: number): string {
    const buf = this.buffer;
    if (offset >= buf.length) return "";
    const end = buf.indexOf(0, offset);
    return buf.toString("utf8", offset, end < 0 ? buf.length : end);
  }
}
