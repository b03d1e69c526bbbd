/**
 * The eBPF instruction encoding (RFC 9669), number for number the same as
 * core/native/vm/include/bpfhook/ebpf.h. The assembler, the disassembler and
 * later TypeScript backends (the PTX compiler) read these, so a change in the
 * C header must be mirrored here; test/10.asm.test.ts pins the encodings.
 */

export const NUM_REGS = 11;
export const REG_FP = 10;
export const STACK_SIZE = 512;
export const MAX_CALL_DEPTH = 8;
export const MAX_INSTS = 65536;
/** Bytes per instruction slot; lddw takes two slots. */
export const INSN_SIZE = 8;

/** Instruction classes (low 3 bits of the opcode). */
export const Cls = {
  MASK: 0x07,
  LD: 0x00,
  LDX: 0x01,
  ST: 0x02,
  STX: 0x03,
  ALU: 0x04,
  JMP: 0x05,
  JMP32: 0x06,
  ALU64: 0x07,
} as const;

/** Source operand bit of ALU and JMP opcodes. */
export const Src = {
  MASK: 0x08,
  K: 0x00,
  X: 0x08,
} as const;

/** ALU / ALU64 operation codes (high nibble). */
export const AluOp = {
  MASK: 0xf0,
  ADD: 0x00,
  SUB: 0x10,
  MUL: 0x20,
  DIV: 0x30, // off 1: signed
  OR: 0x40,
  AND: 0x50,
  LSH: 0x60,
  RSH: 0x70,
  NEG: 0x80,
  MOD: 0x90, // off 1: signed
  XOR: 0xa0,
  MOV: 0xb0, // off 8/16/32 with X: sign-extending move
  ARSH: 0xc0,
  END: 0xd0, // ALU: K = to little-endian, X = to big-endian; ALU64|K = bswap
} as const;

/** JMP / JMP32 operation codes (high nibble). */
export const JmpOp = {
  MASK: 0xf0,
  JA: 0x00, // JMP32|JA: 32-bit offset in imm (gotol)
  JEQ: 0x10,
  JGT: 0x20,
  JGE: 0x30,
  JSET: 0x40,
  JNE: 0x50,
  JSGT: 0x60,
  JSGE: 0x70,
  CALL: 0x80,
  EXIT: 0x90,
  JLT: 0xa0,
  JLE: 0xb0,
  JSLT: 0xc0,
  JSLE: 0xd0,
} as const;

/** Load / store access size. */
export const Size = {
  MASK: 0x18,
  W: 0x00,
  H: 0x08,
  B: 0x10,
  DW: 0x18,
} as const;

/** Load / store mode. */
export const Mode = {
  MASK: 0xe0,
  IMM: 0x00, // LD|IMM|DW = lddw (two slots)
  ABS: 0x20, // legacy packet access: rejected by the VM
  IND: 0x40, // legacy packet access: rejected by the VM
  MEM: 0x60,
  MEMSX: 0x80, // sign-extending loads
  ATOMIC: 0xc0,
} as const;

/** Atomic operations (imm of STX|ATOMIC). */
export const AtomicOp = {
  ADD: 0x00,
  OR: 0x40,
  AND: 0x50,
  XOR: 0xa0,
  FETCH: 0x01,
  XCHG: 0xe1,
  CMPXCHG: 0xf1,
} as const;

/** lddw source forms (src field of LD|IMM|DW), as in the kernel. */
export const Pseudo = {
  MAP_FD: 1,
  MAP_VALUE: 2,
  BTF_ID: 3,
  FUNC: 4,
  MAP_IDX: 5,
  MAP_IDX_VALUE: 6,
} as const;

/** call source forms (src field of JMP|CALL). */
export const CallKind = {
  HELPER: 0,
  LOCAL: 1, // imm: pc-relative target of a bpf-to-bpf call
  KFUNC: 2, // rejected by the VM
} as const;

/** Full opcodes used often enough to name. CALLX keeps its register in dst. */
export const Op = {
  LDDW: Cls.LD | Mode.IMM | Size.DW,
  CALL: Cls.JMP | JmpOp.CALL,
  CALLX: Cls.JMP | JmpOp.CALL | Src.X,
  EXIT: Cls.JMP | JmpOp.EXIT,
} as const;
