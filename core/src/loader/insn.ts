/**
 * The few eBPF instruction facts the loader needs to rewrite relocations and
 * link calls. Instructions are 8 bytes: opcode, dst:4|src:4, off:i16, imm:i32.
 */
export const INSN_SIZE = 8;

export const BPF_LD_IMM64 = 0x18; // BPF_LD | BPF_DW | BPF_IMM, two slots
export const BPF_CALL = 0x85; // BPF_JMP | BPF_CALL
export const BPF_EXIT = 0x95;
export const BPF_CLASS_JMP = 0x05;
export const BPF_CLASS_JMP32 = 0x06;

/** src values of a call instruction. */
export const BPF_PSEUDO_CALL = 1; // bpf-to-bpf call, imm pc-relative
export const BPF_PSEUDO_KFUNC_CALL = 2;

/** src values of the first slot of lddw, as the kernel defines them. */
export const BPF_PSEUDO_MAP_FD = 1;
export const BPF_PSEUDO_MAP_VALUE = 2;
export const BPF_PSEUDO_BTF_ID = 3;
export const BPF_PSEUDO_FUNC = 4; // address of a subprogram, imm pc-relative
export const BPF_PSEUDO_MAP_IDX = 5; // imm = index into BpfObject.maps
export const BPF_PSEUDO_MAP_IDX_VALUE = 6; // imm = map index, second slot imm = offset in the value

/** ELF relocation types of EM_BPF (llvm's BPF ELF backend). */
export const R_BPF_NONE = 0;
export const R_BPF_64_64 = 1; // lddw: 64-bit address split over two imm fields
export const R_BPF_64_ABS64 = 2; // data: 64-bit absolute (debug info)
export const R_BPF_64_ABS32 = 3; // data: 32-bit absolute (BTF, debug info)
export const R_BPF_64_NODYLD32 = 4; // data: 32-bit, for BTF/BTF.ext only
export const R_BPF_64_32 = 10; // call: imm in instructions

/** A mutable window on one instruction inside a byte array. */
export class InsnView {
  private readonly view: DataView;

  constructor(bytes: Uint8Array, index: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset + index * INSN_SIZE, INSN_SIZE);
  }

  get opcode(): number {
    return this.view.getUint8(0);
  }
  get dst(): number {
    return this.view.getUint8(1) & 0x0f;
  }
  get src(): number {
    return this.view.getUint8(1) >> 4;
  }
  set src(value: number) {
    this.view.setUint8(1, (this.view.getUint8(1) & 0x0f) | ((value & 0x0f) << 4));
  }
  get off(): number {
    return this.view.getInt16(2, true);
  }
  get imm(): number {
    return this.view.getInt32(4, true);
  }
  set imm(value: number) {
    this.view.setInt32(4, value, true);
  }

  get isLdImm64(): boolean {
    return this.opcode === BPF_LD_IMM64;
  }
  get isCall(): boolean {
    return this.opcode === BPF_CALL;
  }

  /**
   * For a jump (not call or exit): how far it goes, in instructions, relative
   * to the next one. JMP32 | JA ("gotol") keeps its distance in imm.
   */
  get jumpDelta(): number | undefined {
    const cls = this.opcode & 0x07;
    if (cls !== BPF_CLASS_JMP && cls !== BPF_CLASS_JMP32) return undefined;
    const op = this.opcode & 0xf0;
    if (op === 0x80 || op === 0x90) return undefined; // call, exit
    if (this.opcode === 0x06) return this.imm;
    return this.off;
  }
}
