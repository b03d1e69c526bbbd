// The x86-64 code generator. One pass over the validated program emits the
// hot code in program order; cold paths (fault reports, checked-mode slow
// paths, exit unwinding) are queued and emitted after it, so the common path
// stays straight and dense. Every forward reference is a label patched once at
// the end by the assembler.
//
// Register map. eBPF r1..r5 sit in the SysV argument registers, so a helper
// call needs no shuffling; r6..r9 and r10 are in callee-saved registers, so
// they survive helper calls for free:
//
//   r0 rax   r1 rdi   r2 rsi   r3 rdx   r4 rcx   r5 r8
//   r6 rbx   r7 r13   r8 r14   r9 r15   r10 rbp
//   r12: the run state (below)   r9, r10, r11: scratch, never live across
//   an eBPF instruction.
//
// Two shapes of run, chosen per program at compile time:
//
// Leaf runs: fast mode (unchecked, no budget) with no local calls, no callx
// and no BH_HELPER_MAY_EXIT helper, i.e. programs that can neither fault nor
// unwind. They need no run state, so r12 is left alone and the body is the
// function itself: the prologue pushes only the callee-saved registers the
// program names (rbx/r13/r14/r15 for r6..r9, rbp for r10), reserves one
// 512-byte frame only if the program names r10, and each eBPF exit is an
// inline epilogue (add rsp, pops, ret). `mov r0, 0; exit` is three
// instructions.
//
//   [rbp - 512, rbp)     the eBPF stack (if r10 is named), rbp 16-byte
//                        aligned; rsp = rbp - 512 (or the entry rsp less the
//                        pushes and at most 8 bytes of padding) is 16-byte
//                        aligned at every helper call.
//
// Full runs: everything else. Native frame (addresses grow upwards; S = r12):
//
//   [S + 48 + pad ...)   saved rbp, r12, then rbx/r13/r14/r15 for the r6..r9
//                        the program names; return address. pad (0 or 8)
//                        keeps S 16-byte aligned whatever the push count.
//   [S, S + 48)          run state: ctx, ctx_len, budget left, depth left,
//                        unwind point (see below), padding
//   [S - B, S)           eBPF stacks, B = 512 without local calls or
//                        callbacks, else 8
//                        frames of 512 bytes, the entry frame on top, each
//                        local call's frame right below its caller's (the
//                        interpreter's layout, so checked mode admits the
//                        same addresses); S is 16-byte aligned
//   [... S - B - 8)      return addresses and saved r6..r9/r10 of local calls
//
// The program body of a full run is entered with `call`, so every eBPF exit
// is a plain `ret`, whether it leaves a local function or the program. The
// run state's unwind point is the address of that call's return address; a
// fault or an exit request unwinds from any depth with
// `mov rsp, [r12 + 32]; ret`, as if the body had returned.
//
// Callbacks (bpf_loop, bpf_for_each_map_elem): each callback function also
// gets an entry point after the code, a C function that a helper reaches
// through bh_vm_callback_invoke with the run's r12 and the calling
// function's r10 (from call_slow, which every BH_HELPER_CALLS_BACK call goes
// through). It saves the host's callee-saved registers, becomes the unwind
// point (restoring the previous one when it returns), takes the frame below
// the caller's and one unit of depth and budget, and `call`s the function's
// code: a fault or exit request inside the callback unwinds to its entry,
// which returns to the helper; call_slow then ends the program.
//
// Callee-saved host registers the program does not name are never written
// (local calls push and pop them unchanged), so they need no saving.
//
// Stack alignment: rsp is 16-byte aligned everywhere in the body, so helper
// calls need no adjustment; a local call pushes five registers (40 bytes)
// plus its return address, which keeps the callee aligned too.
#if defined(__x86_64__)

#include "jit_x86_64.h"

#include <cinttypes>
#include <cstdio>
#include <functional>

#include "x86_emit.h"

