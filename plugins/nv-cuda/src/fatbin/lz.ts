/**
 * The decoder of nvcc's `--compress-mode=speed` entries (flag 0x2000). Worked
 * out from nvcc 13 output: a sequence of LZ4-block-style tokens. Each token
 * byte holds the literal count in its high nibble and the match length minus
 * 4 in its low nibble; a nibble of 15 continues in following bytes (each added,
 * until one is not 255). The literals follow, then (unless the input ends) a
 * 16-bit little-endian back offset, then the match length's extra bytes.
 * Every read and write is bounded: the output never grows past `expected`.
 */
import { FatbinError } from "./errors.js";

export function decompressNvLz(input: Uint8Array, expected: number, what: string): Uint8Array {
  const out = new Uint8Array(expected);
  let ip = 0;
  let op = 0;
  const fail = (field: string): never => {
    throw new FatbinError("FATBIN_INVALID", `${what}: LZ stream is corrupt (${field} at input byte ${ip}, output byte ${op})`);
  };
  const byte = (field: string): number => {
    if (ip >= input.length) fail(field);
    return input[ip++]!;
  };
  while (ip < input.length) {
    const token = input[ip++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b: number;
      do {
        b = byte("literal length");
        literals += b;
      } while (b === 255);
    }
    if (ip + literals > input.length) fail("literals past the end of the input");
    if (op + literals > expected) fail("literals past the uncompressed size");
    out.set(input.subarray(ip, ip + literals), op);
    ip += literals;
    op += literals;
    if (ip >= input.length) break; // the last sequence has literals only
    const offset = byte("match offset") | (byte("match offset") << 8);
    let length = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        b = byte("match length");
        length += b;
      } while (b === 255);
    }
    if (offset === 0 || offset > op) fail(`match offset ${offset}`);
    if (op + length > expected) fail("match past the uncompressed size");
    // Overlapping copies repeat the last `offset` bytes: copy byte by byte.
    for (let i = 0; i < length; i++, op++) out[op] = out[op - offset]!;
  }
  if (op !== expected) {
    throw new FatbinError("FATBIN_INVALID", `${what}: LZ stream gives ${op} bytes, the header says ${expected}`);
  }
  return out;
}
