/* The eBPF instruction set (RFC 9669): one instruction struct and one set of
 * opcode constants shared by the validator, the interpreter, the JIT and any
 * later backend (the PTX compiler reads the same numbers on the TS side). */
#ifndef BPFHOOK_EBPF_H
#define BPFHOOK_EBPF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bh_inst {
  uint8_t opcode;
  uint8_t dst : 4;
  uint8_t src : 4;
  int16_t off;
  int32_t imm;
};

#define BH_NUM_REGS 11
#define BH_REG_FP 10
#define BH_STACK_SIZE 512   /* per frame, as in the kernel */
#define BH_MAX_CALL_DEPTH 8 /* frames, including the entry frame */
#define BH_MAX_INSTS 65536

/* instruction classes */
#define BH_CLS_MASK 0x07
#define BH_CLS_LD 0x00
#define BH_CLS_LDX 0x01
#define BH_CLS_ST 0x02
#define BH_CLS_STX 0x03
#define BH_CLS_ALU 0x04
#define BH_CLS_JMP 0x05
#define BH_CLS_JMP32 0x06
#define BH_CLS_ALU64 0x07

/* source operand (ALU / JMP) */
#define BH_SRC_K 0x00
#define BH_SRC_X 0x08

/* ALU / ALU64 operation codes (high nibble) */
#define BH_ALU_ADD 0x00
#define BH_ALU_SUB 0x10
#define BH_ALU_MUL 0x20
#define BH_ALU_DIV 0x30 /* off 1: signed */
#define BH_ALU_OR 0x40
#define BH_ALU_AND 0x50
#define BH_ALU_LSH 0x60
#define BH_ALU_RSH 0x70
#define BH_ALU_NEG 0x80
#define BH_ALU_MOD 0x90 /* off 1: signed */
#define BH_ALU_XOR 0xa0
#define BH_ALU_MOV 0xb0 /* off 8/16/32: sign-extending move */
#define BH_ALU_ARSH 0xc0
#define BH_ALU_END 0xd0 /* ALU: K = to little-endian, X = to big-endian; ALU64|K = bswap */

/* JMP / JMP32 operation codes (high nibble) */
#define BH_JMP_JA 0x00 /* JMP32|JA: 32-bit offset in imm (gotol) */
#define BH_JMP_JEQ 0x10
#define BH_JMP_JGT 0x20
#define BH_JMP_JGE 0x30
#define BH_JMP_JSET 0x40
#define BH_JMP_JNE 0x50
#define BH_JMP_JSGT 0x60
#define BH_JMP_JSGE 0x70
#define BH_JMP_CALL 0x80
#define BH_JMP_EXIT 0x90
#define BH_JMP_JLT 0xa0
#define BH_JMP_JLE 0xb0
#define BH_JMP_JSLT 0xc0
#define BH_JMP_JSLE 0xd0

/* load / store: size and mode */
#define BH_SIZE_W 0x00
#define BH_SIZE_H 0x08
#define BH_SIZE_B 0x10
#define BH_SIZE_DW 0x18
#define BH_MODE_IMM 0x00 /* LD|IMM|DW = lddw (two slots) */
#define BH_MODE_ABS 0x20 /* legacy packet access: rejected */
#define BH_MODE_IND 0x40 /* legacy packet access: rejected */
#define BH_MODE_MEM 0x60
#define BH_MODE_MEMSX 0x80 /* sign-extending loads */
#define BH_MODE_ATOMIC 0xc0

/* atomic operations (imm of STX|ATOMIC) */
#define BH_ATOMIC_ADD 0x00
#define BH_ATOMIC_OR 0x40
#define BH_ATOMIC_AND 0x50
#define BH_ATOMIC_XOR 0xa0
#define BH_ATOMIC_FETCH 0x01
#define BH_ATOMIC_XCHG (0xe0 | BH_ATOMIC_FETCH)
#define BH_ATOMIC_CMPXCHG (0xf0 | BH_ATOMIC_FETCH)

/* lddw source forms (src field of LD|IMM|DW), as in the kernel */
#define BH_PSEUDO_MAP_FD 1
#define BH_PSEUDO_MAP_VALUE 2
#define BH_PSEUDO_BTF_ID 3
#define BH_PSEUDO_FUNC 4
#define BH_PSEUDO_MAP_IDX 5
#define BH_PSEUDO_MAP_IDX_VALUE 6

/* call source forms (src field of JMP|CALL) */
#define BH_CALL_HELPER 0
#define BH_CALL_LOCAL 1 /* imm: pc-relative target of a bpf-to-bpf call */
#define BH_CALL_KFUNC 2 /* rejected */

/* Full opcodes used often enough to name. CALLX keeps the register in dst
 * (as LLVM encodes it); the register holds a helper id. */
#define BH_OP_LDDW (BH_CLS_LD | BH_MODE_IMM | BH_SIZE_DW)
#define BH_OP_CALL (BH_CLS_JMP | BH_JMP_CALL)
#define BH_OP_CALLX (BH_CLS_JMP | BH_JMP_CALL | BH_SRC_X)
#define BH_OP_EXIT (BH_CLS_JMP | BH_JMP_EXIT)

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_EBPF_H */