namespace bh {
namespace {

using namespace x86;

constexpr Reg kRegMap[BH_NUM_REGS] = {RAX, RDI, RSI, RDX, RCX, R8, RBX, R13, R14, R15, RBP};
constexpr Reg kState = R12;

constexpr int32_t kStateCtx = 0;
constexpr int32_t kStateCtxLen = 8;
constexpr int32_t kStateBudget = 16;
constexpr int32_t kStateDepth = 24;  // local calls still allowed (dword)
// Where faults and exit requests unwind to: the address of the return
// address of the innermost entry's `call body` (the program's, or a
// callback entry's), so `mov rsp, [r12 + kStateUnwind]; ret` leaves the body
// from any depth as if it had returned.
constexpr int32_t kStateUnwind = 32;
constexpr int32_t kStateSize = 48;  // a multiple of 16: keeps S aligned
// Padding below the stacks, so that the body's rsp (one return address below)
// is 16-byte aligned when r10's top is.
constexpr int32_t kPadBelow = 8;
static_assert(BH_STACK_SIZE % 16 == 0, "frames must keep r10 16-byte aligned");

// ---- run-time support, called from generated code --------------------------

// Two integers come back in rax:rdx under SysV, so one call returns both the
// helper's result and whether it asked to end the program.
struct HelperResult {
  uint64_t r0;
  uint64_t exited;
};

// Calls a BH_HELPER_MAY_EXIT helper (r1..r5 arrive in place; `fn` is the
// sixth argument, r9, which no eBPF register uses).
HelperResult call_may_exit(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, bh_helper_fn fn) {
  ExitRequest &req = exit_request();
  req.requested = false;
  const uint64_t r0 = fn(r1, r2, r3, r4, r5);
  if (!req.requested) return HelperResult{r0, 0};
  req.requested = false;
  return HelperResult{req.ret, 1};
}

// Calls a BH_HELPER_CALLS_BACK helper (or any flagged helper reached by
// callx) with this run published as the thread's callback link; `state` and
// `frame_top` (r12 and r10 of the caller, the 7th and 8th arguments, on the
// stack) are what the callbacks' entry points need. exited: 0 go on, 1 end
// the program with r0 (an exit request, the helper's or a callback's), 2 a
// callback faulted (recorded in jit_fault()).
HelperResult call_slow(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, bh_helper_fn fn, uint64_t state,
                       uint64_t frame_top, const bh_vm *vm) {
  CallbackLink link;
  link.vm = vm;
  link.jit = true;
  link.active = true;
  link.jl = JitLink{state, frame_top};
  CallbackLink *&current = callback_link();
  link.prev = current;
  current = &link;
  ExitRequest &req = exit_request();
  req.requested = false;
  uint64_t r0 = fn(r1, r2, r3, r4, r5);
  current = link.prev;
  if (link.pending == kPendingFault) return HelperResult{0, 2};
  if (link.pending == kPendingExit) {
    req.requested = false;
    return HelperResult{link.exit_value, 1};
  }
  if (!req.requested) return HelperResult{r0, 0};
  req.requested = false;
  return HelperResult{req.ret, 1};
}

// Records a helper's exit request as the interpreter reports it: not a
// fault, but the caller may want to know the program did not reach exit.
void note_exit(uint32_t pc) {
  bh_fault &f = jit_fault();
  f.code = BH_FAULT_HELPER_EXIT;
  f.pc = pc;
  f.addr = 0;
  f.size = 0;
  f.message[0] = '\0';
}

__attribute__((cold)) void raise_fault(int code, uint32_t pc, uint64_t addr, uint32_t size, const bh_vm *vm) {
  bh_fault &f = jit_fault();
  f.code = code;
  f.pc = pc;
  f.addr = addr;
  f.size = size;
  switch (code) {
    case BH_FAULT_BUDGET:
      snprintf(f.message, sizeof f.message, "pc %u: instruction budget of %" PRIu64 " exhausted", pc, vm->budget);
      break;
    case BH_FAULT_CALL_DEPTH:
      snprintf(f.message, sizeof f.message, "pc %u: local calls nest deeper than %d frames", pc, BH_MAX_CALL_DEPTH);
      break;
    case BH_FAULT_BAD_HELPER:
      snprintf(f.message, sizeof f.message, "pc %u: callx to unregistered helper %" PRIu64, pc, addr);
      break;
    default: snprintf(f.message, sizeof f.message, "pc %u: fault %d", pc, code); break;
  }
}

// Checked mode's slow path, reached only when the inline tests (this frame,
// the callers' frames, the context) all failed: regions, or a fault.
// `info` packs pc (bits 0-31), size (32-39) and is_store (40).
int check_access(const bh_vm *vm, uint64_t addr, uint64_t info, uint64_t frame_top, const uint64_t *state) {
  const uint32_t pc = uint32_t(info);
  const uint32_t size = uint32_t(info >> 32) & 0xff;
  const bool is_store = (info >> 40) & 1;
  const uintptr_t stack_top = reinterpret_cast<uintptr_t>(state);
  if (access_ok(vm, uintptr_t(addr), size, is_store, uintptr_t(frame_top - BH_STACK_SIZE), stack_top,
                uintptr_t(state[kStateCtx / 8]), size_t(state[kStateCtxLen / 8]))) {
    return 1;
  }
  bh_fault &f = jit_fault();
  f.code = BH_FAULT_OUT_OF_BOUNDS;
  f.pc = pc;
  f.addr = addr;
  f.size = size;
  if (is_store) {
    snprintf(f.message, sizeof f.message,
             "pc %u: store of %u bytes to 0x%" PRIx64 " outside stack, context and regions", pc, size, addr);
  } else {
    snprintf(f.message, sizeof f.message, "pc %u: load of %u bytes at 0x%" PRIx64 " outside stack, context and regions",
             pc, size, addr);
  }
  return 0;
}

// Checked mode: tests a helper call's arguments before the call. `args` are
// r1..r5 as the generated code pushed them; `frame_top` is r10 (rbp), `state`
// r12 (the top of the stacks). 1: the helper may run; 0: the fault is
// recorded in the thread-local.
int check_call(const bh_vm *vm, const uint64_t *args, uint64_t pc, uint64_t id, uint64_t frame_top,
               const uint64_t *state) {
  // The thread-local is touched only on a fault: reaching it from a shared
  // library costs a __tls_get_addr call.
  bh_fault f;
  if (check_helper_args(vm, uint32_t(id), args, uint32_t(pc), uintptr_t(frame_top - BH_STACK_SIZE),
                        reinterpret_cast<uintptr_t>(state), uintptr_t(state[kStateCtx / 8]),
                        size_t(state[kStateCtxLen / 8]), &f)) {
    return 1;
  }
  jit_fault() = f;
  return 0;
}

// Unsigned division by a constant as a multiply-high (Granlund & Montgomery,
// "Division by invariant integers using multiplication", 1994): clang keeps
// `x / 1000` as a div instruction in BPF, and x86 div costs tens of cycles.
// q = mulhi(n, m) >> shift, or with `add` (when no 64-bit m is exact):
// t = mulhi(n, m); q = (t + ((n - t) >> 1)) >> shift.
struct Reciprocal {
  uint64_t m;
  int shift;
  bool add;
};

// For 64-bit n and 2 <= d < 2^63, d not a power of two.
Reciprocal reciprocal64(uint64_t d) {
  using u128 = unsigned __int128;
  for (int s = 0; s < 64; ++s) {
    const u128 p = u128(1) << (64 + s);
    const u128 m = (p + d - 1) / d;  // ceil(2^(64+s) / d)
    if ((m >> 64) != 0) break;       // only grows with s
    if (m * d - p <= (u128(1) << s)) return Reciprocal{uint64_t(m), s, false};
  }
  const int l = 64 - __builtin_clzll(d - 1);  // ceil(log2(d))
  const u128 m = ((u128(1) << 64) * ((u128(1) << l) - d)) / d + 1;
  return Reciprocal{uint64_t(m), l - 1, true};
}

template <typename F>
uint64_t addr_of(F *fn) {
  return uint64_t(reinterpret_cast<uintptr_t>(fn));
}

Width mem_width(uint8_t opcode) {
  switch (opcode & 0x18) {
    case BH_SIZE_B: return W8;
    case BH_SIZE_H: return W16;
    case BH_SIZE_W: return W32;
    default: return W64;
  }
}

class Compiler {
 public:
  explicit Compiler(const bh_vm *vm)
      : vm_(vm), code_(vm->insts), n_(vm->insts.size()), checked_(vm->checked), budget_(vm->budget != 0) {
    analyze();
  }

  int compile(std::vector<uint8_t> &out, char *err, size_t err_len) {
    pc_label_.resize(n_);
    for (auto &l : pc_label_) l = a_.new_label();
    pops_ = a_.new_label();
    common_fault_ = a_.new_label();
    fault_exit_ = a_.new_label();
    exit_common_ = a_.new_label();
    table_ = a_.new_label();

    prologue();
    for (size_t pc = 0; pc < n_; ++pc) {
      a_.bind(pc_label_[pc]);
      const bh_inst &ins = code_[pc];
      if (jump_target_[pc]) known_r1_ = 0;  // another path may arrive with another r1
      const size_t at = pc;
      switch (ins.opcode & BH_CLS_MASK) {
        case BH_CLS_ALU:
        case BH_CLS_ALU64:
          if (!alu(ins)) return bad(pc, err, err_len);
          break;
        case BH_CLS_LD:
          if (ins.opcode != BH_OP_LDDW || pc + 1 >= n_) return bad(pc, err, err_len);
          a_.mov_imm64(reg(ins.dst), lddw_value(pc));
          ++pc;  // the second slot is data; no jump may land on it
          break;
        case BH_CLS_LDX: ldx(ins, pc); break;
        case BH_CLS_ST:
        case BH_CLS_STX:
          if (!store(ins, pc)) return bad(pc, err, err_len);
          break;
        default:
          if (ins.opcode == BH_OP_CALL && ins.src == BH_CALL_HELPER && ins.imm == 1 && known_r1_ != 0 &&
              inline_lookup(known_r1_))
            break;
          if (!jump(ins, pc)) return bad(pc, err, err_len);
          break;
      }
      known_r1_ = r1_after(ins, at);
    }
    if (!leaf_) shared_tails();
    entries_.clear();
    for (const Callback &cb : vm_->callbacks) {
      a_.align(16, 0xCC);
      entries_.push_back(a_.pos());
      callback_entry(cb.pc);
    }
    // Cold code may queue more cold code (an exit stub from a callx stub), so
    // each closure is moved out before it runs.
    for (size_t i = 0; i < cold_.size(); ++i) {
      std::function<void()> emit = std::move(cold_[i]);
      emit();
    }
    if (need_table_) helper_table();
    // A leaf run has no run state to unwind with: reaching a fault or exit
    // stub there would be a bug in analyze(), refused rather than emitted.
    if (leaf_violation_) return fail(err, err_len, "jit: internal error: a leaf program needs an unwinding path");
    if (!a_.finish()) return fail(err, err_len, "jit: internal error: unresolved or out-of-range jump");
    out = std::move(a_.code());
    return 0;
  }

  std::vector<size_t> entries_;  // callback entry offsets (vm->callbacks order)

  // Whether the code may reach C code: a helper call left after inlining, or
  // any run that is not a leaf (its fault and exit paths). A leaf run that
  // calls nothing touches only general registers and its stack.
  bool reaches_c() const { return calls_c_ || !leaf_; }

