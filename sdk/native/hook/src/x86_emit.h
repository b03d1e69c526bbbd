// A tiny x86-64 emitter for the handful of instructions the trampolines use.
// Every method is one instruction; encodings are spelled out next to them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bh {

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

class Asm {
 public:
  explicit Asm(uint64_t at) : base_(at) {}

  size_t size() const { return n_; }
  const uint8_t *data() const { return buf_; }
  uint64_t here() const { return base_ + n_; }
  bool overflow() const { return n_ > sizeof buf_; }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"  // GCC 12 misreads the guard
  void b(uint8_t v) {
    if (n_ < sizeof buf_) buf_[n_] = v;
    n_++;
  }
#pragma GCC diagnostic pop
  void d32(uint32_t v) {
    for (int i = 0; i < 4; i++) b(uint8_t(v >> (8 * i)));
  }
  void q64(uint64_t v) {
    for (int i = 0; i < 8; i++) b(uint8_t(v >> (8 * i)));
  }
  void bytes(const uint8_t *p, size_t len) {
    for (size_t i = 0; i < len; i++) b(p[i]);
  }
  void set32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++)
      if (at + i < sizeof buf_) buf_[at + i] = uint8_t(v >> (8 * i));
  }

  // mov [rsp+disp], r64        REX.W(+R) 89 /r
  void store(Reg r, int32_t disp) {
    rex_w(r);
    b(0x89);
    rsp_mem(r, disp);
  }
  // mov r64, [rsp+disp]        REX.W(+R) 8B /r
  void load(Reg r, int32_t disp) {
    rex_w(r);
    b(0x8b);
    rsp_mem(r, disp);
  }
  // lea r64, [rsp+disp]        REX.W(+R) 8D /r
  void lea(Reg r, int32_t disp) {
    rex_w(r);
    b(0x8d);
    rsp_mem(r, disp);
  }
  // movups [rsp+disp], xmmN    0F 11 /r
  void movups_store(unsigned x, int32_t disp) {
    b(0x0f);
    b(0x11);
    rsp_mem(Reg(x), disp);
  }
  // movups xmmN, [rsp+disp]    0F 10 /r
  void movups_load(unsigned x, int32_t disp) {
    b(0x0f);
    b(0x10);
    rsp_mem(Reg(x), disp);
  }
  // mov qword [rsp+disp], simm32   REX.W C7 /0 id
  void store_imm(int32_t disp, int32_t imm) {
    b(0x48);
    b(0xc7);
    rsp_mem(RAX, disp);
    d32(uint32_t(imm));
  }
  // mov rcx, [rax+disp8]       48 8B 48 disp8
  void load_rcx_rax_disp8(int8_t disp) {
    b(0x48);
    b(0x8b);
    b(0x48);
    b(uint8_t(disp));
  }
  // mov rax, imm64             48 B8 iq
  void mov_rax_imm64(uint64_t v) {
    b(0x48);
    b(0xb8);
    q64(v);
  }
  // mov dst, src (64-bit, both < r8)   48 89 /r
  void mov(Reg dst, Reg src) {
    b(0x48);
    b(0x89);
    b(uint8_t(0xc0 | (src << 3) | dst));
  }
  void pushfq() { b(0x9c); }
  void popfq() { b(0x9d); }
  void push_rsp_mem(int32_t disp) {
    b(0xff);
    rsp_mem(Reg(6), disp);
  }  // push qword [rsp+disp]
  void pop_rcx() { b(0x59); }
  void mov_rcx_cs() {
    b(0x48);
    b(0x8c);
    b(0xc9);
  }  // mov rcx, cs
  void mov_rcx_ss() {
    b(0x48);
    b(0x8c);
    b(0xd1);
  }  // mov rcx, ss
  void and_rsp_m16() {
    b(0x48);
    b(0x83);
    b(0xe4);
    b(0xf0);
  }  // and rsp, -16
  void cmp_eax_imm8(int8_t v) {
    b(0x83);
    b(0xf8);
    b(uint8_t(v));
  }  // cmp eax, imm8
  void ret() { b(0xc3); }
  void call_rax() {
    b(0xff);
    b(0xd0);
  }
  // jcc rel8 (cc: 0x2 = jb, 0x4 = je); returns where rel8 goes, for set8
  size_t jcc8(uint8_t cc) {
    b(uint8_t(0x70 | cc));
    b(0);
    return n_ - 1;
  }
  // Points the rel8 at `at` to the current position.
  void bind8(size_t at) {
    if (at < sizeof buf_) buf_[at] = uint8_t(n_ - (at + 1));
  }
  // jmp rel32                  E9 rel32
  void jmp_rel32(uint64_t target) {
    b(0xe9);
    d32(uint32_t(target - (here() + 4)));
  }
  // jmp qword [rip+disp32]     FF 25 disp32
  void jmp_rip_mem(uint64_t slot) {
    b(0xff);
    b(0x25);
    d32(uint32_t(slot - (here() + 4)));
  }
  // call rel32                 E8 rel32
  void call_rel32(uint64_t target) {
    b(0xe8);
    d32(uint32_t(target - (here() + 4)));
  }
  // call qword [rip+disp32]    FF 15 disp32
  void call_rip_mem(uint64_t slot) {
    b(0xff);
    b(0x15);
    d32(uint32_t(slot - (here() + 4)));
  }

 private:
  void rex_w(Reg r) { b(uint8_t(0x48 | (r >= R8 ? 0x04 : 0))); }
  // ModRM/SIB for [rsp+disp] with `r` in the reg field.
  void rsp_mem(Reg r, int32_t disp) {
    const uint8_t reg = uint8_t((r & 7) << 3);
    if (disp == 0) {
      b(uint8_t(0x04 | reg));
      b(0x24);
    } else if (disp >= -128 && disp <= 127) {
      b(uint8_t(0x44 | reg));
      b(0x24);
      b(uint8_t(disp));
    } else {
      b(uint8_t(0x84 | reg));
      b(0x24);
      d32(uint32_t(disp));
    }
  }

  uint64_t base_;
  size_t n_ = 0;
  uint8_t buf_[1024];
};

}  // namespace bh
