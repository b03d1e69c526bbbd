/**
 * USDT argument specs, as libbpf's usdt.c reads them (parse_usdt_arg, x86-64)
 * and as usdt.bpf.h's bpf_usdt_arg() interprets them. gcc writes one spec per
 * argument into the note, separated by spaces: `SIZE@OPERAND`, where SIZE is
 * the byte size, negative for a signed value, and OPERAND an AT&T operand:
 *   -4@%eax        register                    -> BPF_USDT_ARG_REG
 *   -4@-20(%rbp)   memory at register + offset -> BPF_USDT_ARG_REG_DEREF
 *   8@(%rsp)       memory at register          -> BPF_USDT_ARG_REG_DEREF, offset 0
 *   4@$5, -1@$-1   constant                    -> BPF_USDT_ARG_CONST
 *   -4@counter(%rip), 8@counter+8(%rip)
 *                  a global: libbpf refuses these; here the symbol is looked
 *                  up in the module and the operand becomes memory at the
 *                  probe's ip + (symbol + offset - site), since pt_regs.ip is
 *                  the site's address when the program runs.
 */

export const ARG_CONST = 0;
export const ARG_REG = 1;
export const ARG_REG_DEREF = 2;

/** struct __bpf_usdt_arg_spec, before it is written as bytes. */
export interface ArgSpec {
  /** The text it came from ("-4@-20(%rbp)"), for messages. */
  readonly text: string;
  readonly type: typeof ARG_CONST | typeof ARG_REG | typeof ARG_REG_DEREF;
  /** CONST: the value; REG_DEREF: the offset added to the register. */
  readonly valOff: bigint;
  /** offsetof(struct pt_regs, reg); 0 for constants. */
  readonly regOff: number;
  readonly signed: boolean;
  /** 64 - 8 * size: bits cleared (and sign-extended) to widen to 64 bits. */
  readonly bitshift: number;
}

/** Offsets in struct pt_regs (kernel x86-64 layout, the probe's context). */
const PT_REGS: Record<string, number> = {
  r15: 0, r14: 8, r13: 16, r12: 24, bp: 32, bx: 40, r11: 48, r10: 56, r9: 64, r8: 72,
  ax: 80, cx: 88, dx: 96, si: 104, di: 112, ip: 128, sp: 152,
};

/** Every name of each register, by width (usdt.c's reg_map). */
const REG_NAMES: [string, string[]][] = [
  ["ip", ["rip", "eip"]],
  ["ax", ["rax", "eax", "ax", "al"]],
  ["bx", ["rbx", "ebx", "bx", "bl"]],
  ["cx", ["rcx", "ecx", "cx", "cl"]],
  ["dx", ["rdx", "edx", "dx", "dl"]],
  ["di", ["rdi", "edi", "di", "dil"]],
  ["si", ["rsi", "esi", "si", "sil"]],
  ["bp", ["rbp", "ebp", "bp", "bpl"]],
  ["sp", ["rsp", "esp", "sp", "spl"]],
  ["r8", ["r8", "r8d", "r8w", "r8b"]],
  ["r9", ["r9", "r9d", "r9w", "r9b"]],
  ["r10", ["r10", "r10d", "r10w", "r10b"]],
  ["r11", ["r11", "r11d", "r11w", "r11b"]],
  ["r12", ["r12", "r12d", "r12w", "r12b"]],
  ["r13", ["r13", "r13d", "r13w", "r13b"]],
  ["r14", ["r14", "r14d", "r14w", "r14b"]],
  ["r15", ["r15", "r15d", "r15w", "r15b"]],
];
const REG_OFF = new Map<string, number>(REG_NAMES.flatMap(([reg, names]) => names.map((n) => [n, PT_REGS[reg]!] as [string, number])));

/** An argument string libbpf's rules do not accept (with why). */
export class UsdtArgError extends Error {
  readonly code = "BAD_ARGUMENT";
}

function regOff(name: string, text: string): number {
  const off = REG_OFF.get(name);
  if (off === undefined) throw new UsdtArgError(`argument '${text}': unknown register '%${name}'`);
  return off;
}

/**
 * Resolves a symbol of a `sym(%rip)` operand to its link-time address;
 * undefined when the module has no such symbol.
 */
export type SymbolLookup = (name: string) => bigint | undefined;

const INT = "([-+]?(?:0[xX][0-9a-fA-F]+|\\d+))";
const RE_DEREF = new RegExp(`^${INT}@${INT}?\\(%([a-z0-9]+)\\)$`);
const RE_REG = new RegExp(`^${INT}@%([a-z0-9]+)$`);
const RE_CONST = new RegExp(`^${INT}@\\$${INT}$`);
const RE_SYM_RIP = new RegExp(`^${INT}@([A-Za-z_.$][A-Za-z0-9_.$@]*)(?:([-+])(0[xX][0-9a-fA-F]+|\\d+))?\\(%rip\\)$`);