 private:
  static Reg reg(uint8_t r) { return kRegMap[r]; }
  using Label = Assembler::Label;

  int bad(size_t pc, char *err, size_t err_len) {
    return fail(err, err_len, "pc %zu: opcode 0x%02x is not supported by the JIT", pc, code_[pc].opcode);
  }

  // What the prologue must provide, from one scan of the program. Over-
  // approximations only cost speed: a field that names a register counts as
  // a use even where the opcode ignores it (the validator keeps such fields
  // zero, and lddw second slots all zero).
  void analyze() {
    bool callx = false;
    bool may_exit = false;
    // Where control may arrive other than from the instruction before: the
    // inline lookup trusts what it knows of r1 only along straight-line code.
    jump_target_.assign(n_ + 1, false);
    for (size_t pc = 0; pc < n_; ++pc) {
      const bh_inst &ins = code_[pc];
      const uint8_t cls = ins.opcode & BH_CLS_MASK;
      if (ins.opcode == BH_OP_LDDW) {
        ++pc;
        continue;
      }
      if (cls != BH_CLS_JMP && cls != BH_CLS_JMP32) continue;
      const uint8_t op = ins.opcode & 0xf0;
      int64_t rel = ins.off;
      if (op == BH_JMP_EXIT || ins.opcode == BH_OP_CALLX) continue;
      if (op == BH_JMP_CALL) {
        if (ins.src != BH_CALL_LOCAL) continue;
        rel = ins.imm;
      } else if (cls == BH_CLS_JMP32 && op == BH_JMP_JA) {
        rel = ins.imm;
      }
      const int64_t t = int64_t(pc) + rel + 1;
      if (t >= 0 && size_t(t) <= n_) jump_target_[size_t(t)] = true;
    }
    for (const Callback &cb : vm_->callbacks)
      if (cb.pc <= n_) jump_target_[cb.pc] = true;
    for (size_t pc = 0; pc < n_; ++pc) {
      const bh_inst &ins = code_[pc];
      named_[ins.dst & 0xf] = true;
      named_[ins.src & 0xf] = true;
      if (ins.opcode == BH_OP_CALLX) {
        callx = true;
      } else if (ins.opcode == BH_OP_CALL && ins.src == BH_CALL_LOCAL) {
        local_calls_ = true;
      } else if (ins.opcode == BH_OP_CALL && ins.src == BH_CALL_HELPER) {
        helper_calls_ = true;
        const uint32_t id = uint32_t(ins.imm);
        // The validator admits registered ids only; be safe regardless.
        if (id >= vm_->helpers.size() || (vm_->helpers[id].flags & (BH_HELPER_MAY_EXIT | BH_HELPER_CALLS_BACK))) {
          may_exit = true;
        }
      }
    }
    // Callbacks are functions entered from helpers: they need the run state
    // (r12), the stack block of BH_MAX_CALL_DEPTH frames and the depth count.
    callbacks_ = !vm_->callbacks.empty();
    if (callbacks_) local_calls_ = true;
    // No fault stub (budget, call depth, callx, checked access) and no exit
    // stub can be reached, so nothing ever unwinds and r12 is not needed.
    leaf_ = !checked_ && !budget_ && !local_calls_ && !callx && !may_exit;
    helper_calls_ = helper_calls_ || callx;
  }

  // The callee-saved host registers of r6..r9 the program names.
  void push_named_r6_r9() {
    for (uint8_t r = 6; r <= 9; ++r) {
      if (named_[r]) saved_.push_back(reg(r));
    }
  }

  // ---- entry and exit ----------------------------------------------------
  void prologue() {
    if (leaf_) {
      leaf_prologue();
    } else {
      full_prologue();
    }
  }

  // A leaf run: the body is the function. Entry rsp is 8 mod 16; after k
  // pushes it is 8 * (k + 1) mod 16, so 8 bytes of padding when k is even
  // make it 16-byte aligned for helper calls and for r10.
  void leaf_prologue() {
    if (named_[BH_REG_FP]) saved_.push_back(RBP);
    push_named_r6_r9();
    for (Reg r : saved_) a_.push(r);
    const int32_t pad = saved_.size() % 2 == 0 ? 8 : 0;
    if (named_[BH_REG_FP]) {
      frame_bytes_ = BH_STACK_SIZE + pad;
    } else if (helper_calls_) {
      frame_bytes_ = pad;
    }
    if (frame_bytes_ != 0) a_.alu_imm(SUB, W64, reg_op(RSP), frame_bytes_);
    if (named_[BH_REG_FP]) a_.lea(RBP, mem_op(RSP, BH_STACK_SIZE));
    // The interpreter starts with every other register zero. r0 is read by
    // exit and cmpxchg; r3..r5 only where named or passed to a helper; r6..r9
    // only where named (and only those were saved).
    a_.zero(RAX);
    for (uint8_t r = 3; r <= 5; ++r) {
      if (named_[r] || helper_calls_) a_.zero(reg(r));
    }
    for (uint8_t r = 6; r <= 9; ++r) {
      if (named_[r]) a_.zero(reg(r));
    }
  }

  // A leaf run's exit: r0 is in rax already.
  void leaf_epilogue() {
    if (frame_bytes_ != 0) a_.alu_imm(ADD, W64, reg_op(RSP), frame_bytes_);
    for (size_t i = saved_.size(); i-- > 0;) a_.pop(saved_[i]);
    a_.ret();
  }

  // A full run: run state at r12, the body entered with `call`.
  void full_prologue() {
    saved_ = {RBP, R12};
    push_named_r6_r9();
    for (Reg r : saved_) a_.push(r);
    const int32_t pad_above = saved_.size() % 2 == 0 ? 8 : 0;  // S 16-byte aligned
    const int32_t stack_block = (local_calls_ ? BH_MAX_CALL_DEPTH : 1) * BH_STACK_SIZE;
    frame_base_ = -(stack_block + kPadBelow);
    saved_regs_ = kStateSize + pad_above;
    frame_bytes_ = kPadBelow + stack_block + kStateSize + pad_above;
    a_.alu_imm(SUB, W64, reg_op(RSP), frame_bytes_);
    a_.lea(kState, mem_op(RSP, -frame_base_));
    if (checked_) {
      a_.store(W64, mem_op(kState, kStateCtx), RDI);
      a_.store(W64, mem_op(kState, kStateCtxLen), RSI);
      // No host data reaches a checked program: the entry frame starts zeroed
      // (rdi comes back from the run state).
      zero_frame(kState);
      a_.load(W64, RDI, mem_op(kState, kStateCtx));
    }
    if (budget_) {
      a_.mov_imm64(R10, vm_->budget);
      a_.store(W64, mem_op(kState, kStateBudget), R10);
    }
    if (local_calls_) a_.store_imm(W32, mem_op(kState, kStateDepth), BH_MAX_CALL_DEPTH - 1);
    a_.mov(W64, RBP, kState);
    // The interpreter starts with every other register zero; so do we, so
    // that even a program reading an unset register behaves the same (r6..r9
    // it does not name cannot be read, and were not saved).
    for (Reg r : {RAX, RDX, RCX, R8}) a_.zero(r);
    for (uint8_t r = 6; r <= 9; ++r) {
      if (named_[r]) a_.zero(reg(r));
    }
    const Label body = a_.new_label();
    a_.lea(R10, mem_op(RSP, -8));
    a_.store(W64, mem_op(kState, kStateUnwind), R10);
    a_.call(body);
    // Normal end, or an unwinding `ret`: r0 is in rax already.
    a_.alu_imm(ADD, W64, reg_op(RSP), frame_bytes_);
    a_.bind(pops_);
    for (size_t i = saved_.size(); i-- > 0;) a_.pop(saved_[i]);
    a_.ret();
    a_.bind(body);
  }

