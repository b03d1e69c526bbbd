// A small x86-64 assembler for the JIT: just the instruction forms the eBPF
// back end needs, with labels whose references are recorded and patched in one
// pass at the end (finish()). Private to the VM.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace bh {
namespace x86 {

enum Reg : uint8_t {
  RAX = 0,
  RCX,
  RDX,
  RBX,
  RSP,
  RBP,
  RSI,
  RDI,
  R8,
  R9,
  R10,
  R11,
  R12,
  R13,
  R14,
  R15,
};

// Condition codes in the encoding's order, so cc ^ 1 is the negation.
enum Cond : uint8_t {
  CC_O = 0,
  CC_NO,
  CC_B,
  CC_AE,
  CC_E,
  CC_NE,
  CC_BE,
  CC_A,
  CC_S,
  CC_NS,
  CC_P,
  CC_NP,
  CC_L,
  CC_GE,
  CC_LE,
  CC_G,
};
inline Cond negate(Cond c) { return Cond(c ^ 1); }

// Operand widths in bytes.
enum Width : uint8_t { W8 = 1, W16 = 2, W32 = 4, W64 = 8 };

// Group-1 ALU operations: the /digit of 81/83 and, times 8 plus 1, the
// "r/m, reg" opcode (add 01, or 09, and 21, sub 29, xor 31, cmp 39).
enum AluOp : uint8_t { ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7 };
// Shift /digits of C1/D1/D3.
enum ShiftOp : uint8_t { ROL = 0, ROR = 1, SHL = 4, SHR = 5, SAR = 7 };
// F7 group /digits.
enum UnaryOp : uint8_t { NOT = 2, NEG = 3, MUL = 4, DIV = 6, IDIV = 7 };

// A register or a [base + disp] memory operand (no index: the JIT never needs
// one), or a rip-relative reference to a label.
struct Operand {
  enum Kind : uint8_t { kReg, kMem, kRipLabel } kind;
  Reg reg;  // the register, or the base
  int32_t disp;
};
inline Operand reg_op(Reg r) { return Operand{Operand::kReg, r, 0}; }
inline Operand mem_op(Reg base, int32_t disp) { return Operand{Operand::kMem, base, disp}; }

inline bool fits_i8(int64_t v) { return v >= -128 && v <= 127; }
inline bool fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

class Assembler {
 public:
  using Label = uint32_t;

  std::vector<uint8_t> &code() { return buf_; }
  size_t pos() const { return buf_.size(); }

