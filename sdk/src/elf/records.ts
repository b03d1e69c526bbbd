/** Tables of fixed-size records (section headers, program headers): fetched in one read, decoded one by one. */
import { ByteReader } from "./byte-reader.js";
import type { ByteSource } from "./byte-source.js";

/**
 * Reads `count` records of `size` bytes at `offset` and decodes each with
 * `decode(reader, at)`; `what` names the table in the error when it is not
 * all there. The table is fetched whole first, so decoding never fails.
 */
export function readRecords<T>(
  source: ByteSource,
  offset: number,
  count: number,
  size: number,
  what: string,
  decode: (r: ByteReader, at: number) => T,
): T[] {
  const r = new ByteReader(source.read(offset, count * size, what));
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(decode(r, i * size));
  return out;
}