  // Unwinding targets shared by all sites of a full run. Each resets rsp to
  // the innermost entry's unwind point first (the slot holding the return
  // address of its `call body`, 16-byte aligned), so it may be entered at any
  // call depth and with anything pushed, and ends with the `ret` that body
  // would have executed: the program's entry then returns to its caller, a
  // callback's entry to the helper that invoked it.
  void shared_tails() {
    // edi = code, esi = pc, rdx = addr, ecx = size.
    a_.bind(common_fault_);
    a_.load(W64, RSP, mem_op(kState, kStateUnwind));
    a_.mov_imm64(R8, addr_of(vm_));
    a_.mov_imm64(R10, addr_of(&raise_fault));
    a_.call(R10);
    a_.bind(fault_exit_);  // the fault is recorded; the body returns 0
    a_.load(W64, RSP, mem_op(kState, kStateUnwind));
    a_.zero(RAX);
    a_.ret();

    // edi = pc, rax = the value the helper asked the program to return,
    // kept below the unwind point (two slots keep the call aligned).
    a_.bind(exit_common_);
    a_.load(W64, RSP, mem_op(kState, kStateUnwind));
    a_.push(RAX);
    a_.alu_imm(SUB, W64, reg_op(RSP), 8);
    a_.mov_imm64(R10, addr_of(&note_exit));
    a_.call(R10);
    a_.alu_imm(ADD, W64, reg_op(RSP), 8);
    a_.pop(RAX);
    a_.ret();
  }

  // A callback's entry point, a C function: uint64_t (r1..r5 in rdi, rsi,
  // rdx, rcx, r8; r9 = const JitLink *). It saves the host's callee-saved
  // registers, takes the run state and the caller's frame from the link,
  // makes itself the unwind point and enters the callback's code with a
  // fresh frame below the caller's, as a local call would (depth, budget,
  // zeroed frame in checked mode). Rsp: 8 mod 16 at entry, six pushes keep
  // it so, the saved unwind slot and 8 bytes of padding make the body's rsp
  // 0 mod 16 after the call.
  void callback_entry(uint32_t target) {
    for (Reg r : {RBP, R12, RBX, R13, R14, R15}) a_.push(r);
    a_.load(W64, kState, mem_op(R9, 0));
    a_.load(W64, RBP, mem_op(R9, 8));
    a_.alu_imm(SUB, W64, reg_op(RBP), BH_STACK_SIZE);
    a_.load(W64, R10, mem_op(kState, kStateUnwind));
    a_.push(R10);
    a_.alu_imm(SUB, W64, reg_op(RSP), 8);
    a_.lea(R10, mem_op(RSP, -8));
    a_.store(W64, mem_op(kState, kStateUnwind), R10);
    // r0 and r6..r9 start at zero, as in the interpreter's nested run.
    for (Reg r : {RAX, RBX, R13, R14, R15}) a_.zero(r);
    const Label enter = a_.new_label();
    a_.call(enter);
    // The body returned (or was unwound): r0 in rax. Give the frame back.
    a_.alu_imm(ADD, W32, mem_op(kState, kStateDepth), 1);
    a_.alu_imm(ADD, W64, reg_op(RSP), 8);
    a_.pop(R10);
    a_.store(W64, mem_op(kState, kStateUnwind), R10);
    for (Reg r : {R15, R14, R13, RBX, R12, RBP}) a_.pop(r);
    a_.ret();

    a_.bind(enter);
    a_.alu_imm(SUB, W32, mem_op(kState, kStateDepth), 1);
    a_.jcc(CC_B, fault_stub(BH_FAULT_CALL_DEPTH, target));
    if (budget_) charge(target, 1);
    if (checked_) {
      for (Reg r : {RAX, RDI, RCX}) a_.push(r);
      zero_frame(RBP);
      for (Reg r : {RCX, RDI, RAX}) a_.pop(r);
    }
    a_.jmp(pc_label_[target]);
  }

  // A cold stub that reports fault `code` at `pc`; `addr` (if given) is the
  // register holding the fault's address field.
  Label fault_stub(int code, size_t pc, int addr = -1) {
    if (leaf_) leaf_violation_ = true;
    const Label l = a_.new_label();
    cold_.push_back([this, l, code, pc, addr] {
      a_.bind(l);
      if (addr >= 0) {
        a_.mov(W64, RDX, Reg(addr));  // first: addr may be rdi, rsi or rcx
      } else {
        a_.zero(RDX);
      }
      a_.zero(RCX);
      a_.mov_imm32(RDI, uint32_t(code));
      a_.mov_imm32(RSI, uint32_t(pc));
      a_.jmp(common_fault_);
    });
    return l;
  }

  // After call_slow: edx 1 ends the program with rax (as exit_stub), 2 means
  // a callback faulted and the fault is already recorded.
  Label slow_stub(size_t pc) {
    if (leaf_) leaf_violation_ = true;
    const Label l = a_.new_label();
    cold_.push_back([this, l, pc] {
      a_.bind(l);
      a_.alu_imm(CMP, W32, reg_op(RDX), 2);
      a_.jcc(CC_E, fault_exit_);
      a_.mov_imm32(RDI, uint32_t(pc));
      a_.jmp(exit_common_);
    });
    return l;
  }

  // Calls `fn` (in r9) through call_slow; rbp and r12 go on the stack as its
  // 7th and 8th arguments, the vm as the 9th (four pushes keep rsp aligned).
  void emit_call_slow(size_t pc) {
    a_.mov_imm64(R10, addr_of(vm_));
    a_.push(R10);
    a_.push(R10);
    a_.push(RBP);
    a_.push(kState);
    a_.mov_imm64(R10, addr_of(&call_slow));
    a_.call(R10);
    a_.alu_imm(ADD, W64, reg_op(RSP), 32);
    a_.test(W32, RDX, RDX);
    a_.jcc(CC_NE, slow_stub(pc));
  }

  Label exit_stub(size_t pc) {
    if (leaf_) leaf_violation_ = true;
    const Label l = a_.new_label();
    cold_.push_back([this, l, pc] {
      a_.bind(l);
      a_.mov_imm32(RDI, uint32_t(pc));
      a_.jmp(exit_common_);
    });
    return l;
  }

  // ---- budget ------------------------------------------------------------
  void charge(size_t pc, uint64_t insts) {
    const int32_t amount = insts > uint64_t(INT32_MAX) ? INT32_MAX : int32_t(insts);
    a_.alu_imm(SUB, W64, mem_op(kState, kStateBudget), amount);
    a_.jcc(CC_B, fault_stub(BH_FAULT_BUDGET, pc));
  }

  // Jumps to `target`; a taken backward jump pays for the instructions it
  // goes back over, so every loop iteration costs at least one unit.
  void jump_to(size_t pc, size_t target, bool always, Cond cc) {
    if (!budget_ || target > pc) {
      if (always) {
        a_.jmp(pc_label_[target]);
      } else {
        a_.jcc(cc, pc_label_[target]);
      }
      return;
    }
    const Label skip = a_.new_label();
    if (!always) a_.jcc_short(negate(cc), skip);
    charge(pc, pc - target + 1);
    a_.jmp(pc_label_[target]);
    a_.bind(skip);
  }

