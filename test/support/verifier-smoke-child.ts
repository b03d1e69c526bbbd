/**
 * Child process of test 39: random straight-line-and-branch programs over
 * the context, the stack and registers; each one the verifier accepts runs
 * in checked mode (must not fault: the verifier promised it stays in
 * bounds) and in fast mode in the interpreter and the JIT (same r0, same
 * context bytes: the verifier refuses what the backends may legitimately
 * disagree on). Fast mode runs here, in a child, because an unsound
 * acceptance may crash the process. Prints one JSON line; exits 1 on the
 * first disagreement with the program's disassembly on stderr.
 *
 *   node verifier-smoke-child.js <seed> <count>
 */
import { disassemble, encodeInsns, insn, loadProgram, type Insn } from "@bpfhook/core";
import { standardHelpers, verifyProgram } from "@bpfhook/core/dist/verifier/index.js";

const [seedArg, countArg] = process.argv.slice(2);
let s = Number(seedArg ?? 1) >>> 0 || 1;
const rnd = (n: number): number => {
  s ^= s << 13;
  s >>>= 0;
  s ^= s >>> 17;
  s ^= s << 5;
  s >>>= 0;
  return s % n;
};
const pick = <T>(a: readonly T[]): T => a[rnd(a.length)]!;

const ALU = [0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x57, 0x5f, 0x67, 0x6f, 0x77, 0x7f, 0x87, 0x97, 0x9f, 0xa7, 0xaf, 0xb7, 0xbf, 0xc7, 0xcf, 0xd4, 0xdc, 0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c, 0x84, 0x94, 0x9c, 0xa4, 0xac, 0xb4, 0xbc, 0xc4, 0xcc];
const LOADS = [0x61, 0x69, 0x71, 0x79];
const STORES = [0x62, 0x6a, 0x72, 0x7a, 0x63, 0x6b, 0x73, 0x7b];
const JUMPS = [0x15, 0x1d, 0x25, 0x2d, 0x35, 0x45, 0x55, 0x5d, 0x65, 0xa5, 0xb5, 0xc5, 0xd5, 0x16, 0x26, 0x56, 0xa6, 0xb6, 0xc6];
const VALUE_REGS = [0, 2, 3, 4, 5, 7, 8, 9];
const BASES = [1, 6, 10]; // ctx, fp-64, fp
const OFFS = [-8, -16, -4, 0, 4, 8, 60, -64, 2];
const IMMS = [0, 1, -1, 3, 7, 8, 16, 63, 64, 0x1000, -8];

function generate(): Insn[] {
  const p: Insn[] = [];
  for (const r of VALUE_REGS) p.push(insn(0xb7, r, 0, 0, rnd(40) - 8));
  p.push(insn(0xbf, 6, 10), insn(0x07, 6, 0, 0, -64), insn(0x7a, 10, 0, -8, 1), insn(0x7a, 10, 0, -16, 2));
  const base = p.length;
  const len = 4 + rnd(14);
  for (let i = 0; i < len; i++) {
    const k = rnd(10);
    if (k < 5) {
      const op = pick(ALU);
      const x = (op & 8) !== 0;
      const aluOp = op & 0xf0;
      const i0 = insn(op, pick(VALUE_REGS), x ? pick([...VALUE_REGS, 1, 6, 10]) : 0, 0, pick(IMMS));
      if (aluOp === 0xd0) {
        i0.src = 0;
        i0.imm = pick([16, 32, 64]);
        if ((op & 7) === 7) i0.opcode &= ~8;
      }
      if ((aluOp === 0x30 || aluOp === 0x90) && !x && i0.imm === 0) i0.imm = 3;
      if (aluOp === 0x80) i0.src = 0;
      p.push(i0);
    } else if (k < 7) {
      p.push(insn(pick(LOADS), pick(VALUE_REGS), pick(BASES), pick(OFFS)));
    } else if (k < 8) {
      const op = pick(STORES);
      p.push(insn(op, pick(BASES), (op & 7) === 3 ? pick(VALUE_REGS) : 0, pick(OFFS), rnd(5)));
    } else {
      const op = pick(JUMPS);
      const back = rnd(4) === 0 ? rnd(i + 1) : 0;
      p.push(insn(op, pick(VALUE_REGS), (op & 8) !== 0 ? pick(VALUE_REGS) : 0, rnd(len - i + 1) - 1 - back, pick([0, 1, 5, 100, -1])));
    }
  }
  p.push(insn(0x95));
  for (let i = base; i < p.length - 1; i++) {
    const j = p[i]!;
    const cls = j.opcode & 7;
    if (cls !== 5 && cls !== 6) continue;
    const t = i + 1 + j.off;
    if (t < base) j.off = base - i - 1;
    if (t >= p.length) j.off = p.length - i - 2;
  }
  return p;
}

const count = Number(countArg ?? 1000);
const helpers = standardHelpers();
const context = { name: "smoke", size: 64, writable: [{ offset: 0, size: 64 }] };
let accepted = 0;
for (let n = 0; n < count; n++) {
  const code = encodeInsns(generate());
  const r = verifyProgram("smoke", code, { maps: [], context, helpers, maxInsnsProcessed: 50_000 });
  if (!r.ok) continue;
  accepted++;
  const fail = (what: string): never => {
    process.stderr.write(`${what}\n${disassemble(code)}\n`);
    process.exit(1);
  };
  const buf = Buffer.alloc(64, 7);
  const runs: [bigint, Buffer][] = [];
  for (const [checked, backend] of [[true, "interpreter"], [false, "interpreter"], [false, "jit"]] as const) {
    buf.fill(7);
    const vm = loadProgram(code, { checked, budget: 100_000 });
    try {
      runs.push([vm.exec(buf, backend), Buffer.from(buf)]);
    } catch (e) {
      fail(`accepted program failed in ${checked ? "checked" : "fast"} ${backend}: ${(e as Error).message}`);
    } finally {
      vm.close();
    }
  }
  for (const [r0, bytes] of runs.slice(1)) {
    if (r0 !== runs[0]![0] || !bytes.equals(runs[0]![1])) fail(`backends disagree: r0 ${runs.map((x) => x[0]).join(" / ")}`);
  }
}
process.stdout.write(`${JSON.stringify({ generated: count, accepted })}\n`);
