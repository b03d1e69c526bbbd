/**
 * One decoded instruction slot and its 8-byte wire form (struct bh_inst):
 * opcode, dst in the low nibble and src in the high nibble of byte 1, then a
 * little-endian int16 offset and int32 immediate. lddw is two slots; the
 * second carries the upper 32 bits of its constant in imm.
 */
import { BpfhookError } from "../errors.js";
import { INSN_SIZE } from "./opcodes.js";

export interface Insn {
  opcode: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

export function insn(opcode: number, dst = 0, src = 0, off = 0, imm = 0): Insn {
  return { opcode, dst, src, off, imm };
}

export function encodeInsns(insns: readonly Insn[]): Buffer {
  const out = Buffer.alloc(insns.length * INSN_SIZE);
  insns.forEach((i, n) => {
    const at = n * INSN_SIZE;
    out.writeUInt8(i.opcode & 0xff, at);
    out.writeUInt8((i.dst & 0x0f) | ((i.src & 0x0f) << 4), at + 1);
    out.writeInt16LE(i.off, at + 2);
    out.writeInt32LE(i.imm, at + 4);
  });
  return out;
}

export function decodeInsns(code: Uint8Array): Insn[] {
  if (code.length % INSN_SIZE !== 0) {
    throw new BpfhookError(
      "BAD_ARGUMENT",
      `decodeInsns: code is ${code.length} bytes, not a multiple of ${INSN_SIZE}`,
    );
  }
  const buf = Buffer.from(code.buffer, code.byteOffset, code.byteLength);
  const out: Insn[] = [];
  for (let at = 0; at < buf.length; at += INSN_SIZE) {
    const regs = buf.readUInt8(at + 1);
    out.push({
      opcode: buf.readUInt8(at),
      dst: regs & 0x0f,
      src: regs >> 4,
      off: buf.readInt16LE(at + 2),
      imm: buf.readInt32LE(at + 4),
    });
  }
  return out;
}

/** The slot as the u64 a `-- raw` line or a `.raw` directive spells. */
export function insnToU64(i: Insn): bigint {
  return encodeInsns([i]).readBigUInt64LE(0);
}

export function insnFromU64(word: bigint): Insn {
  const buf = Buffer.alloc(INSN_SIZE);
  buf.writeBigUInt64LE(BigInt.asUintN(64, word));
  return decodeInsns(buf)[0]!;
}

export function sameInsn(a: Insn, b: Insn): boolean {
  return a.opcode === b.opcode && a.dst === b.dst && a.src === b.src && a.off === b.off && a.imm === b.imm;
}