  // ---- checked mode ----------------------------------------------------------
  // Emits the test that [base + off, + size) may be accessed. The inline part
  // only admits the current frame; the cold stub then tries the callers'
  // frames and the context inline and calls check_access for the rest.
  void guard(size_t pc, Reg base, int16_t off, Width size, bool is_store) {
    if (!checked_) return;
    if (leaf_) leaf_violation_ = true;
    const int32_t sz = int32_t(size);
    const Label stub = a_.new_label();
    const Label back = a_.new_label();
    if (base == RBP) {
      // r10 is fixed per frame, so its accesses are decided here.
      if (off >= -BH_STACK_SIZE && off + sz <= 0) return;
      a_.jmp(stub);
    } else {
      // t = (rbp - size) - addr must lie in [0, 512 - size] (unsigned).
      a_.lea(R10, mem_op(RBP, -(int32_t(off) + sz)));
      a_.alu(SUB, W64, reg_op(R10), base);
      a_.alu_imm(CMP, W64, reg_op(R10), BH_STACK_SIZE - sz);
      a_.jcc(CC_A, stub);
    }
    a_.bind(back);
    cold_.push_back([this, stub, back, base, off, sz, is_store, pc] {
      const Label slow = a_.new_label();
      a_.bind(stub);
      // Callers' frames: addr - (rbp - 512) <= (r12 - rbp + 512) - size.
      a_.lea(R10, mem_op(base, int32_t(off) + BH_STACK_SIZE));
      a_.alu(SUB, W64, reg_op(R10), RBP);
      a_.mov(W64, R11, kState);
      a_.alu(SUB, W64, reg_op(R11), RBP);
      a_.alu_imm(ADD, W64, reg_op(R11), BH_STACK_SIZE - sz);
      a_.alu(CMP, W64, reg_op(R10), R11);
      a_.jcc(CC_BE, back);
      // The context: 0 <= addr - ctx and addr - ctx + size <= ctx_len.
      a_.lea(R10, mem_op(base, off));
      a_.alu_load(SUB, W64, R10, mem_op(kState, kStateCtx));
      a_.jcc_short(CC_B, slow);
      a_.alu_imm(ADD, W64, reg_op(R10), sz);
      a_.jcc_short(CC_B, slow);
      a_.alu_load(CMP, W64, R10, mem_op(kState, kStateCtxLen));
      a_.jcc(CC_BE, back);
      a_.bind(slow);
      // Caller-saved eBPF registers survive the C call; six pushes keep rsp
      // aligned.
      for (Reg r : {RAX, RDI, RSI, RDX, RCX, R8}) a_.push(r);
      a_.lea(RSI, mem_op(base, off));  // before rdi/rdx/rcx are overwritten
      a_.mov_imm64(RDI, addr_of(vm_));
      a_.mov_imm64(RDX, uint64_t(uint32_t(pc)) | (uint64_t(sz) << 32) | (uint64_t(is_store) << 40));
      a_.mov(W64, RCX, RBP);
      a_.mov(W64, R8, kState);
      a_.mov_imm64(R10, addr_of(&check_access));
      a_.call(R10);
      a_.test(W32, RAX, RAX);
      for (Reg r : {R8, RCX, RDX, RSI, RDI, RAX}) a_.pop(r);  // pop keeps the flags
      a_.jcc(CC_E, fault_exit_);
      a_.jmp(back);
    });
  }

  // Zeroes the 512-byte frame below `top` with rep stosq; clobbers rdi, rcx
  // and rax (callers save what is live).
  void zero_frame(Reg top) {
    a_.lea(RDI, mem_op(top, -BH_STACK_SIZE));
    a_.mov_imm32(RCX, BH_STACK_SIZE / 8);
    a_.zero(RAX);
    a_.u8(0xF3);  // rep stosq
    a_.u8(0x48);
    a_.u8(0xAB);
  }

  // Whether a static call of `h` has anything to check: helpers whose
  // arguments are all numbers skip the call to check_call.
  static bool needs_arg_check(const Helper &h) {
    if (!h.has_proto) return (h.flags & BH_HELPER_ARGS_SCALAR) == 0;
    return h.check_upto != 0;
  }

  // Checked mode: calls check_call with r1..r5 before helper `id` (or the id
  // in register `id_reg`, for callx) runs; a bad argument ends the run.
  void check_call_args(size_t pc, uint32_t id, int id_reg) {
    // r1..r5 as an array in memory, pushed in reverse; one more slot keeps
    // rsp 16-byte aligned for the call. That slot keeps r0 (rax, which the
    // check's return value overwrites): callx may hold its helper id in r0.
    for (Reg r : {RAX, R8, RCX, RDX, RSI, RDI}) a_.push(r);
    if (id_reg >= 0) {
      a_.mov(W64, R11, Reg(id_reg));  // before any argument register changes
    } else {
      a_.mov_imm32(R11, id);
    }
    a_.mov(W64, RSI, RSP);
    a_.mov(W64, RCX, R11);
    a_.mov_imm64(RDI, addr_of(vm_));
    a_.mov_imm32(RDX, uint32_t(pc));
    a_.mov(W64, R8, RBP);
    a_.mov(W64, R9, kState);
    a_.mov_imm64(R10, addr_of(&check_call));
    a_.call(R10);
    a_.test(W32, RAX, RAX);
    for (Reg r : {RDI, RSI, RDX, RCX, R8, RAX}) a_.pop(r);  // pop keeps the flags
    a_.jcc(CC_E, fault_exit_);
  }

  // ---- ALU -------------------------------------------------------------------
  bool alu(const bh_inst &ins) {
    const bool is64 = (ins.opcode & BH_CLS_MASK) == BH_CLS_ALU64;
    const Width w = is64 ? W64 : W32;
    const bool x = (ins.opcode & BH_SRC_X) != 0;
    const Reg d = reg(ins.dst);
    const Reg s = reg(ins.src);
    const int32_t imm = ins.imm;
    switch (ins.opcode & 0xf0) {
      case BH_ALU_ADD: binop(ADD, w, d, x, s, imm); return true;
      case BH_ALU_SUB: binop(SUB, w, d, x, s, imm); return true;
      case BH_ALU_OR: binop(OR, w, d, x, s, imm); return true;
      case BH_ALU_AND: binop(AND, w, d, x, s, imm); return true;
      case BH_ALU_XOR: binop(XOR, w, d, x, s, imm); return true;
      case BH_ALU_MUL:
        if (x) {
          a_.imul(w, d, s);
        } else {
          a_.imul_imm(w, d, d, imm);
        }
        return true;
      case BH_ALU_DIV:
      case BH_ALU_MOD: div_mod(is64, (ins.opcode & 0xf0) == BH_ALU_MOD, ins.off == 1, d, x, s, imm); return true;
      case BH_ALU_LSH: shift(SHL, is64, d, x, s, imm); return true;
      case BH_ALU_RSH: shift(SHR, is64, d, x, s, imm); return true;
      case BH_ALU_ARSH: shift(SAR, is64, d, x, s, imm); return true;
      case BH_ALU_NEG: a_.unary(NEG, w, d); return true;
      case BH_ALU_MOV:
        if (!x) {
          if (is64) {
            a_.mov_imm64(d, uint64_t(int64_t(imm)));
          } else if (imm == 0) {
            a_.zero(d);
          } else {
            a_.mov_imm32(d, uint32_t(imm));
          }
        } else if (ins.off == 8 || ins.off == 16) {
          a_.movsx(w, d, ins.off == 8 ? W8 : W16, reg_op(s));
        } else if (ins.off == 32 && is64) {
          a_.movsx(W64, d, W32, reg_op(s));
        } else if (!is64 || d != s) {
          a_.mov(w, d, s);  // mov32 to itself still clears the upper half
        }
        return true;
      case BH_ALU_END: byte_swap(is64, x, d, ins.imm); return true;
      default: return false;
    }
  }

