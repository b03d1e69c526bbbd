/**
 * The mutator: small edits of a program that keep jumps pointing at real
 * instructions. The program is handled as units (an lddw and its second slot
 * are one unit) whose jumps and local calls hold the index of the unit they
 * reach, so inserting or deleting a unit moves every target with it; only
 * the "retarget" and "flip" edits change where control goes, and retarget
 * picks a unit inside the program.
 */
import { insn, type Insn } from "../asm/insn.js";
import { AluOp, CallKind, Cls, JmpOp, Op, Src } from "../asm/opcodes.js";
import { Rng } from "./rng.js";

interface Unit {
  i: Insn;
  hi?: Insn; // lddw's second slot
  /** Unit index this jump / local call goes to. */
  target?: number;
}

const isJump = (i: Insn): boolean => {
  const cls = i.opcode & Cls.MASK;
  if (cls !== Cls.JMP && cls !== Cls.JMP32) return false;
  const op = i.opcode & 0xf0;
  return op !== JmpOp.CALL && op !== JmpOp.EXIT;
};
const isLocalCall = (i: Insn): boolean => i.opcode === Op.CALL && i.src === CallKind.LOCAL;
const gotol = (i: Insn): boolean => i.opcode === (Cls.JMP32 | JmpOp.JA);

function toUnits(insns: readonly Insn[]): Unit[] {
  const units: Unit[] = [];
  const unitOfSlot: number[] = [];
  for (let pc = 0; pc < insns.length; pc++) {
    const i = { ...insns[pc]! };
    unitOfSlot[pc] = units.length;
    if (i.opcode === Op.LDDW && pc + 1 < insns.length) {
      unitOfSlot[pc + 1] = units.length;
      units.push({ i, hi: { ...insns[pc + 1]! } });
      pc++;
    } else units.push({ i });
  }
  let pc = 0;
  for (const u of units) {
    const rel = isLocalCall(u.i) || gotol(u.i) ? u.i.imm : isJump(u.i) ? u.i.off : undefined;
    if (rel !== undefined) {
      const t = pc + rel + 1;
      // A target outside the program or inside an lddw stays as it is (already invalid).
      if (t >= 0 && t < insns.length && unitOfSlot[t] !== undefined && (t === 0 || unitOfSlot[t - 1] !== unitOfSlot[t])) {
        u.target = unitOfSlot[t];
      }
    }
    pc += u.hi ? 2 : 1;
  }
  return units;
}

function fromUnits(units: readonly Unit[]): Insn[] {
  const pcOf: number[] = [];
  let pc = 0;
  for (const u of units) {
    pcOf.push(pc);
    pc += u.hi ? 2 : 1;
  }
  pcOf.push(pc);
  const out: Insn[] = [];
  units.forEach((u, n) => {
    const i = { ...u.i };
    if (u.target !== undefined) {
      const rel = pcOf[Math.min(u.target, units.length)]! - pcOf[n]! - 1;
      if (isLocalCall(i) || gotol(i)) i.imm = rel;
      else i.off = Math.max(-32768, Math.min(32767, rel));
    }
    out.push(i);
    if (u.hi) out.push({ ...u.hi });
  });
  return out;
}

function randomSimple(r: Rng): Insn {
  const cls = r.chance(0.5) ? Cls.ALU64 : Cls.ALU;
  const op = r.pick([AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.OR, AluOp.AND, AluOp.XOR, AluOp.MOV, AluOp.LSH, AluOp.RSH]);
  const dst = r.pick([0, 1, 2, 3, 4, 5, 7, 8, 9]);
  return r.chance(0.5) ? insn(cls | op | Src.X, dst, r.int(11)) : insn(cls | op, dst, 0, 0, r.imm());
}

/** `rounds` random edits of `insns` (a new array; the input is not touched). */
export function mutate(insns: readonly Insn[], r: Rng, rounds = 1): Insn[] {
  const units = toUnits(insns);
  for (let k = 0; k < rounds && units.length > 0; k++) {
    const n = r.int(units.length);
    const u = units[n]!;
    switch (r.int(8)) {
      case 0: // flip the opcode within its class, or to any byte
        u.i.opcode = r.chance(0.8) ? (u.i.opcode & 0x0f) | (r.int(16) << 4) : r.int(256);
        break;
      case 1:
        if (r.chance(0.5)) u.i.dst = r.int(r.chance(0.95) ? 11 : 16);
        else u.i.src = r.int(r.chance(0.95) ? 11 : 16);
        break;
      case 2:
        u.i.off = r.chance(0.5) ? (u.i.off + r.range(-8, 8)) | 0 : (r.imm() << 16) >> 16;
        break;
      case 3:
        u.i.imm = r.chance(0.5) ? (u.i.imm + r.range(-8, 8)) | 0 : r.imm();
        break;
      case 4: {
        // insert before unit n: targets at or after n move with their instructions
        for (const v of units) if (v.target !== undefined && v.target >= n && v !== u) v.target++;
        units.splice(n, 0, { i: randomSimple(r) });
        break;
      }
      case 5: {
        if (units.length < 3) break;
        units.splice(n, 1);
        for (const v of units) if (v.target !== undefined && v.target > n) v.target--;
        for (const v of units) if (v.target !== undefined && v.target >= units.length) v.target = units.length - 1;
        break;
      }
      case 6: {
        // retarget a jump (or turn this instruction into one) to a unit of the program
        const jumps = units.filter((v) => v.target !== undefined);
        const j = jumps.length > 0 && r.chance(0.8) ? r.pick(jumps) : undefined;
        if (j) j.target = r.int(units.length);
        else if (!u.hi) {
          u.i = insn(Cls.JMP | r.pick([JmpOp.JEQ, JmpOp.JNE, JmpOp.JGT, JmpOp.JA]), 0, 0, 0, r.imm());
          if ((u.i.opcode & 0xf0) === JmpOp.JA) u.i.imm = 0;
          else u.i.dst = r.pick([0, 7, 8, 9]);
          u.target = r.int(units.length);
        }
        break;
      }
      default:
        if (!u.hi) {
          u.i = randomSimple(r);
          delete u.target;
        }
    }
  }
  return fromUnits(units);
}
