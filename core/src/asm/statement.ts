/**
 * Encodes one statement (a line without its label and comment) into its
 * instruction slots. Jump and call targets come back unresolved, marked with
 * the field they go in; the assembler resolves labels once it has seen them
 * all. The disassembler also runs its output through here to be sure that
 * what it prints reads back as the same bytes.
 */
import { insn, insnFromU64, type Insn } from "./insn.js";
import {
  ALU_BINARY,
  ATOMIC_OPS,
  ENDIAN_WIDTHS,
  JMP_COND,
  LDDW_PSEUDO,
  LDDW_PSEUDO_WITH_OFFSET,
  MOVSX_FROM,
  SIZES,
} from "./mnemonics.js";
import { AluOp, AtomicOp, CallKind, Cls, JmpOp, Mode, Op, Pseudo, Size, Src } from "./opcodes.js";
import {
  isReg,
  OperandError,
  parseImm32,
  parseImm64,
  parseInt64,
  parseMem,
  parseReg,
  parseTarget,
  type Target,
} from "./operands.js";

export interface Statement {
  insns: Insn[];
  /** A target still to place in insns[0]: `off` for jumps, `imm` for ja32 and calls. */
  target?: { target: Target; field: "off" | "imm" };
}

type Handler = (ops: string[], mnemonic: string) => Statement;

function expectOps(ops: string[], mnemonic: string, usage: string[]): void {
  if (ops.length !== usage.length) {
    const shape = usage.length === 0 ? mnemonic : `${mnemonic} ${usage.join(", ")}`;
    throw new OperandError(`'${mnemonic}' takes ${usage.length} operand(s): ${shape}`);
  }
}

function one(i: Insn): Statement {
  return { insns: [i] };
}

function lddw(dst: number, src: number, lo: number, hi: number): Statement {
  return { insns: [insn(Op.LDDW, dst, src, 0, lo), insn(0, 0, 0, 0, hi)] };
}