  void binop(AluOp op, Width w, Reg d, bool x, Reg s, int32_t imm) {
    if (x) {
      a_.alu(op, w, reg_op(d), s);
      return;
    }
    // Identities need no code in 64-bit; a 32-bit op must still zero-extend.
    if (w == W64 && ((imm == 0 && op != AND) || (imm == -1 && op == AND))) return;
    a_.alu_imm(op, w, reg_op(d), imm);
  }

  void shift(ShiftOp op, bool is64, Reg d, bool x, Reg s, int32_t imm) {
    const Width w = is64 ? W64 : W32;
    if (!x) {
      const uint8_t n = uint8_t(imm & (is64 ? 63 : 31));
      if (n != 0) {
        a_.shift_imm(op, w, d, n);
      } else if (!is64) {
        a_.mov(W32, d, d);
      }
      return;
    }
    // x86 takes the count in cl and masks it like the ISA does; rcx is r4,
    // so park it in r11 unless the count already is r4.
    if (s == RCX) {
      a_.shift_cl(op, w, d);
      return;
    }
    a_.mov(W64, R11, RCX);
    a_.mov(W32, RCX, s);
    if (d == RCX) {
      a_.shift_cl(op, w, R11);  // shift r4's value where it was parked
    } else {
      a_.shift_cl(op, w, d);
    }
    a_.mov(W64, RCX, R11);
  }

  void byte_swap(bool is64, bool x, Reg d, int32_t bits) {
    const bool to_be = is64 || x;  // ALU64 swaps unconditionally
    if (!to_be) {
      // To little-endian on a little-endian host: truncate only.
      if (bits == 16) {
        a_.movzx(d, W16, reg_op(d));
      } else if (bits == 32) {
        a_.mov(W32, d, d);
      }
      return;
    }
    if (bits == 16) {
      a_.insn(W16, {0xC1}, ROR, reg_op(d));  // ror r16, 8
      a_.u8(8);
      a_.movzx(d, W16, reg_op(d));
    } else {
      a_.bswap(bits == 32 ? W32 : W64, d);
    }
  }

  // Division with the ISA's total semantics. x86 div/idiv use rdx:rax (r3 and
  // r0) and trap on zero and on INT_MIN / -1, so those cases are tested first
  // (or decided at compile time for an immediate) and r0/r3 are preserved in
  // r9/r10 around the instruction.
  void div_mod(bool is64, bool is_mod, bool is_signed, Reg d, bool x, Reg s, int32_t imm) {
    const Width w = is64 ? W64 : W32;
    const Label done = a_.new_label();
    const Label by_zero = a_.new_label();
    const Label by_minus_one = a_.new_label();
    if (!x) {
      if (imm == 0) {  // rejected by the validator; kept total all the same
        zero_divisor(is64, is_mod, d);
        return;
      }
      if (is_signed && imm == -1) {
        minus_one_divisor(w, is_mod, d);
        return;
      }
      if (!is_signed && div_by_constant(is64, is_mod, d, is64 ? uint64_t(int64_t(imm)) : uint64_t(uint32_t(imm)))) {
        return;
      }
      if (is64) {
        a_.mov_imm64(R11, uint64_t(int64_t(imm)));
      } else {
        a_.mov_imm32(R11, uint32_t(imm));
      }
    } else {
      a_.mov(W64, R11, s);  // copy first: s may be rax or rdx
      a_.test(w, R11, R11);
      a_.jcc_short(CC_E, by_zero);
      if (is_signed) {
        a_.alu_imm(CMP, w, reg_op(R11), -1);
        a_.jcc_short(CC_E, by_minus_one);
      }
    }
    if (d != RAX) a_.mov(W64, R9, RAX);
    if (d != RDX) a_.mov(W64, R10, RDX);
    if (d != RAX) a_.mov(W64, RAX, d);
    if (is_signed) {
      if (is64) {
        a_.cqo();
      } else {
        a_.cdq();
      }
      a_.unary(IDIV, w, R11);
    } else {
      a_.zero(RDX);
      a_.unary(DIV, w, R11);
    }
    // 32-bit div already zero-extended eax and edx.
    const Reg result = is_mod ? RDX : RAX;
    if (d != result) a_.mov(W64, d, result);
    if (d != RAX) a_.mov(W64, RAX, R9);
    if (d != RDX) a_.mov(W64, RDX, R10);
    if (!x) return;
    a_.jmp_short(done);
    a_.bind(by_zero);
    zero_divisor(is64, is_mod, d);
    if (is_signed) {
      a_.jmp_short(done);
      a_.bind(by_minus_one);
      minus_one_divisor(w, is_mod, d);
    }
    a_.bind(done);
  }

  // Unsigned n / d or n % d for a constant d >= 1 without a div instruction.
  // False for 64-bit divisors of 2^63 and up (a negative imm), which keep
  // the div: programs do not divide by those in loops.
  bool div_by_constant(bool is64, bool is_mod, Reg d, uint64_t divisor) {
    const Width w = is64 ? W64 : W32;
    if ((divisor & (divisor - 1)) == 0) {
      const int k = __builtin_ctzll(divisor);
      if (!is_mod) {
        if (k != 0) {
          a_.shift_imm(SHR, w, d, uint8_t(k));
        } else if (!is64) {
          a_.mov(W32, d, d);
        }
      } else if (divisor - 1 <= uint64_t(INT32_MAX)) {
        a_.alu_imm(AND, w, reg_op(d), int32_t(divisor - 1));
      } else {
        a_.mov_imm64(R11, divisor - 1);  // 32-bit masks past 2^31 never get here
        a_.alu(AND, w, reg_op(d), R11);
      }
      return true;
    }
    if (is64 && divisor >= (uint64_t(1) << 63)) return false;
    // n in r11; mul takes rax and writes rdx:rax, so r0/r3 are kept in r9/r10
    // unless they are the destination.
    if (d != RAX) a_.mov(W64, R9, RAX);
    if (d != RDX) a_.mov(W64, R10, RDX);
    a_.mov(w, R11, d);  // the 32-bit form reads the low half only
    Reg q = RDX;
    if (is64) {
      const Reciprocal r = reciprocal64(divisor);
      a_.mov_imm64(RAX, r.m);
      a_.unary(MUL, W64, R11);
      if (r.add) {
        a_.mov(W64, RAX, R11);
        a_.alu(SUB, W64, reg_op(RAX), RDX);
        a_.shift_imm(SHR, W64, RAX, 1);
        a_.alu(ADD, W64, reg_op(RAX), RDX);
        q = RAX;
      }
      if (r.shift != 0) a_.shift_imm(SHR, W64, q, uint8_t(r.shift));
    } else {
      // For 32-bit n and d, n / d = mulhi64(n, ceil(2^64 / d)) exactly
      // (Lemire, Kaser & Kurz, "Faster remainder by direct computation").
      const uint64_t c = uint64_t(((unsigned __int128)1 << 64) / divisor) + 1;
      a_.mov_imm64(RAX, c);
      a_.unary(MUL, W64, R11);
    }
    Reg result = q;
    if (is_mod) {
      // n - q * d; d fits imul's sign-extended imm32 (64-bit: it came from
      // one; 32-bit: only the low half of the product matters).
      a_.imul_imm(w, q, q, int32_t(uint32_t(divisor)));
      a_.alu(SUB, w, reg_op(R11), q);
      result = R11;
    }
    if (d != result) a_.mov(W64, d, result);
    if (d != RAX) a_.mov(W64, RAX, R9);
    if (d != RDX) a_.mov(W64, RDX, R10);
    return true;
  }

  // x / 0 = 0; x % 0 = x (truncated to 32 bits for the 32-bit form).
  void zero_divisor(bool is64, bool is_mod, Reg d) {
    if (!is_mod) {
      a_.zero(d);
    } else if (!is64) {
      a_.mov(W32, d, d);
    }
  }

