/**
 * Where ELF bytes come from. Objects arrive whole (a Uint8Array, read by
 * ByteReader, which is a ByteSource too); executables and libraries are read
 * from their file in pieces, because node is ~100 MB with debug info of which
 * the tables wanted are a few MB.
 */
import fs from "node:fs";
import { ElfFormatError } from "./errors.js";

export interface ByteSource {
  /**
   * `length` bytes at `offset`. Throws (ELF_INVALID, naming `what`) unless
   * all of them are there, so a truncated file never yields short data.
   */
  read(offset: number, length: number, what: string): Uint8Array;
}

/** A file opened for reading at offsets; close() it when done. */
export class FileSource implements ByteSource {
  private constructor(
    private readonly fd: number,
    /** Known only for regular files; /proc and device files report 0. */
    private readonly regularSize: number | undefined,
  ) {}

  /** Throws the fs error (ENOENT, EACCES...) as is: callers word "cannot open" themselves. */
  static open(path: string): FileSource {
    const fd = fs.openSync(path, "r");
    try {
      const st = fs.fstatSync(fd);
      return new FileSource(fd, st.isFile() ? st.size : undefined);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  read(offset: number, length: number, what: string): Uint8Array {
    // Checked against the size first, so a lying header (a count of 2^40
    // entries, an offset past 2^53) is reported instead of allocated or
    // handed to readSync, which throws a RangeError for such positions.
    // Nothing to read is always there, wherever a header says it starts.
    const end = offset + length;
    if (length > 0 && this.regularSize !== undefined && !(Number.isSafeInteger(end) && end <= this.regularSize)) {
      throw truncated(offset, length, what);
    }
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    if (got < length) throw truncated(offset, length, what);
    return buf;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function truncated(offset: number, length: number, what: string): ElfFormatError {
  return new ElfFormatError("ELF_INVALID", `truncated (${what} at offset ${offset}, ${length} bytes)`, { what, offset, length });
}