  void u8(uint8_t b) { buf_.push_back(b); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void align(size_t n, uint8_t fill) {
    while (buf_.size() % n != 0) u8(fill);
  }

  // ---- labels ----------------------------------------------------------
  Label new_label() {
    labels_.push_back(kUnbound);
    return Label(labels_.size() - 1);
  }
  void bind(Label l) { labels_[l] = int64_t(buf_.size()); }
  bool bound(Label l) const { return labels_[l] != kUnbound; }

  // Jumps pick rel8 when the target is already bound and near; everything
  // else is rel32 and patched in finish(). jcc_short/jmp_short force rel8
  // for the few in-instruction skips whose distance is known to be small.
  void jmp(Label l) {
    if (bound(l) && fits_i8(labels_[l] - int64_t(pos() + 2))) {
      u8(0xEB);
      u8(uint8_t(labels_[l] - int64_t(pos() + 1)));
      return;
    }
    u8(0xE9);
    ref32(l);
  }
  void jcc(Cond c, Label l) {
    if (bound(l) && fits_i8(labels_[l] - int64_t(pos() + 2))) {
      u8(0x70 | c);
      u8(uint8_t(labels_[l] - int64_t(pos() + 1)));
      return;
    }
    u8(0x0F);
    u8(0x80 | c);
    ref32(l);
  }
  void jmp_short(Label l) {
    u8(0xEB);
    ref8(l);
  }
  void jcc_short(Cond c, Label l) {
    u8(0x70 | c);
    ref8(l);
  }
  void call(Label l) {
    u8(0xE8);
    ref32(l);
  }

  // Patches every recorded reference. False if a label was never bound or a
  // short jump does not reach (both are emitter bugs, reported, not hidden).
  bool finish() {
    for (const Fixup &f : fixups_) {
      const int64_t target = labels_[f.label];
      if (target == kUnbound) return false;
      const int64_t rel = target - int64_t(f.at + f.size);
      if (f.size == 1) {
        if (!fits_i8(rel)) return false;
        buf_[f.at] = uint8_t(int8_t(rel));
      } else {
        const int32_t r = int32_t(rel);
        std::memcpy(&buf_[f.at], &r, 4);
      }
    }
    fixups_.clear();
    return true;
  }

  // ---- general encoder ---------------------------------------------------
  // Emits [lock] [66] [REX] opcode ModRM [SIB] [disp] for `reg` in ModRM.reg
  // (a register or an opcode /digit) and `rm`. `w` selects 66 (W16) or
  // REX.W (W64); for W8 a REX is forced when a byte register would otherwise
  // mean ah/ch/dh/bh instead of spl/bpl/sil/dil. Immediates follow.
  void insn(Width w, std::initializer_list<uint8_t> opcode, uint8_t reg, Operand rm, bool lock = false,
            bool byte_regs = false) {
    if (lock) u8(0xF0);
    if (w == W16) u8(0x66);
    uint8_t rex = 0;
    if (w == W64) rex |= 0x08;
    if (reg & 8) rex |= 0x04;
    if (rm.kind != Operand::kRipLabel && (rm.reg & 8)) rex |= 0x01;
    const bool byte_form = byte_regs || w == W8;
    if (byte_form && ((reg >= 4 && reg < 8) || (rm.kind == Operand::kReg && rm.reg >= 4 && rm.reg < 8))) {
      rex |= 0x40;
    }
    if (rex != 0) u8(0x40 | rex);
    for (uint8_t b : opcode) u8(b);
    modrm(reg & 7, rm);
  }

  // ---- moves -------------------------------------------------------------
  void mov(Width w, Reg dst, Reg src) { insn(w, {0x89}, src, reg_op(dst)); }
  // Loads the 64-bit constant with the shortest encoding.
  void mov_imm64(Reg dst, uint64_t v) {
    if (v == 0) {
      insn(W32, {0x31}, dst, reg_op(dst));
    } else if (v <= UINT32_MAX) {
      mov_imm32(dst, uint32_t(v));
    } else if (fits_i32(int64_t(v))) {
      insn(W64, {0xC7}, 0, reg_op(dst));
      u32(uint32_t(v));
    } else {
      u8(0x48 | ((dst & 8) ? 1 : 0));
      u8(0xB8 | (dst & 7));
      u64(v);
    }
  }
  // dst = zero-extended v.
  void mov_imm32(Reg dst, uint32_t v) {
    if (dst & 8) u8(0x41);
    u8(0xB8 | (dst & 7));
    u32(v);
  }
  void zero(Reg r) { insn(W32, {0x31}, r, reg_op(r)); }  // xor r32, r32
  void movzx(Reg dst, Width from, Operand src) {
    insn(W32, {0x0F, uint8_t(from == W8 ? 0xB6 : 0xB7)}, dst, src, false, from == W8);
  }
  // Sign-extends an 8/16/32-bit source into a 32- or 64-bit destination.
  void movsx(Width to, Reg dst, Width from, Operand src) {
    if (from == W32) {
      insn(W64, {0x63}, dst, src);  // movsxd
    } else {
      insn(to, {0x0F, uint8_t(from == W8 ? 0xBE : 0xBF)}, dst, src, false, from == W8);
    }
  }
  // dst = [mem], zero-extended to 64 bits.
  void load(Width w, Reg dst, Operand mem) {
    if (w == W8 || w == W16) {
      movzx(dst, w, mem);
    } else {
      insn(w, {0x8B}, dst, mem);
    }
  }
  void store(Width w, Operand mem, Reg src) { insn(w, {uint8_t(w == W8 ? 0x88 : 0x89)}, src, mem); }
  void store_imm(Width w, Operand mem, int32_t imm) {
    insn(w, {uint8_t(w == W8 ? 0xC6 : 0xC7)}, 0, mem);
    imm_tail(w == W64 ? W32 : w, imm);
  }
  void lea(Reg dst, Operand mem) { insn(W64, {0x8D}, dst, mem); }

  // ---- arithmetic ----------------------------------------------------------
  void alu(AluOp op, Width w, Operand dst, Reg src) { insn(w, {uint8_t(op * 8 + 1)}, src, dst); }
  // reg op= [mem] (the "r, r/m" direction, opcode + 2).
  void alu_load(AluOp op, Width w, Reg dst, Operand src) { insn(w, {uint8_t(op * 8 + 3)}, dst, src); }
  void alu_imm(AluOp op, Width w, Operand dst, int32_t imm) {
    if (fits_i8(imm)) {
      insn(w, {0x83}, op, dst);
      u8(uint8_t(imm));
    } else {
      insn(w, {0x81}, op, dst);
      u32(uint32_t(imm));
    }
  }
  void test(Width w, Reg a, Reg b) { insn(w, {0x85}, b, reg_op(a)); }
  void test_imm(Width w, Operand a, int32_t imm) {
    // A mask that fits in the low byte only needs the low byte tested.
    if (imm >= 0 && imm <= 0xFF) {
      insn(W8, {0xF6}, 0, a);
      u8(uint8_t(imm));
    } else {
      insn(w, {0xF7}, 0, a);
      u32(uint32_t(imm));
    }
  }
  void imul(Width w, Reg dst, Reg src) { insn(w, {0x0F, 0xAF}, dst, reg_op(src)); }
  void imul_imm(Width w, Reg dst, Reg src, int32_t imm) {
    if (fits_i8(imm)) {
      insn(w, {0x6B}, dst, reg_op(src));
      u8(uint8_t(imm));
    } else {
      insn(w, {0x69}, dst, reg_op(src));
      u32(uint32_t(imm));
    }
  }
  void unary(UnaryOp op, Width w, Reg r) { insn(w, {0xF7}, op, reg_op(r)); }
  void shift_cl(ShiftOp op, Width w, Reg r) { insn(w, {0xD3}, op, reg_op(r)); }
  void shift_imm(ShiftOp op, Width w, Reg r, uint8_t n) {
    if (n == 1) {
      insn(w, {0xD1}, op, reg_op(r));
    } else {
      insn(w, {0xC1}, op, reg_op(r));
      u8(n);
    }
  }
  void bswap(Width w, Reg r) {
    const uint8_t rex = uint8_t((w == W64 ? 0x08 : 0) | ((r & 8) ? 0x01 : 0));
    if (rex != 0) u8(0x40 | rex);
    u8(0x0F);
    u8(0xC8 | (r & 7));
  }
  void cqo() {
    u8(0x48);
    u8(0x99);
  }
  void cdq() { u8(0x99); }

  // ---- atomics -------------------------------------------------------------
  void lock_alu(AluOp op, Width w, Operand mem, Reg src) { insn(w, {uint8_t(op * 8 + 1)}, src, mem, true); }
  void lock_xadd(Width w, Operand mem, Reg src) { insn(w, {0x0F, 0xC1}, src, mem, true); }
  void lock_cmpxchg(Width w, Operand mem, Reg src) { insn(w, {0x0F, 0xB1}, src, mem, true); }
  // xchg with memory is locked without a prefix.
  void xchg(Width w, Operand mem, Reg src) { insn(w, {0x87}, src, mem); }

  // ---- stack and calls -------------------------------------------------------
  void push(Reg r) {
    if (r & 8) u8(0x41);
    u8(0x50 | (r & 7));
  }
  void pop(Reg r) {
    if (r & 8) u8(0x41);
    u8(0x58 | (r & 7));
  }
  void call(Reg r) { insn(W32, {0xFF}, 2, reg_op(r)); }
  void ret() { u8(0xC3); }
  void ud2() {
    u8(0x0F);
    u8(0x0B);
  }

 private:
  static constexpr int64_t kUnbound = -1;
  struct Fixup {
    size_t at;
    Label label;
    uint8_t size;
  };

  void raw(const void *p, size_t n) {
    const uint8_t *b = static_cast<const uint8_t *>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  void ref8(Label l) {
    fixups_.push_back(Fixup{pos(), l, 1});
    u8(0);
  }
  void ref32(Label l) {
    fixups_.push_back(Fixup{pos(), l, 4});
    u32(0);
  }
  void imm_tail(Width w, int32_t imm) {
    if (w == W8) {
      u8(uint8_t(imm));
    } else if (w == W16) {
      u16(uint16_t(imm));
    } else {
      u32(uint32_t(imm));
    }
  }

  void modrm(uint8_t reg, Operand rm) {
    if (rm.kind == Operand::kReg) {
      u8(uint8_t(0xC0 | (reg << 3) | (rm.reg & 7)));
      return;
    }
    if (rm.kind == Operand::kRipLabel) {
      // rip-relative: the displacement counts from the end of the instruction,
      // so callers must not append an immediate after such an operand.
      u8(uint8_t((reg << 3) | 5));
      ref32(Label(rm.disp));
      return;
    }
    const uint8_t base = rm.reg & 7;
    // mod 00 with base 101 means rip-relative, so rbp/r13 always carry a disp.
    uint8_t mod;
    if (rm.disp == 0 && base != 5) {
      mod = 0;
    } else if (fits_i8(rm.disp)) {
      mod = 1;
    } else {
      mod = 2;
    }
    u8(uint8_t((mod << 6) | (reg << 3) | base));
    if (base == 4) u8(0x24);  // rsp/r12 as a base need a SIB byte
    if (mod == 1) u8(uint8_t(int8_t(rm.disp)));
    if (mod == 2) u32(uint32_t(rm.disp));
  }

  std::vector<uint8_t> buf_;
  std::vector<int64_t> labels_;
  std::vector<Fixup> fixups_;
};

inline Operand rip_label(Assembler::Label l) { return Operand{Operand::kRipLabel, RAX, int32_t(l)}; }

}  // namespace x86
}  // namespace bh
