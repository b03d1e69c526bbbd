#include "trampoline.h"

#include <cstddef>

#include "util.h"

namespace bh {
namespace {

int off(Reg r) {
  switch (r) {
    case RAX: return offsetof(struct pt_regs, rax);
    case RCX: return offsetof(struct pt_regs, rcx);
    case RDX: return offsetof(struct pt_regs, rdx);
    case RBX: return offsetof(struct pt_regs, rbx);
    case RSP: return offsetof(struct pt_regs, rsp);
    case RBP: return offsetof(struct pt_regs, rbp);
    case RSI: return offsetof(struct pt_regs, rsi);
    case RDI: return offsetof(struct pt_regs, rdi);
    case R8: return offsetof(struct pt_regs, r8);
    case R9: return offsetof(struct pt_regs, r9);
    case R10: return offsetof(struct pt_regs, r10);
    case R11: return offsetof(struct pt_regs, r11);
    case R12: return offsetof(struct pt_regs, r12);
    case R13: return offsetof(struct pt_regs, r13);
    case R14: return offsetof(struct pt_regs, r14);
    case R15: return offsetof(struct pt_regs, r15);
  }
  return 0;
}

constexpr Reg kAllButRax[] = {R15, R14, R13, R12, RBP, RBX, R11, R10, R9, R8, RCX, RDX, RSI, RDI};

// eflags, cs, ss, orig_rax = -1 (rcx is free: already saved).
void save_specials(Asm &a, int base) {
  a.pushfq();
  a.pop_rcx();
  a.store(RCX, base + int(offsetof(struct pt_regs, eflags)));
  a.mov_rcx_cs();
  a.store(RCX, base + int(offsetof(struct pt_regs, cs)));
  a.mov_rcx_ss();
  a.store(RCX, base + int(offsetof(struct pt_regs, ss)));
  a.store_imm(base + int(offsetof(struct pt_regs, orig_rax)), -1);
}

void call_abs(Asm &a, uint64_t target) {
  if (fits_i32(int64_t(target - (a.here() + 5)))) {
    a.call_rel32(target);
  } else {
    a.mov_rax_imm64(target);  // rax is saved in the frame
    a.call_rax();
  }
}

// The common entry, plain (`mid` false: returns with the flags of
// `cmp action, 1` for the stub to branch on; at a function's entry the flags
// are dead) or for a probe inside a function (`mid`: restores every
// register and the flags, since they may be live there).  Frame at rsp+8
// (our return address is at rsp); the probed code's rsp is above the frame
// and the red zone.  No vector register is touched here: dispatch.cpp saves
// vector state when a listener may change it.
void emit_entry(Asm &a, bool mid) {
  const int B = 8;
  for (Reg r : kAllButRax) a.store(r, B + off(r));
  save_specials(a, B);
  a.load_rcx_rax_disp8(int8_t(offsetof(HookCore, addr)));  // pt_regs.rip = the function
  a.store(RCX, B + int(offsetof(struct pt_regs, rip)));
  a.lea(RCX, B + kEntryFrame + kRedZone);  // pt_regs.rsp = the caller's rsp
  a.store(RCX, B + off(RSP));
  a.mov(RDI, RAX);  // hook
  a.lea(RSI, B);    // frame
  a.mov(RBX, RSP);
  a.and_rsp_m16();
  call_abs(a, reinterpret_cast<uint64_t>(&bh_on_enter));
  a.mov(RSP, RBX);
  if (mid) {
    a.push_rsp_mem(B + int(offsetof(struct pt_regs, eflags)));  // as listeners left them
    a.popfq();
  } else {
    a.cmp_eax_imm8(1);  // the stub branches on these flags; the loads keep them
  }
  for (Reg r : kAllButRax) a.load(r, B + off(r));
  a.load(RAX, B + off(RAX));
  a.ret();
  while (a.size() % 16) a.b(0xcc);
}

}  // namespace

void emit_shared(Asm &a, SharedCode &out) {
  out.common_entry = a.here();
  emit_entry(a, false);
  out.mid_entry = a.here();
  emit_entry(a, true);

  // ---- return trampoline: rsp = the caller's rsp after the return ----
  out.ret_tramp = a.here();
  a.lea(RSP, -kReturnFrame);
  for (Reg r : kAllButRax) a.store(r, off(r));
  a.store(RAX, off(RAX));
  save_specials(a, 0);
  a.lea(RCX, kReturnFrame);
  a.store(RCX, off(RSP));
  a.mov(RDI, RSP);
  a.mov(RBX, RSP);
  a.and_rsp_m16();
  call_abs(a, reinterpret_cast<uint64_t>(&bh_on_return));
  a.mov(RSP, RBX);
  // At a return only rax, rdx (and xmm0/1, st0/1: saved by dispatch.cpp
  // if a listener may touch them) carry values; callee-saved registers
  // survived the C call; rbx was our frame pointer.
  a.load(RAX, off(RAX));
  a.load(RDX, off(RDX));
  a.load(RBX, off(RBX));
  a.lea(RSP, kJumpOff);  // rsp = the caller's slot, now holding its return address
  a.ret();               // predicted: the caller's call is on top of the return stack
  while (a.size() % 16) a.b(0xcc);
}

StubAddrs emit_stub(Asm &a, uint64_t slot, const HookCore *hook, const SharedCode &shared, bool mid) {
  const uint64_t common = mid ? shared.mid_entry : shared.common_entry;
  a.q64(common);            // slot+0
  a.q64(shared.ret_tramp);  // slot+8
  StubAddrs out{};
  out.entry = a.here();
  a.lea(RSP, -(kEntryFrame + kRedZone));
  a.store(RAX, off(RAX));
  a.mov_rax_imm64(reinterpret_cast<uint64_t>(hook));
  if (fits_i32(int64_t(common - (a.here() + 5))))
    a.call_rel32(common);
  else
    a.call_rip_mem(slot);
  a.lea(RSP, kEntryFrame + kRedZone);
  if (mid) {  // only entry listeners, no override: always run the code
    out.after = 0;
    return out;
  }
  const size_t to_run = a.jcc8(0x2);  // jb: kRun
  const size_t to_now = a.jcc8(0x4);  // je: kReturnNow
  a.lea(RSP, 8);
  const size_t call_at = a.size();
  a.call_rel32(0);  // to `run`, bound below
  out.after = a.here();
  if (fits_i32(int64_t(shared.ret_tramp - (a.here() + 5))))
    a.jmp_rel32(shared.ret_tramp);
  else
    a.jmp_rip_mem(slot + 8);
  a.bind8(to_now);
  a.ret();
  a.bind8(to_run);
  a.set32(call_at + 1, uint32_t(a.size() - (call_at + 5)));
  return out;
}

}  // namespace bh