function buildHandlers(): Map<string, Handler> {
  const h = new Map<string, Handler>();

  for (const [name, { op, off }] of ALU_BINARY) {
    for (const [suffix, cls] of [["", Cls.ALU64], ["32", Cls.ALU]] as const) {
      h.set(name + suffix, (ops, m) => {
        expectOps(ops, m, ["%dst", "%src|imm"]);
        const dst = parseReg(ops[0]!);
        if (isReg(ops[1]!)) return one(insn(cls | op | Src.X, dst, parseReg(ops[1]!), off));
        return one(insn(cls | op | Src.K, dst, 0, off, parseImm32(ops[1]!)));
      });
    }
  }

  for (const [name, cls] of [["neg", Cls.ALU64], ["neg32", Cls.ALU]] as const) {
    h.set(name, (ops, m) => {
      expectOps(ops, m, ["%dst"]);
      return one(insn(cls | AluOp.NEG | Src.K, parseReg(ops[0]!)));
    });
  }

  for (const from of MOVSX_FROM) {
    for (const into of [32, 64] as const) {
      if (from === 32 && into === 32) continue; // not an instruction: mov32 already is
      const cls = into === 32 ? Cls.ALU : Cls.ALU64;
      h.set(`movsx${from}${into}`, (ops, m) => {
        expectOps(ops, m, ["%dst", "%src"]);
        return one(insn(cls | AluOp.MOV | Src.X, parseReg(ops[0]!), parseReg(ops[1]!), from));
      });
    }
  }

  // le/be convert from host (little-endian) order; bswap swaps always. The
  // suite also spells bswap "swap".
  const endian = [
    ["le", Cls.ALU | AluOp.END | Src.K],
    ["be", Cls.ALU | AluOp.END | Src.X],
    ["bswap", Cls.ALU64 | AluOp.END | Src.K],
    ["swap", Cls.ALU64 | AluOp.END | Src.K],
  ] as const;
  for (const [name, opcode] of endian) {
    for (const width of ENDIAN_WIDTHS) {
      h.set(`${name}${width}`, (ops, m) => {
        expectOps(ops, m, ["%dst"]);
        return one(insn(opcode, parseReg(ops[0]!), 0, 0, width));
      });
    }
  }

  h.set("lddw", (ops, m) => {
    if (ops.length < 2) expectOps(ops, m, ["%dst", "imm64"]);
    const dst = parseReg(ops[0]!);
    const pseudo = /^([a-z_]+)\s+(.+)$/.exec(ops[1]!);
    if (!pseudo) {
      expectOps(ops, m, ["%dst", "imm64"]);
      const v = parseImm64(ops[1]!);
      return lddw(dst, 0, Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
    }
    const src = LDDW_PSEUDO.get(pseudo[1]!);
    if (src === undefined) {
      throw new OperandError(`unknown lddw form '${pseudo[1]}' (${[...LDDW_PSEUDO.keys()].join(", ")})`);
    }
    if (src === Pseudo.FUNC) {
      expectOps(ops, m, ["%dst", "func label"]);
      return { ...lddw(dst, src, 0, 0), target: { target: parseTarget(pseudo[2]!, 32), field: "imm" } };
    }
    const withOffset = LDDW_PSEUDO_WITH_OFFSET.has(src);
    expectOps(ops, m, withOffset ? ["%dst", `${pseudo[1]} imm`, "offset"] : ["%dst", `${pseudo[1]} imm`]);
    return lddw(dst, src, parseImm32(pseudo[2]!), withOffset ? parseImm32(ops[2]!) : 0);
  });

  for (const [suffix, size] of SIZES) {
    h.set(`ldx${suffix}`, (ops, m) => {
      expectOps(ops, m, ["%dst", "[%src+off]"]);
      const mem = parseMem(ops[1]!);
      return one(insn(Cls.LDX | Mode.MEM | size, parseReg(ops[0]!), mem.reg, mem.off));
    });
    if (size !== Size.DW) {
      h.set(`ldxs${suffix}`, (ops, m) => {
        expectOps(ops, m, ["%dst", "[%src+off]"]);
        const mem = parseMem(ops[1]!);
        return one(insn(Cls.LDX | Mode.MEMSX | size, parseReg(ops[0]!), mem.reg, mem.off));
      });
    }
    h.set(`st${suffix}`, (ops, m) => {
      expectOps(ops, m, ["[%dst+off]", "imm"]);
      const mem = parseMem(ops[0]!);
      return one(insn(Cls.ST | Mode.MEM | size, mem.reg, 0, mem.off, parseImm32(ops[1]!)));
    });
    h.set(`stx${suffix}`, (ops, m) => {
      expectOps(ops, m, ["[%dst+off]", "%src"]);
      const mem = parseMem(ops[0]!);
      return one(insn(Cls.STX | Mode.MEM | size, mem.reg, parseReg(ops[1]!), mem.off));
    });
  }

  h.set("ja", (ops, m) => {
    expectOps(ops, m, ["target"]);
    return { insns: [insn(Cls.JMP | JmpOp.JA)], target: { target: parseTarget(ops[0]!, 16), field: "off" } };
  });
  h.set("ja32", (ops, m) => {
    expectOps(ops, m, ["target"]);
    return { insns: [insn(Cls.JMP32 | JmpOp.JA)], target: { target: parseTarget(ops[0]!, 32), field: "imm" } };
  });

  for (const [name, op] of JMP_COND) {
    for (const [suffix, cls] of [["", Cls.JMP], ["32", Cls.JMP32]] as const) {
      h.set(name + suffix, (ops, m) => {
        expectOps(ops, m, ["%dst", "%src|imm", "target"]);
        const dst = parseReg(ops[0]!);
        const target = { target: parseTarget(ops[2]!, 16), field: "off" as const };
        if (isReg(ops[1]!)) return { insns: [insn(cls | op | Src.X, dst, parseReg(ops[1]!))], target };
        return { insns: [insn(cls | op | Src.K, dst, 0, 0, parseImm32(ops[1]!))], target };
      });
    }
  }

  h.set("exit", (ops, m) => {
    expectOps(ops, m, []);
    return one(insn(Op.EXIT));
  });

  // One slot given as the u64 of a `-- raw` line: anything the other forms
  // cannot spell (invalid encodings for validator tests, unused fields set).
  h.set(".raw", (ops, m) => {
    expectOps(ops, m, ["u64"]);
    return one(insnFromU64(BigInt.asUintN(64, parseInt64(ops[0]!))));
  });

  return h;
}

const HANDLERS = buildHandlers();

/** "call 5", "call helper 5", "call local name", "call %r2" (callx, register in dst). */
function encodeCall(rest: string): Statement {
  if (rest === "local" || rest === "helper") {
    throw new OperandError(`'call ${rest}' needs ${rest === "local" ? "a label or +offset" : "a helper id"}`);
  }
  const m = /^(local|helper)\s+(\S+)$/.exec(rest);
  if (m?.[1] === "local") {
    return { insns: [insn(Op.CALL, 0, CallKind.LOCAL)], target: { target: parseTarget(m[2]!, 32), field: "imm" } };
  }
  const operand = m ? m[2]! : rest;
  if (operand === "" || operand.includes(",")) {
    throw new OperandError("'call' takes one operand: call <helper id> | call local <label> | call %reg");
  }
  if (!m && isReg(operand)) return one(insn(Op.CALLX, parseReg(operand)));
  return one(insn(Op.CALL, 0, CallKind.HELPER, 0, parseImm32(operand)));
}

/** "lock [fetch] <op>[32] [%dst+off], %src". */
function encodeAtomic(rest: string): Statement {
  const m = /^(fetch\s+)?([a-z]+?)(32)?\s+(.*)$/.exec(rest);
  const op = m ? ATOMIC_OPS.get(m[2]!) : undefined;
  if (!m || op === undefined) {
    throw new OperandError(
      `expected 'lock [fetch] ${[...ATOMIC_OPS.keys()].join("|")}[32] [%dst+off], %src', got 'lock ${rest}'`,
    );
  }
  const ops = splitOperands(m[4]!);
  expectOps(ops, "lock", ["[%dst+off]", "%src"]);
  const mem = parseMem(ops[0]!);
  // xchg and cmpxchg always fetch; the fetch word is optional for them.
  const imm = m[1] ? op | AtomicOp.FETCH : op;
  const size = m[3] ? Size.W : Size.DW;
  return one(insn(Cls.STX | Mode.ATOMIC | size, mem.reg, parseReg(ops[1]!), mem.off, imm));
}

function splitOperands(rest: string): string[] {
  if (rest.trim() === "") return [];
  return rest.split(",").map((s) => s.trim());
}

/** Encodes `text` (already free of label and comment); throws OperandError. */
export function encodeStatement(text: string): Statement {
  const m = /^(\S+)\s*(.*)$/.exec(text.trim());
  if (!m) throw new OperandError("empty statement");
  const mnemonic = m[1]!.toLowerCase();
  const rest = m[2]!.trim();
  if (mnemonic === "call") return encodeCall(rest);
  if (mnemonic === "lock") return encodeAtomic(rest);
  const handler = HANDLERS.get(mnemonic);
  if (!handler) throw new OperandError(`unknown mnemonic '${m[1]}'`);
  return handler(splitOperands(rest), mnemonic);
}
