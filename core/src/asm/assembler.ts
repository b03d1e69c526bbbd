/**
 * Text to instructions, in the `-- asm` dialect of the bpf_conformance suite:
 *
 *   # comment                      blank lines and comments anywhere
 *   loop:                          a label (may also prefix a statement)
 *   mov %r0, 1                     ALU: add sub mul div sdiv mod smod or and
 *   add32 %r1, %r2                   xor lsh rsh arsh mov neg, "32" = 32-bit
 *   movsx832 %r0, %r1              sign-extending move (8/16/32 into 32/64)
 *   le16 %r0 / be32 %r0 / bswap64  byte order (swapN is bswapN)
 *   lddw %r0, 0x1122334455667788   64-bit constant (two slots)
 *   ldxw %r0, [%r1+4]              loads; ldxsb/ldxsh/ldxsw sign-extend
 *   stw [%r10-4], 1 / stxdw [%r10-8], %r1
 *   lock fetch add32 [%r1+0], %r2  atomics: add or and xor xchg cmpxchg
 *   jeq %r1, 5, label / ja +2      jumps: a label or a signed slot offset
 *   ja32 label                     32-bit offset in imm (gotol)
 *   call 5 / call local f / call %r2
 *   exit
 *   .raw 0x0000000000000095        one slot as a `-- raw` u64
 *
 * As in the suite, a jump to `exit` with no label of that name lands on the
 * first exit instruction.
 */
import { BpfhookError } from "../errors.js";
import { encodeInsns, type Insn } from "./insn.js";
import { Op } from "./opcodes.js";
import { isLabelName, OperandError } from "./operands.js";
import { encodeStatement, type Statement } from "./statement.js";

export interface AssembleOptions {
  /** Number of the first line of `source`, when it is a section of a larger file. */
  firstLine?: number;
  /** File name for error messages. */
  file?: string;
}

interface Placed {
  pc: number;
  line: number;
  text: string;
  statement: Statement;
}

function syntaxError(opts: AssembleOptions, line: number, text: string, why: string): BpfhookError {
  const where = opts.file === undefined ? `line ${line}` : `${opts.file}:${line}`;
  return new BpfhookError("ASM_SYNTAX", `${where}: ${why}: '${text}'`, {
    line,
    ...(opts.file === undefined ? {} : { file: opts.file }),
  });
}

/** Drops a trailing "# ..." comment. No operand contains '#', so the first one starts it. */
function stripComment(raw: string): string {
  const hash = raw.indexOf("#");
  return (hash < 0 ? raw : raw.slice(0, hash)).trim();
}

export function assemble(source: string, opts: AssembleOptions = {}): Insn[] {
  const first = opts.firstLine ?? 1;
  const labels = new Map<string, number>();
  const placed: Placed[] = [];
  let pc = 0;
  let firstExit: number | undefined;

  source.split(/\r?\n/).forEach((raw, index) => {
    const line = first + index;
    let text = stripComment(raw);
    const label = /^([^\s:]+):\s*(.*)$/.exec(text);
    if (label) {
      const name = label[1]!;
      if (!isLabelName(name)) throw syntaxError(opts, line, raw.trim(), `invalid label name '${name}'`);
      if (labels.has(name)) throw syntaxError(opts, line, raw.trim(), `duplicate label '${name}'`);
      labels.set(name, pc);
      text = label[2]!;
    }
    if (text === "") return;
    let statement: Statement;
    try {
      statement = encodeStatement(text);
    } catch (e) {
      if (e instanceof OperandError) throw syntaxError(opts, line, raw.trim(), e.message);
      throw e;
    }
    if (firstExit === undefined && statement.insns[0]!.opcode === Op.EXIT) firstExit = pc;
    placed.push({ pc, line, text: raw.trim(), statement });
    pc += statement.insns.length;
  });

  const out: Insn[] = [];
  for (const p of placed) {
    const [head, ...tail] = p.statement.insns.map((i) => ({ ...i }));
    const fix = p.statement.target;
    if (fix) {
      let rel: number;
      if (fix.target.kind === "rel") {
        rel = fix.target.rel;
      } else {
        const name = fix.target.name;
        const at = labels.get(name) ?? (name === "exit" ? firstExit : undefined);
        if (at === undefined) throw syntaxError(opts, p.line, p.text, `undefined label '${name}'`);
        rel = at - p.pc - 1;
        if (fix.field === "off" && (rel < -32768 || rel > 32767)) {
          throw syntaxError(opts, p.line, p.text, `label '${name}' is ${rel} slots away, beyond a 16-bit offset`);
        }
      }
      head![fix.field] = rel;
    }
    out.push(head!, ...tail);
  }
  return out;
}

/** assemble() straight to the bytes the VM loads. */
export function assembleBytes(source: string, opts: AssembleOptions = {}): Buffer {
  return encodeInsns(assemble(source, opts));
}