  // x / -1 = -x (INT_MIN stays INT_MIN, as the ISA wants); x % -1 = 0.
  void minus_one_divisor(Width w, bool is_mod, Reg d) {
    if (is_mod) {
      a_.zero(d);
    } else {
      a_.unary(NEG, w, d);
    }
  }

  // ---- memory ------------------------------------------------------------------
  void ldx(const bh_inst &ins, size_t pc) {
    const Width w = mem_width(ins.opcode);
    const Reg d = reg(ins.dst);
    const Reg base = reg(ins.src);
    guard(pc, base, ins.off, w, false);
    if ((ins.opcode & 0xe0) == BH_MODE_MEMSX) {
      a_.movsx(W64, d, w, mem_op(base, ins.off));
    } else {
      a_.load(w, d, mem_op(base, ins.off));
    }
  }

  bool store(const bh_inst &ins, size_t pc) {
    const Width w = mem_width(ins.opcode);
    const Reg base = reg(ins.dst);
    const Reg s = reg(ins.src);
    const Operand mem = mem_op(base, ins.off);
    const uint8_t mode = ins.opcode & 0xe0;
    guard(pc, base, ins.off, w, true);
    if (mode == BH_MODE_MEM) {
      if ((ins.opcode & BH_CLS_MASK) == BH_CLS_ST) {
        a_.store_imm(w, mem, ins.imm);
      } else {
        a_.store(w, mem, s);
      }
      return true;
    }
    if (mode != BH_MODE_ATOMIC || (w != W32 && w != W64)) return false;
    switch (ins.imm) {
      case BH_ATOMIC_ADD: a_.lock_alu(ADD, w, mem, s); return true;
      case BH_ATOMIC_OR: a_.lock_alu(OR, w, mem, s); return true;
      case BH_ATOMIC_AND: a_.lock_alu(AND, w, mem, s); return true;
      case BH_ATOMIC_XOR: a_.lock_alu(XOR, w, mem, s); return true;
      case BH_ATOMIC_ADD | BH_ATOMIC_FETCH: a_.lock_xadd(w, mem, s); return true;
      case BH_ATOMIC_XCHG: a_.xchg(w, mem, s); return true;
      case BH_ATOMIC_CMPXCHG:
        a_.lock_cmpxchg(w, mem, s);
        // On success a 32-bit cmpxchg leaves rax's upper half alone; the ISA
        // puts the zero-extended old value in r0 either way.
        if (w == W32) a_.mov(W32, RAX, RAX);
        return true;
      case BH_ATOMIC_OR | BH_ATOMIC_FETCH: fetch_loop(OR, w, base, ins.off, s); return true;
      case BH_ATOMIC_AND | BH_ATOMIC_FETCH: fetch_loop(AND, w, base, ins.off, s); return true;
      case BH_ATOMIC_XOR | BH_ATOMIC_FETCH: fetch_loop(XOR, w, base, ins.off, s); return true;
      default: return false;
    }
  }

  // Fetch-and-{or,and,xor} have no single x86 instruction: a cmpxchg loop,
  // which needs rax (r0), saved on the stack unless r0 is the result.
  void fetch_loop(AluOp op, Width w, Reg base, int16_t off, Reg s) {
    if (s != RAX) a_.push(RAX);
    a_.lea(R10, mem_op(base, off));
    a_.mov(W64, R11, s);
    a_.load(w, RAX, mem_op(R10, 0));
    const Label again = a_.new_label();
    a_.bind(again);
    a_.mov(W64, R9, RAX);
    a_.alu(op, w, reg_op(R9), R11);
    a_.lock_cmpxchg(w, mem_op(R10, 0), R9);
    a_.jcc(CC_NE, again);
    if (s != RAX) {
      a_.mov(w, s, RAX);
      a_.pop(RAX);
    } else if (w == W32) {
      a_.mov(W32, RAX, RAX);
    }
  }

  // ---- jumps and calls ---------------------------------------------------------
  bool jump(const bh_inst &ins, size_t pc) {
    const bool is32 = (ins.opcode & BH_CLS_MASK) == BH_CLS_JMP32;
    const Width w = is32 ? W32 : W64;
    const bool x = (ins.opcode & BH_SRC_X) != 0;
    const uint8_t op = ins.opcode & 0xf0;
    const Reg d = reg(ins.dst);
    const Reg s = reg(ins.src);
    switch (op) {
      case BH_JMP_JA: {
        const int64_t rel = is32 ? int64_t(ins.imm) : int64_t(ins.off);
        if (rel != 0) jump_to(pc, size_t(int64_t(pc) + rel + 1), true, CC_E);
        return true;
      }
      case BH_JMP_EXIT:
        if (leaf_) {
          leaf_epilogue();
        } else {
          a_.ret();
        }
        return true;
      case BH_JMP_CALL:
        if (is32) return false;
        if (x) {
          callx(d, pc);
        } else if (ins.src == BH_CALL_LOCAL) {
          local_call(pc, size_t(int64_t(pc) + int64_t(ins.imm) + 1));
        } else if (ins.src == BH_CALL_HELPER) {
          helper_call(uint32_t(ins.imm), pc);
        } else {
          return false;
        }
        return true;
      default: break;
    }
    Cond cc;
    switch (op) {
      case BH_JMP_JEQ: cc = CC_E; break;
      case BH_JMP_JNE: cc = CC_NE; break;
      case BH_JMP_JGT: cc = CC_A; break;
      case BH_JMP_JGE: cc = CC_AE; break;
      case BH_JMP_JLT: cc = CC_B; break;
      case BH_JMP_JLE: cc = CC_BE; break;
      case BH_JMP_JSGT: cc = CC_G; break;
      case BH_JMP_JSGE: cc = CC_GE; break;
      case BH_JMP_JSLT: cc = CC_L; break;
      case BH_JMP_JSLE: cc = CC_LE; break;
      case BH_JMP_JSET: cc = CC_NE; break;
      default: return false;
    }
    if (ins.off == 0) return true;  // both ways lead to the next instruction
    if (op == BH_JMP_JSET) {
      if (x) {
        a_.test(w, d, s);
      } else {
        a_.test_imm(w, reg_op(d), ins.imm);
      }
    } else if (x) {
      a_.alu(CMP, w, reg_op(d), s);
    } else if (ins.imm == 0) {
      // test sets ZF/SF and clears CF/OF exactly as cmp with 0 would.
      a_.test(w, d, d);
    } else {
      a_.alu_imm(CMP, w, reg_op(d), ins.imm);
    }
    jump_to(pc, size_t(int64_t(pc) + ins.off + 1), false, cc);
    return true;
  }

  uint64_t lddw_value(size_t pc) const {
    return uint64_t(uint32_t(code_[pc].imm)) | (uint64_t(uint32_t(code_[pc + 1].imm)) << 32);
  }

  // The map pointer r1 holds after `ins` (at `pc`), from what it held before
  // (known_r1_): set by an lddw of a map, kept by an instruction that writes
  // another register, lost by anything else (a write to r1, a call, exit).
  uint64_t r1_after(const bh_inst &ins, size_t pc) const {
    switch (ins.opcode & BH_CLS_MASK) {
      case BH_CLS_LD:
        if (ins.dst != 1) return known_r1_;
        return pc < vm_->map_lddw.size() && vm_->map_lddw[pc] ? lddw_value(pc) : 0;
      case BH_CLS_ALU:
      case BH_CLS_ALU64:
      case BH_CLS_LDX: return ins.dst == 1 ? 0 : known_r1_;
      case BH_CLS_ST:
      case BH_CLS_STX:
        // Atomics with BH_ATOMIC_FETCH write their src register (cmpxchg r0).
        return (ins.opcode & 0xe0) == BH_MODE_ATOMIC && (ins.imm & BH_ATOMIC_FETCH) && ins.src == 1 ? 0 : known_r1_;
      default:  // conditional jumps write no register
        return (ins.opcode & 0xf0) == BH_JMP_CALL || (ins.opcode & 0xf0) == BH_JMP_EXIT ? 0 : known_r1_;
    }
  }

