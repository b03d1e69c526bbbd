/**
 * The attach cookie (bpf_get_attach_cookie's value) is a u64, as the kernel's
 * and libbpf's: an integer in [0, 2^64) given as a number, a bigint or a
 * decimal string. Anything else is a BAD_ARGUMENT naming the program, never
 * a RangeError / SyntaxError from BigInt() or a value silently wrapped.
 */
import { BpfhookError } from "../errors.js";

const U64_MAX = (1n << 64n) - 1n;

export function parseCookie(value: unknown, program: string): bigint {
  if (value === undefined) return 0n;
  let cookie: bigint | undefined;
  if (typeof value === "bigint") cookie = value;
  // Integers above 2^53 are still exact integers; only fractions, NaN and infinities are not.
  else if (typeof value === "number" && Number.isInteger(value)) cookie = BigInt(value);
  else if (typeof value === "string" && /^[0-9]{1,20}$/.test(value)) cookie = BigInt(value);
  if (cookie === undefined || cookie < 0n || cookie > U64_MAX) {
    const shown = typeof value === "bigint" ? `${value}n` : typeof value === "string" ? JSON.stringify(value) : typeof value === "number" || value === null ? String(value) : typeof value;
    throw new BpfhookError(
      "BAD_ARGUMENT",
      `prog '${program}': attach option 'cookie' must be an integer in 0..2^64-1 (a number, bigint or decimal string), got ${shown}`,
      { symbol: program },
    );
  }
  return cookie;
}