const toBig = (s: string): bigint => (s.startsWith("-") ? -BigInt(s.slice(1)) : BigInt(s.replace(/^\+/, "")));

/**
 * Parses one spec. `site` (the probe's link-time address) and `lookup` are
 * needed only for `sym(%rip)` operands.
 */
export function parseArg(text: string, site?: bigint, lookup?: SymbolLookup): ArgSpec {
  let m: RegExpExecArray | null;
  let size: number;
  let type: ArgSpec["type"];
  let valOff = 0n;
  let off = 0;
  if ((m = RE_DEREF.exec(text))) {
    size = Number(m[1]);
    type = ARG_REG_DEREF;
    valOff = m[2] === undefined ? 0n : toBig(m[2]);
    off = regOff(m[3]!, text);
  } else if ((m = RE_REG.exec(text))) {
    size = Number(m[1]);
    type = ARG_REG;
    off = regOff(m[2]!, text);
  } else if ((m = RE_CONST.exec(text))) {
    size = Number(m[1]);
    type = ARG_CONST;
    valOff = toBig(m[2]!);
  } else if ((m = RE_SYM_RIP.exec(text))) {
    size = Number(m[1]);
    const symbol = m[2]!;
    if (site === undefined || lookup === undefined) {
      throw new UsdtArgError(`argument '${text}': a symbol relative to %rip needs the module's symbols`);
    }
    const at = lookup(symbol);
    if (at === undefined) throw new UsdtArgError(`argument '${text}': no symbol '${symbol}' in the module`);
    const add = m[4] === undefined ? 0n : (m[3] === "-" ? -1n : 1n) * BigInt(m[4]);
    type = ARG_REG_DEREF;
    off = PT_REGS.ip!;
    valOff = at + add - site;
  } else {
    throw new UsdtArgError(`argument '${text}': not SIZE@%reg, SIZE@OFF(%reg), SIZE@$CONST or SIZE@sym(%rip)`);
  }
  const bytes = Math.abs(size);
  if (bytes !== 1 && bytes !== 2 && bytes !== 4 && bytes !== 8) {
    throw new UsdtArgError(`argument '${text}': size ${size} is not 1, 2, 4 or 8 bytes (signed when negative)`);
  }
  return { text, type, valOff: BigInt.asUintN(64, valOff), regOff: off, signed: size < 0, bitshift: 64 - bytes * 8 };
}

/** Splits a note's argument string ("-4@%eax 8@-16(%rbp)") into specs. */
export function parseArgs(args: string, site?: bigint, lookup?: SymbolLookup): ArgSpec[] {
  const parts = args.trim() === "" ? [] : args.trim().split(/\s+/);
  if (parts.length > MAX_ARGS) {
    throw new UsdtArgError(`'${args}': ${parts.length} arguments, usdt.bpf.h reads at most ${MAX_ARGS}`);
  }
  return parts.map((p) => parseArg(p, site, lookup));
}

/** BPF_USDT_MAX_ARG_CNT in usdt.bpf.h. */
export const MAX_ARGS = 12;
/** sizeof(struct __bpf_usdt_arg_spec) and sizeof(struct __bpf_usdt_spec) on x86-64. */
export const ARG_SPEC_SIZE = 16;
export const SPEC_SIZE = 208;

/** struct __bpf_usdt_spec as the program reads it from __bpf_usdt_specs. */
export function encodeSpec(args: readonly ArgSpec[], usdtCookie: bigint): Buffer {
  const b = Buffer.alloc(SPEC_SIZE);
  args.forEach((a, i) => {
    const o = i * ARG_SPEC_SIZE;
    b.writeBigUInt64LE(a.valOff, o); // val_off
    b.writeUInt32LE(a.type, o + 8); // enum arg_type
    b.writeInt16LE(a.regOff, o + 12); // short reg_off
    b.writeUInt8(a.signed ? 1 : 0, o + 14); // bool arg_signed
    b.writeInt8(a.bitshift, o + 15); // char arg_bitshift
  });
  b.writeBigUInt64LE(BigInt.asUintN(64, usdtCookie), MAX_ARGS * ARG_SPEC_SIZE); // usdt_cookie
  b.writeInt16LE(args.length, MAX_ARGS * ARG_SPEC_SIZE + 8); // arg_cnt
  return b;
}
