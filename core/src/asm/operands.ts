/**
 * Readers for single operands: registers, integers, memory references and
 * jump targets. They throw OperandError with a bare message; the assembler
 * adds the line number and text, so these stay free of source positions.
 */

export class OperandError extends Error {}

/** A jump or call target: a relative slot count or a label to resolve later. */
export type Target = { kind: "rel"; rel: number } | { kind: "label"; name: string };

export interface MemRef {
  reg: number;
  off: number;
}

const INT_RE = /^[+-]?(0x[0-9a-f]+|[0-9]+)$/i;
const LABEL_RE = /^[A-Za-z_.$][\w.$]*$/;

/**
 * "%r0".."%r15" (the "%" is optional). The field has 4 bits: r11-r15 encode,
 * and rejecting them is the VM validator's job, so negative tests can be written.
 */
export function parseReg(text: string): number {
  const m = /^%?r(\d+)$/.exec(text);
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 0 && n <= 15)) throw new OperandError(`expected a register %r0-%r10, got '${text}'`);
  return n;
}

export function isReg(text: string): boolean {
  return /^%?r\d+$/.test(text);
}

export function parseInt64(text: string): bigint {
  if (!INT_RE.test(text)) throw new OperandError(`expected an integer, got '${text}'`);
  const negative = text.startsWith("-");
  const digits = text.replace(/^[+-]/, "");
  const magnitude = BigInt(digits);
  return negative ? -magnitude : magnitude;
}

/** An integer in [min, max], which the caller picks to allow u32 or s32 spellings. */
export function parseIntIn(text: string, min: bigint, max: bigint, what: string): bigint {
  const v = parseInt64(text);
  if (v < min || v > max) throw new OperandError(`${what} ${text} out of range [${min}, ${max}]`);
  return v;
}

/**
 * A 32-bit immediate. Both signed and unsigned spellings are accepted
 * (`-1` and `0xffffffff` encode the same) because the suite writes both.
 */
export function parseImm32(text: string): number {
  return Number(BigInt.asIntN(32, parseIntIn(text, -(1n << 31n), (1n << 32n) - 1n, "immediate")));
}

/** A 64-bit immediate (lddw), signed or unsigned spelling. */
export function parseImm64(text: string): bigint {
  return BigInt.asUintN(64, parseIntIn(text, -(1n << 63n), (1n << 64n) - 1n, "immediate"));
}

/** "[%r1+4]", "[%r10-8]", "[%r1]", "[%r1 + 0x10]". */
export function parseMem(text: string): MemRef {
  const m = /^\[\s*(%?r\d+)\s*(?:([+-])\s*(0x[0-9a-f]+|[0-9]+)\s*)?\]$/i.exec(text);
  if (!m) throw new OperandError(`expected a memory reference like [%r1+8], got '${text}'`);
  const reg = parseReg(m[1]!);
  const off = m[2] === undefined ? 0n : parseInt64(`${m[2]}${m[3]}`);
  if (off < -32768n || off > 32767n) throw new OperandError(`offset ${off} out of range [-32768, 32767]`);
  return { reg, off: Number(off) };
}

/** "+3", "-1", or a label name. `bits` is the width of the field it lands in. */
export function parseTarget(text: string, bits: 16 | 32): Target {
  if (/^[+-]/.test(text)) {
    const limit = 1n << BigInt(bits - 1);
    return { kind: "rel", rel: Number(parseIntIn(text, -limit, limit - 1n, "jump offset")) };
  }
  if (LABEL_RE.test(text)) return { kind: "label", name: text };
  throw new OperandError(`expected a label or a signed offset like +2, got '${text}'`);
}

export function isLabelName(text: string): boolean {
  return LABEL_RE.test(text);
}