  // bpf_map_lookup_elem on an array whose map pointer r1 is known here: the
  // kernel's inline form (array_map_gen_lookup). r2 (rsi) points at the u32
  // key, as the helper would read it; r1..r5 are dead after a call, so only
  // r0 (rax) and the scratch r11 change. False: emit the call.
  bool inline_lookup(uint64_t map) {
    if (checked_ || budget_ || vm_->inline_lookup == nullptr) return false;
    if (vm_->helpers.size() < 2 || vm_->helpers[1].fn == nullptr) return false;
    bh_vm_map m{};
    m.sz = sizeof m;
    if (vm_->inline_lookup(vm_->inline_lookup_cookie, reinterpret_cast<const void *>(uintptr_t(map)), &m) != 0)
      return false;
    if (m.type != 2 || m.value_base == 0 || m.max_entries == 0 || m.value_stride == 0 ||
        m.value_stride > uint64_t(INT32_MAX))
      return false;
    const Label done = a_.new_label();
    a_.load(W32, R11, mem_op(RSI, 0));
    a_.zero(RAX);
    a_.alu_imm(CMP, W32, reg_op(R11), int32_t(m.max_entries));
    a_.jcc(CC_AE, done);
    a_.imul_imm(W64, R11, R11, int32_t(m.value_stride));
    a_.mov_imm64(RAX, m.value_base);
    a_.alu(ADD, W64, reg_op(RAX), R11);
    a_.bind(done);
    return true;
  }

  void helper_call(uint32_t id, size_t pc) {
    calls_c_ = true;
    const Helper &h = vm_->helpers[id];
    if (checked_ && needs_arg_check(h)) check_call_args(pc, id, -1);
    if (h.flags & BH_HELPER_CALLS_BACK) {
      a_.mov_imm64(R9, addr_of(h.fn));
      emit_call_slow(pc);
    } else if (h.flags & BH_HELPER_MAY_EXIT) {
      a_.mov_imm64(R9, addr_of(h.fn));
      a_.mov_imm64(R10, addr_of(&call_may_exit));
      a_.call(R10);
      a_.test(W32, RDX, RDX);
      a_.jcc(CC_NE, exit_stub(pc));
    } else {
      a_.mov_imm64(R10, addr_of(h.fn));
      a_.call(R10);
    }
  }

  // callx: the id is known only at run time; the table (emitted after the
  // code) holds each id's function and flags, 16 bytes per id.
  void callx(Reg d, size_t pc) {
    calls_c_ = true;
    const size_t n_helpers = vm_->helpers.size();
    const Label bad = fault_stub(BH_FAULT_BAD_HELPER, pc, d);
    // An unregistered id passes the check and faults as BAD_HELPER below.
    if (checked_) check_call_args(pc, 0, d);
    if (n_helpers == 0) {
      a_.jmp(bad);
      return;
    }
    need_table_ = true;
    a_.mov(W64, R11, d);
    a_.alu_imm(CMP, W64, reg_op(R11), int32_t(n_helpers));
    a_.jcc(CC_AE, bad);
    a_.shift_imm(SHL, W64, R11, 4);
    a_.lea(R10, rip_label(table_));
    a_.alu(ADD, W64, reg_op(R11), R10);
    a_.load(W64, R10, mem_op(R11, 0));
    a_.test(W64, R10, R10);
    a_.jcc(CC_E, bad);
    const Label may_exit = a_.new_label();
    const Label back = a_.new_label();
    a_.test_imm(W32, mem_op(R11, 8), BH_HELPER_MAY_EXIT | BH_HELPER_CALLS_BACK);
    a_.jcc(CC_NE, may_exit);
    a_.call(R10);
    a_.bind(back);
    cold_.push_back([this, may_exit, back, pc] {
      a_.bind(may_exit);
      a_.mov(W64, R9, R10);
      emit_call_slow(pc);
      a_.jmp(back);
    });
  }

  void helper_table() {
    a_.align(16, 0xCC);
    a_.bind(table_);
    for (const Helper &h : vm_->helpers) {
      a_.u64(addr_of(h.fn));
      a_.u64(h.flags);
    }
  }

  // A local call gets the next 512-byte frame below its caller's; r6..r9 and
  // r10 are saved on the native stack and restored after it returns.
  void local_call(size_t pc, size_t target) {
    if (leaf_) leaf_violation_ = true;
    a_.alu_imm(SUB, W32, mem_op(kState, kStateDepth), 1);
    a_.jcc(CC_B, fault_stub(BH_FAULT_CALL_DEPTH, pc));
    if (budget_) charge(pc, target <= pc ? pc - target + 1 : 1);
    for (Reg r : {RBX, R13, R14, R15, RBP}) a_.push(r);
    a_.alu_imm(SUB, W64, reg_op(RBP), BH_STACK_SIZE);
    if (checked_) {
      // The callee's frame starts zeroed too (it may hold an earlier callee's data).
      for (Reg r : {RAX, RDI, RCX}) a_.push(r);
      zero_frame(RBP);
      for (Reg r : {RCX, RDI, RAX}) a_.pop(r);
    }
    a_.call(pc_label_[target]);
    for (Reg r : {RBP, R15, R14, R13, RBX}) a_.pop(r);
    a_.alu_imm(ADD, W32, mem_op(kState, kStateDepth), 1);
  }

  const bh_vm *vm_;
  const std::vector<bh_inst> &code_;
  const size_t n_;
  const bool checked_;
  const bool budget_;
  Assembler a_;
  std::vector<Label> pc_label_;
  std::vector<std::function<void()>> cold_;
  Label pops_ = 0, common_fault_ = 0, fault_exit_ = 0, exit_common_ = 0, table_ = 0;
  bool need_table_ = false;
  // From analyze(): registers the program names (by field), its calls, and
  // whether it runs as a leaf.
  bool named_[16] = {};
  std::vector<bool> jump_target_;  // index pc: control may arrive from elsewhere
  uint64_t known_r1_ = 0;          // the map pointer r1 holds here, or 0
  bool helper_calls_ = false;
  bool calls_c_ = false;  // a call to C was emitted (reaches_c)
  bool local_calls_ = false;
  bool leaf_ = false;
  bool leaf_violation_ = false;
  bool callbacks_ = false;
  // The prologue's choices: callee-saved registers pushed (in push order),
  // bytes reserved below them; for full runs, where the stacks end and the
  // saved registers start, relative to r12.
  std::vector<Reg> saved_;
  int32_t frame_bytes_ = 0;
  int32_t frame_base_ = 0;
  int32_t saved_regs_ = 0;
};

}  // namespace

int jit_emit_x86_64(const bh_vm *vm, std::vector<uint8_t> &out, std::vector<size_t> &entries, bool *reaches_c,
                    char *err, size_t err_len) {
  try {
    Compiler c(vm);
    const int rc = c.compile(out, err, err_len);
    if (rc == 0) {
      entries = c.entries_;
      *reaches_c = c.reaches_c();
    }
    return rc;
  } catch (const std::bad_alloc &) {
    return fail(err, err_len, "jit: out of memory");
  }
}

}  // namespace bh

#endif  // __x86_64__
