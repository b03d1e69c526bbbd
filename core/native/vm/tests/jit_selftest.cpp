// Self-test of the x86-64 JIT: every program runs in the interpreter and in
// the JIT, and both must agree on the result, the fault and the memory they
// leave behind. Covers each opcode group over every register pair (the JIT
// maps r0/r3/r4 onto rax/rdx/rcx, which div and shifts use implicitly),
// edge values, calls, exit requests, checked mode, the budget, call depth, a
// seeded random program generator, the entry/exit shapes (leaf and full runs,
// called with known values in the host's callee-saved registers), threads,
// W^X, and a timing against gcc.
//
//   build/vm/bpfvm_jit_selftest            all tests
//   build/vm/bpfvm_jit_selftest --bench    also fail if the loop benchmark is
//                                          not within 2x of gcc -O2
#include <bpfhook/vm.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// Calls a compiled program the way a host would, but with known values in
// every callee-saved register (rbx, rbp, r12-r15), and reports what they hold
// afterwards: out[0..5] = rbx, rbp, r12, r13, r14, r15 after the call,
// out[6] = rsp after the call, out[7] = rsp before it (they must match).
// rsp is 16-byte aligned at the call, as SysV requires.
extern "C" uint64_t bh_jit_selftest_call_sentinels(bh_jit_fn fn, void *ctx, size_t ctx_len, uint64_t *out);
asm(R"(
    .text
    .p2align 4
    .type bh_jit_selftest_call_sentinels, @function
bh_jit_selftest_call_sentinels:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushq %rcx
    movq %rsp, 56(%rcx)
    movq %rdi, %rax
    movq %rsi, %rdi
    movq %rdx, %rsi
    movabsq $0x1b1b1b1b1b1b1b1b, %rbx
    movabsq $0x5b5b5b5b5b5b5b5b, %rbp
    movabsq $0x7c7c7c7c7c7c7c7c, %r12
    movabsq $0xd3d3d3d3d3d3d3d3, %r13
    movabsq $0xe4e4e4e4e4e4e4e4, %r14
    movabsq $0xf5f5f5f5f5f5f5f5, %r15
    callq *%rax
    movq %rsp, %r11
    popq %rcx
    movq %rbx, 0(%rcx)
    movq %rbp, 8(%rcx)
    movq %r12, 16(%rcx)
    movq %r13, 24(%rcx)
    movq %r14, 32(%rcx)
    movq %r15, 40(%rcx)
    movq %r11, 48(%rcx)
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret
    .size bh_jit_selftest_call_sentinels, .-bh_jit_selftest_call_sentinels
)");

namespace {

int g_checks = 0;
int g_failures = 0;

#define EXPECT(cond)                                              \
  do {                                                            \
    ++g_checks;                                                   \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                             \
  } while (0)

using Prog = std::vector<bh_inst>;

// ---- instruction builders ---------------------------------------------------

bh_inst ins(uint8_t op, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bh_inst i{};
  i.opcode = op;
  i.dst = dst & 0xf;
  i.src = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
bh_inst alu(bool is64, uint8_t op, uint8_t dst, int32_t imm, int16_t off = 0) {
  return ins(uint8_t((is64 ? BH_CLS_ALU64 : BH_CLS_ALU) | op), dst, 0, off, imm);
}
bh_inst alux(bool is64, uint8_t op, uint8_t dst, uint8_t src, int16_t off = 0) {
  return ins(uint8_t((is64 ? BH_CLS_ALU64 : BH_CLS_ALU) | op | BH_SRC_X), dst, src, off, 0);
}
bh_inst mov(uint8_t dst, int32_t imm) { return alu(true, BH_ALU_MOV, dst, imm); }
bh_inst movr(uint8_t dst, uint8_t src) { return alux(true, BH_ALU_MOV, dst, src); }
bh_inst add(uint8_t dst, int32_t imm) { return alu(true, BH_ALU_ADD, dst, imm); }
bh_inst ldx(uint8_t size, uint8_t dst, uint8_t src, int16_t off) {
  return ins(BH_CLS_LDX | BH_MODE_MEM | size, dst, src, off, 0);
}
bh_inst ldxsx(uint8_t size, uint8_t dst, uint8_t src, int16_t off) {
  return ins(BH_CLS_LDX | BH_MODE_MEMSX | size, dst, src, off, 0);
}
bh_inst st(uint8_t size, uint8_t dst, int16_t off, int32_t imm) {
  return ins(BH_CLS_ST | BH_MODE_MEM | size, dst, 0, off, imm);
}
bh_inst stx(uint8_t size, uint8_t dst, uint8_t src, int16_t off) {
  return ins(BH_CLS_STX | BH_MODE_MEM | size, dst, src, off, 0);
}
bh_inst atomic(uint8_t size, uint8_t dst, uint8_t src, int16_t off, int32_t op) {
  return ins(BH_CLS_STX | BH_MODE_ATOMIC | size, dst, src, off, op);
}
bh_inst jk(bool is32, uint8_t op, uint8_t dst, int32_t imm, int16_t off) {
  return ins(uint8_t((is32 ? BH_CLS_JMP32 : BH_CLS_JMP) | op), dst, 0, off, imm);
}
bh_inst jx(bool is32, uint8_t op, uint8_t dst, uint8_t src, int16_t off) {
  return ins(uint8_t((is32 ? BH_CLS_JMP32 : BH_CLS_JMP) | op | BH_SRC_X), dst, src, off, 0);
}
bh_inst ja(int16_t off) { return ins(BH_CLS_JMP | BH_JMP_JA, 0, 0, off, 0); }
bh_inst ja32(int32_t imm) { return ins(BH_CLS_JMP32 | BH_JMP_JA, 0, 0, 0, imm); }
bh_inst call(int32_t id) { return ins(BH_OP_CALL, 0, BH_CALL_HELPER, 0, id); }
bh_inst call_local(int32_t rel) { return ins(BH_OP_CALL, 0, BH_CALL_LOCAL, 0, rel); }
bh_inst callx(uint8_t reg) { return ins(BH_OP_CALLX, reg, 0, 0, 0); }
bh_inst exit_() { return ins(BH_OP_EXIT, 0, 0, 0, 0); }
void lddw(Prog &p, uint8_t dst, uint64_t v) {
  p.push_back(ins(BH_OP_LDDW, dst, 0, 0, int32_t(uint32_t(v))));
  p.push_back(ins(0, 0, 0, 0, int32_t(uint32_t(v >> 32))));
}

// Folds r0..r9 into r0 through the stack, so one r0 compares every register
// (the stack itself is scratch for this).
void hash_regs(Prog &p) {
  for (int r = 0; r <= 9; ++r) p.push_back(stx(BH_SIZE_DW, 10, uint8_t(r), int16_t(-8 * (r + 1))));
  p.push_back(mov(0, 0));
  for (int r = 0; r <= 9; ++r) {
    p.push_back(ldx(BH_SIZE_DW, 1, 10, int16_t(-8 * (r + 1))));
    p.push_back(alu(true, BH_ALU_MUL, 0, 1000003));
    p.push_back(alux(true, BH_ALU_XOR, 0, 1));
  }
  p.push_back(exit_());
}

std::string dump(const Prog &p) {
  std::ostringstream o;
  for (size_t i = 0; i < p.size(); ++i) {
    char line[96];
    std::snprintf(line, sizeof line, "    %3zu: op 0x%02x dst %u src %u off %d imm %d\n", i, p[i].opcode,
                  unsigned(p[i].dst), unsigned(p[i].src), int(p[i].off), int(p[i].imm));
    o << line;
  }
  return o.str();
}

// ---- helpers made available to programs -----------------------------------

uint64_t h_weigh(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e;
}
// Ends the program with r0 = a * 10 when a is non-zero; returns 7 otherwise.
uint64_t h_maybe_exit(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (a != 0) bh_vm_request_exit(a * 10);
  return 7;
}
uint64_t h_clobber(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return 0x1234; }
// 1 if the helper was entered with the stack aligned as SysV requires (rsp
// 16-byte aligned at the call, so the frame pointer is too after push rbp).
__attribute__((noinline, optimize("no-omit-frame-pointer"))) uint64_t h_aligned(uint64_t, uint64_t, uint64_t, uint64_t,
                                                                                uint64_t) {
  return (reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) & 15) == 0 ? 1 : 0;
}
std::atomic<uint64_t> g_counter{0};
// Runs another program through the JIT from inside a helper, as a helper
// that implements tail calls would; returns its rc and r0.
bh_vm *g_inner = nullptr;
uint64_t h_nested(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  uint64_t r0 = 0;
  bh_fault f;
  const int rc = bh_vm_exec_jit(g_inner, nullptr, 0, &r0, &f);
  return uint64_t(rc + 1) * 1000 + r0 + uint64_t(f.code) * 100;
}
uint64_t h_count(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return g_counter.fetch_add(a) + a; }

enum : uint32_t {
  kWeigh = 1,
  kMaybeExit = 2,
  kClobber = 5,
  kAligned = 6,
  kAlignedMayExit = 7,
  kNested = 8,
  kCount = 9,
};

// ---- running both backends -------------------------------------------------

struct VmDeleter {
  void operator()(bh_vm *vm) const { bh_vm_destroy(vm); }
};
using VmPtr = std::unique_ptr<bh_vm, VmDeleter>;

struct Region {
  void *base;
  size_t len;
  bool writable;
};

struct Config {
  bool checked = false;
  uint64_t budget = 0;
  std::vector<Region> regions;
};

VmPtr make_vm(const Prog &p, const Config &cfg, std::string *err_out = nullptr) {
  VmPtr vm(bh_vm_create());
  bh_vm_register_helper(vm.get(), kWeigh, "weigh", h_weigh, BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kMaybeExit, "maybe_exit", h_maybe_exit, BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kClobber, "clobber", h_clobber, BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kCount, "count", h_count, BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kAligned, "aligned", h_aligned, BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kNested, "nested", h_nested, BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), kAlignedMayExit, "aligned_may_exit", h_aligned,
                        BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR);
  bh_vm_set_checked(vm.get(), cfg.checked);
  bh_vm_set_budget(vm.get(), cfg.budget);
  for (const Region &r : cfg.regions) bh_vm_add_region(vm.get(), r.base, r.len, r.writable);
  char err[256];
  if (bh_vm_load(vm.get(), p.data(), p.size() * sizeof(bh_inst), err, sizeof err) != 0) {
    if (err_out != nullptr) *err_out = err;
    return nullptr;
  }
  return vm;
}

struct Outcome {
  int rc = 0;
  uint64_t r0 = 0;
  bh_fault fault{};
  std::vector<uint8_t> mem;
};

bool same_fault(const bh_fault &a, const bh_fault &b) {
  if (a.code != b.code) return false;
  switch (a.code) {
    case BH_FAULT_NONE: return true;
    case BH_FAULT_BUDGET:
      // The JIT charges only backward jumps and calls, so it stops later
      // and elsewhere; what matters is that both stop.
      return true;
    case BH_FAULT_OUT_OF_BOUNDS: {
      // Each backend runs on its own copy of the context and its own stack,
      // so addresses differ; the text up to the address must not.
      const char *at_a = std::strstr(a.message, "0x");
      const char *at_b = std::strstr(b.message, "0x");
      return a.pc == b.pc && a.size == b.size && at_a != nullptr && at_b != nullptr &&
             at_a - a.message == at_b - b.message &&
             std::strncmp(a.message, b.message, size_t(at_a - a.message)) == 0 &&
             std::strcmp(std::strchr(at_a, ' '), std::strchr(at_b, ' ')) == 0;
    }
    default: return a.pc == b.pc && a.addr == b.addr && a.size == b.size && std::strcmp(a.message, b.message) == 0;
  }
}

// Runs `p` in both backends, each on its own copy of `mem` as the context,
// and checks they agree. Returns the JIT's outcome for further checks.
Outcome differ(const char *what, const Prog &p, const Config &cfg = Config{}, std::vector<uint8_t> mem = {},
               bool ctx_is_null = false) {
  Outcome in, jit;
  std::string err;
  VmPtr vm = make_vm(p, cfg, &err);
  ++g_checks;
  if (!vm) {
    ++g_failures;
    std::printf("FAIL %s: load: %s\n%s", what, err.c_str(), dump(p).c_str());
    return jit;
  }
  in.mem = mem;
  jit.mem = mem;
  in.rc = bh_vm_exec(vm.get(), ctx_is_null ? nullptr : in.mem.data(), in.mem.size(), &in.r0, &in.fault);
  jit.rc = bh_vm_exec_jit(vm.get(), ctx_is_null ? nullptr : jit.mem.data(), jit.mem.size(), &jit.r0, &jit.fault);
  const bool ok =
      in.rc == jit.rc && (in.rc != 0 || in.r0 == jit.r0) && same_fault(in.fault, jit.fault) && in.mem == jit.mem;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s: interp rc %d r0 0x%" PRIx64 " fault %d pc %u '%s' | jit rc %d r0 0x%" PRIx64
                " fault %d pc %u '%s'%s\n%s",
                what, in.rc, in.r0, in.fault.code, in.fault.pc, in.fault.message, jit.rc, jit.r0, jit.fault.code,
                jit.fault.pc, jit.fault.message, in.mem == jit.mem ? "" : " (memory differs)", dump(p).c_str());
  }
  return jit;
}

// As differ(), and the JIT's r0 must be `want`.
void expect_r0(const char *what, const Prog &p, uint64_t want, const Config &cfg = Config{},
               std::vector<uint8_t> mem = {}) {
  const Outcome o = differ(what, p, cfg, std::move(mem));
  ++g_checks;
  if (o.rc != 0 || o.r0 != want) {
    ++g_failures;
    std::printf("FAIL %s: jit rc %d r0 0x%" PRIx64 ", expected 0x%" PRIx64 " ('%s')\n", what, o.rc, o.r0, want,
                o.fault.message);
  }
}

void expect_fault(const char *what, const Prog &p, int code, const Config &cfg = Config{},
                  std::vector<uint8_t> mem = {}) {
  const Outcome o = differ(what, p, cfg, std::move(mem));
  ++g_checks;
  if (o.rc != -1 || o.fault.code != code) {
    ++g_failures;
    std::printf("FAIL %s: jit rc %d fault %d, expected fault %d\n", what, o.rc, o.fault.code, code);
  }
}

const uint64_t kValues[] = {
    0,
    1,
    2,
    3,
    5,
    7,
    31,
    32,
    33,
    63,
    64,
    65,
    0xff,
    0x8000,
    0xffff,
    0x7fffffff,
    0x80000000,
    0xffffffff,
    0x100000000,
    0x1ffffffff,
    0x8000000000000000,
    0x7fffffffffffffff,
    0xffffffffffffffff,
    0xfffffffffffffffe,
    0xffffffff80000000,
    0x123456789abcdef0,
    0xfedcba9876543210,
    0x00000000deadbeef,
};
const int32_t kImms[] = {0,  1,   -1,  2,    -2,   3,      7,      31,         32,        33,         63,
                         64, 127, 128, -128, -129, 0x7fff, 0x8000, 0x7fffffff, INT32_MIN, 0x12345678, -0x12345678};

// ---- ALU -------------------------------------------------------------------

struct AluCase {
  uint8_t op;
  int16_t off;
};
const AluCase kAluOps[] = {
    {BH_ALU_ADD, 0}, {BH_ALU_SUB, 0},  {BH_ALU_MUL, 0}, {BH_ALU_DIV, 0},  {BH_ALU_DIV, 1},  {BH_ALU_OR, 0},
    {BH_ALU_AND, 0}, {BH_ALU_LSH, 0},  {BH_ALU_RSH, 0}, {BH_ALU_MOD, 0},  {BH_ALU_MOD, 1},  {BH_ALU_XOR, 0},
    {BH_ALU_MOV, 0}, {BH_ALU_ARSH, 0}, {BH_ALU_MOV, 8}, {BH_ALU_MOV, 16}, {BH_ALU_MOV, 32},
};

// Every register pair (dst == src included) for a few values: catches the
// implicit uses of rax/rdx (div) and rcx (shifts) by r0, r3 and r4.
void test_alu_registers() {
  const uint64_t vals[] = {0, 0xffffffffffffffff, 0x8000000000000000, 0xffffffff80000000, 37, 0x1234567800000005};
  const uint64_t fill = 0x0123456789abcdef;
  for (bool is64 : {true, false}) {
    for (const AluCase &c : kAluOps) {
      if (c.off == 32 && !is64) continue;
      for (uint8_t d = 0; d <= 9; ++d) {
        for (uint8_t s = 0; s <= 9; ++s) {
          for (uint64_t a : vals) {
            for (uint64_t b : vals) {
              Prog p;
              for (uint8_t r = 0; r <= 9; ++r) lddw(p, r, fill * (r + 1));
              lddw(p, s, b);
              lddw(p, d, a);
              p.push_back(alux(is64, c.op, d, s, c.off));
              hash_regs(p);
              char what[96];
              std::snprintf(what, sizeof what, "alu%s op 0x%02x off %d r%u, r%u (0x%" PRIx64 ", 0x%" PRIx64 ")",
                            is64 ? "64" : "32", c.op, c.off, d, s, a, b);
              differ(what, p);
              if (d == s) break;  // b is a once dst == src
            }
          }
        }
      }
    }
  }
}

// Every edge value pair with fixed registers, register and immediate forms.
void test_alu_values() {
  for (bool is64 : {true, false}) {
    for (const AluCase &c : kAluOps) {
      if (c.off == 32 && !is64) continue;
      for (uint64_t a : kValues) {
        for (uint64_t b : kValues) {
          Prog p;
          lddw(p, 0, 0x5555);
          lddw(p, 3, a);
          lddw(p, 7, b);
          p.push_back(alux(is64, c.op, 3, 7, c.off));
          hash_regs(p);
          char what[96];
          std::snprintf(what, sizeof what, "alu%s op 0x%02x off %d x (0x%" PRIx64 ", 0x%" PRIx64 ")",
                        is64 ? "64" : "32", c.op, c.off, a, b);
          differ(what, p);
        }
        if (c.op == BH_ALU_MOV && c.off != 0) continue;  // sign-extending mov has no imm form
        for (int32_t imm : kImms) {
          if ((c.op == BH_ALU_DIV || c.op == BH_ALU_MOD) && imm == 0) continue;  // rejected at load
          for (uint8_t d : {uint8_t(0), uint8_t(3), uint8_t(4), uint8_t(6)}) {
            Prog p;
            lddw(p, 0, 0x5555);
            lddw(p, 3, 0x3333);
            lddw(p, d, a);
            p.push_back(alu(is64, c.op, d, imm, c.off));
            hash_regs(p);
            char what[96];
            std::snprintf(what, sizeof what, "alu%s op 0x%02x off %d r%u k (0x%" PRIx64 ", %d)", is64 ? "64" : "32",
                          c.op, c.off, d, a, imm);
            differ(what, p);
          }
        }
      }
    }
  }
  // neg and the byte swaps: one operand.
  for (uint64_t a : kValues) {
    for (uint8_t d : {uint8_t(0), uint8_t(2), uint8_t(4), uint8_t(5), uint8_t(9)}) {
      std::vector<bh_inst> ops = {alu(true, BH_ALU_NEG, d, 0), alu(false, BH_ALU_NEG, d, 0)};
      for (int32_t bits : {16, 32, 64}) {
        ops.push_back(alu(false, BH_ALU_END, d, bits));                         // le
        ops.push_back(ins(BH_CLS_ALU | BH_ALU_END | BH_SRC_X, d, 0, 0, bits));  // be
        ops.push_back(alu(true, BH_ALU_END, d, bits));                          // bswap
      }
      for (const bh_inst &op : ops) {
        Prog p;
        lddw(p, d, a);
        p.push_back(op);
        hash_regs(p);
        char what[96];
        std::snprintf(what, sizeof what, "unary op 0x%02x imm %d r%u (0x%" PRIx64 ")", op.opcode, op.imm, d, a);
        differ(what, p);
      }
    }
  }
}

// Division and modulo by constants (the JIT replaces them by shifts, masks
// and multiplications): many divisors against edge and random dividends.
void test_div_constants() {
  std::mt19937_64 rng(7);
  std::vector<int32_t> divisors;
  for (int32_t d = 1; d <= 300; ++d) divisors.push_back(d);
  for (int k = 9; k <= 31; ++k) {
    for (uint32_t delta : {0xffffffffu, 0u, 1u}) divisors.push_back(int32_t((uint32_t(1) << k) + delta));
  }
  for (int i = 0; i < 200; ++i) divisors.push_back(int32_t(rng()));
  for (int32_t d : {1000, 1000000, 641, 6700417, 0x7fffffff, -1000, -7, -2, INT32_MIN}) divisors.push_back(d);
  std::vector<uint64_t> dividends(std::begin(kValues), std::end(kValues));
  for (int i = 0; i < 24; ++i) dividends.push_back(rng() >> (i % 4 == 0 ? 0 : rng() % 64));
  for (int32_t div : divisors) {
    if (div == 0) continue;
    for (bool is64 : {true, false}) {
      for (uint8_t op : {uint8_t(BH_ALU_DIV), uint8_t(BH_ALU_MOD)}) {
        for (uint8_t d : {uint8_t(0), uint8_t(3), uint8_t(6)}) {
          // One program per divisor: every dividend, results folded into r9.
          Prog p;
          lddw(p, 0, 0x0a0a0a0a0a0a0a0a);
          lddw(p, 3, 0x3030303030303030);
          p.push_back(mov(9, 0));
          for (uint64_t n : dividends) {
            lddw(p, d, n);
            p.push_back(alu(is64, op, d, div));
            p.push_back(alu(true, BH_ALU_MUL, 9, 1000003));
            p.push_back(alux(true, BH_ALU_XOR, 9, d));
            p.push_back(alux(true, BH_ALU_XOR, 9, d == 0 ? 3 : 0));
            p.push_back(alux(true, BH_ALU_XOR, 9, d == 3 ? 0 : 3));
          }
          hash_regs(p);
          char what[80];
          std::snprintf(what, sizeof what, "%s%s by constant %d into r%u", op == BH_ALU_DIV ? "div" : "mod",
                        is64 ? "64" : "32", div, d);
          differ(what, p);
        }
      }
    }
  }
}

// Known answers from the conformance suite, so the pair is not merely
// consistent but right.
void test_known_answers() {
  Prog p;
  lddw(p, 1, 0x0123456789abcdef);
  p.push_back(alux(false, BH_ALU_MOV, 0, 1, 8));  // movsx832
  p.push_back(exit_());
  expect_r0("movsx832", p, 0xffffffef);

  p.clear();
  p.push_back(mov(0, 1));
  p.push_back(alu(false, BH_ALU_MOV, 1, 0));
  p.push_back(alux(false, BH_ALU_DIV, 0, 1));  // div32 by zero register
  p.push_back(exit_());
  expect_r0("div32 by zero", p, 0);

  p.clear();
  lddw(p, 0, 0x8000000000000000);
  p.push_back(mov(1, -1));
  p.push_back(alux(true, BH_ALU_DIV, 0, 1, 1));  // sdiv INT_MIN / -1
  p.push_back(exit_());
  expect_r0("sdiv64 intmin by -1", p, 0x8000000000000000);

  p.clear();
  lddw(p, 0, 0x8000000000000000);
  p.push_back(alu(true, BH_ALU_MOD, 0, -1, 1));  // smod INT_MIN % -1 (imm)
  p.push_back(exit_());
  expect_r0("smod64 intmin by -1 imm", p, 0);

  p.clear();
  lddw(p, 0, 0xffffffff80000000);
  p.push_back(mov(1, -1));
  p.push_back(alux(false, BH_ALU_MOD, 0, 1, 1));  // smod32 INT_MIN % -1
  p.push_back(exit_());
  expect_r0("smod32 intmin by -1", p, 0);

  p.clear();
  lddw(p, 0, 0xfffffffffffffff9);  // -7
  p.push_back(mov(1, 0));
  p.push_back(alux(false, BH_ALU_MOD, 0, 1, 1));  // smod32 by zero keeps the low half
  p.push_back(exit_());
  expect_r0("smod32 by zero", p, 0xfffffff9);

  p.clear();
  lddw(p, 0, 0x8877665544332211);
  p.push_back(ins(BH_CLS_ALU | BH_ALU_END | BH_SRC_X, 0, 0, 0, 16));  // be16
  p.push_back(exit_());
  expect_r0("be16", p, 0x1122);

  p.clear();
  lddw(p, 0, 0x1111111111111111);
  p.push_back(mov(1, 32 + 3));
  p.push_back(alux(false, BH_ALU_LSH, 0, 1));  // the count is masked to 3
  p.push_back(exit_());
  expect_r0("lsh32 masks its count", p, 0x88888888);

  p.clear();
  lddw(p, 0, 0xffffffff00000001);
  p.push_back(mov(4, 32));
  p.push_back(alux(false, BH_ALU_RSH, 0, 4));  // count 0 after masking: still zero-extends
  p.push_back(exit_());
  expect_r0("rsh32 by 32 zero-extends", p, 1);

  p.clear();
  lddw(p, 0, 0xffffffff00000001);
  p.push_back(alu(false, BH_ALU_ARSH, 0, 32));
  p.push_back(exit_());
  expect_r0("arsh32 imm 32 zero-extends", p, 1);
}

// ---- jumps -----------------------------------------------------------------

void test_jumps() {
  const uint8_t conds[] = {BH_JMP_JEQ,  BH_JMP_JGT, BH_JMP_JGE, BH_JMP_JSET, BH_JMP_JNE, BH_JMP_JSGT,
                           BH_JMP_JSGE, BH_JMP_JLT, BH_JMP_JLE, BH_JMP_JSLT, BH_JMP_JSLE};
  for (bool is32 : {false, true}) {
    for (uint8_t op : conds) {
      for (uint64_t a : kValues) {
        for (uint64_t b : kValues) {
          Prog p;
          lddw(p, 2, a);
          lddw(p, 4, b);
          p.push_back(mov(0, 0));
          p.push_back(jx(is32, op, 2, 4, 1));
          p.push_back(exit_());
          p.push_back(mov(0, 1));
          p.push_back(exit_());
          char what[96];
          std::snprintf(what, sizeof what, "jmp%s op 0x%02x x (0x%" PRIx64 ", 0x%" PRIx64 ")", is32 ? "32" : "", op, a,
                        b);
          differ(what, p);
        }
        for (int32_t imm : kImms) {
          Prog p;
          lddw(p, 0, a);
          p.push_back(jk(is32, op, 0, imm, 2));
          p.push_back(mov(0, 0));
          p.push_back(exit_());
          p.push_back(mov(0, 1));
          p.push_back(exit_());
          char what[96];
          std::snprintf(what, sizeof what, "jmp%s op 0x%02x k (0x%" PRIx64 ", %d)", is32 ? "32" : "", op, a, imm);
          differ(what, p);
        }
      }
      // Registers: every pair, including a register against itself.
      for (uint8_t d = 0; d <= 10; ++d) {
        for (uint8_t s = 0; s <= 10; ++s) {
          Prog p;
          for (uint8_t r = 0; r <= 9; ++r) lddw(p, r, 0xfffffff0ull + r * 0x7fffffffull);
          p.push_back(jx(is32, op, d, s, 2));
          p.push_back(mov(0, 0));
          p.push_back(exit_());
          p.push_back(mov(0, 1));
          p.push_back(exit_());
          char what[64];
          std::snprintf(what, sizeof what, "jmp%s op 0x%02x r%u, r%u", is32 ? "32" : "", op, d, s);
          differ(what, p);
        }
      }
    }
  }

  // A loop with a backward conditional jump, a ja32 (gotol) and a long body
  // (jumps over 128 bytes of code take the rel32 forms).
  Prog p;
  p.push_back(mov(0, 0));
  p.push_back(mov(1, 0));
  const size_t top = p.size();
  for (int i = 0; i < 40; ++i) p.push_back(alu(true, BH_ALU_ADD, 0, i));
  p.push_back(add(1, 1));
  p.push_back(jk(false, BH_JMP_JLT, 1, 100, int16_t(int64_t(top) - int64_t(p.size()) - 1)));
  p.push_back(ja32(1));
  p.push_back(mov(0, -1));
  p.push_back(exit_());
  expect_r0("long loop", p, 100 * 780);

  p.clear();
  p.push_back(mov(0, 3));
  p.push_back(ja32(2));
  p.push_back(mov(0, 1));
  p.push_back(exit_());
  p.push_back(ja32(-3));  // back to "mov r0, 1"
  expect_r0("ja32 forward and back", p, 1);
}

// ---- memory ------------------------------------------------------------------

void test_memory() {
  std::vector<uint8_t> ctx(64);
  for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = uint8_t(0x81 + i * 37);
  const uint8_t sizes[] = {BH_SIZE_B, BH_SIZE_H, BH_SIZE_W, BH_SIZE_DW};
  // Loads (zero- and sign-extending) from the context through each register.
  for (uint8_t size : sizes) {
    for (bool sx : {false, true}) {
      if (sx && size == BH_SIZE_DW) continue;
      for (uint8_t base = 1; base <= 9; ++base) {
        for (uint8_t d = 0; d <= 9; ++d) {
          for (int16_t off : {0, 3, 17, 56}) {
            Prog p;
            p.push_back(movr(base, 1));
            p.push_back(sx ? ldxsx(size, d, base, off) : ldx(size, d, base, off));
            if (d != 0) p.push_back(movr(0, d));
            p.push_back(exit_());
            differ("ldx ctx", p, Config{}, ctx);
          }
        }
      }
    }
  }
  // Stores of registers and immediates, at negative and large offsets.
  for (uint8_t size : sizes) {
    for (uint8_t base = 0; base <= 9; ++base) {
      for (uint8_t s = 0; s <= 9; ++s) {
        if (s == base) continue;
        Prog p;
        p.push_back(movr(base, 1));
        p.push_back(add(base, 40));
        lddw(p, s, 0xf1e2d3c4b5a69788ull + s);
        p.push_back(stx(size, base, s, -37));
        p.push_back(st(size, base, 9, -2));
        p.push_back(st(size, base, -40, 0x7f6e5d4c));
        p.push_back(mov(0, 0));
        p.push_back(exit_());
        differ("stx/st ctx", p, Config{}, ctx);
      }
    }
  }
  // Through r10: the stack, read back.
  for (uint8_t size : sizes) {
    Prog p;
    lddw(p, 3, 0x8899aabbccddeeff);
    p.push_back(st(BH_SIZE_DW, 10, -512, -1));
    p.push_back(stx(size, 10, 3, -512));
    p.push_back(ldx(BH_SIZE_DW, 0, 10, -512));
    p.push_back(exit_());
    differ("stack", p);
    p.clear();
    p.push_back(st(size, 10, -16, -3));
    p.push_back(ldxsx(size == BH_SIZE_DW ? BH_SIZE_W : size, 0, 10, -16));
    p.push_back(exit_());
    differ("stack sx", p);
  }
}

void test_atomics() {
  const int32_t ops[] = {BH_ATOMIC_ADD,
                         BH_ATOMIC_OR,
                         BH_ATOMIC_AND,
                         BH_ATOMIC_XOR,
                         BH_ATOMIC_ADD | BH_ATOMIC_FETCH,
                         BH_ATOMIC_OR | BH_ATOMIC_FETCH,
                         BH_ATOMIC_AND | BH_ATOMIC_FETCH,
                         BH_ATOMIC_XOR | BH_ATOMIC_FETCH,
                         BH_ATOMIC_XCHG,
                         BH_ATOMIC_CMPXCHG};
  for (uint8_t size : {uint8_t(BH_SIZE_W), uint8_t(BH_SIZE_DW)}) {
    for (int32_t op : ops) {
      // Every base/source pair; r0 set so that cmpxchg both succeeds (low
      // half equal) and fails.
      for (uint8_t base = 0; base <= 10; ++base) {
        for (uint8_t s = 0; s <= 9; ++s) {
          if (s == base) continue;
          for (uint64_t r0 : {uint64_t(0x5555555533333333), uint64_t(0x12345678f0f0f0f0)}) {
            Prog p;
            for (uint8_t r = 0; r <= 9; ++r) lddw(p, r, 0x0f0f0f0f0f0f0f0full * (r + 1) + 0x1111);
            lddw(p, 9, 0x33333333f0f0f0f0);
            p.push_back(stx(BH_SIZE_DW, 10, 9, -24));
            lddw(p, 0, r0);
            lddw(p, s, 0xa5a5a5a5c3c3c3c3);
            if (base != 10) {
              p.push_back(movr(base, 10));
              p.push_back(add(base, -64));
            }
            p.push_back(atomic(size, base, s, base != 10 ? 40 : -24, op));
            if (base != 10) p.push_back(mov(base, 0));  // a stack address differs between backends
            p.push_back(ldx(BH_SIZE_DW, 9, 10, -24));
            hash_regs(p);
            char what[80];
            std::snprintf(what, sizeof what, "atomic%s 0x%02x [r%u], r%u (r0 0x%" PRIx64 ")",
                          size == BH_SIZE_W ? "32" : "64", op, base, s, r0);
            differ(what, p);
          }
        }
      }
    }
  }
  // cmpxchg32 succeeding must still zero-extend r0.
  Prog p;
  lddw(p, 1, 0x00000000deadbeef);
  p.push_back(stx(BH_SIZE_DW, 10, 1, -8));
  lddw(p, 0, 0xffffffffdeadbeef);
  p.push_back(mov(2, 5));
  p.push_back(atomic(BH_SIZE_W, 10, 2, -8, BH_ATOMIC_CMPXCHG));
  p.push_back(exit_());
  expect_r0("cmpxchg32 success zero-extends r0", p, 0xdeadbeef);
}

// ---- calls -------------------------------------------------------------------

void test_calls() {
  Prog p;
  p.push_back(mov(1, 1));
  p.push_back(mov(2, 10));
  p.push_back(mov(3, 100));
  p.push_back(mov(4, 1000));
  p.push_back(mov(5, 10000));
  p.push_back(mov(6, 6));
  p.push_back(mov(9, 9));
  p.push_back(call(kWeigh));
  p.push_back(alux(true, BH_ALU_ADD, 0, 6));
  p.push_back(alux(true, BH_ALU_ADD, 0, 9));
  p.push_back(exit_());
  expect_r0("helper args in order, r6-r9 kept", p, 1 + 20 + 300 + 4000 + 50000 + 15);

  // Local calls: r1-r5 in, r0 out, r6-r9 and r10 restored for the caller, a
  // fresh frame for the callee, pointers into the caller's frame usable.
  p.clear();
  p.push_back(mov(6, 66));
  p.push_back(mov(7, 77));
  p.push_back(st(BH_SIZE_DW, 10, -8, 1000));
  p.push_back(movr(1, 10));
  p.push_back(add(1, -8));
  p.push_back(call_local(5));                 // -> f at pc 11
  p.push_back(alux(true, BH_ALU_ADD, 0, 6));  // 66
  p.push_back(alux(true, BH_ALU_ADD, 0, 7));  // 77
  p.push_back(ldx(BH_SIZE_DW, 2, 10, -8));
  p.push_back(alux(true, BH_ALU_ADD, 0, 2));  // 1001
  p.push_back(exit_());
  // f(p): *p += 1; r6..r9 clobbered; own stack; returns 5 + *own stack
  p.push_back(ldx(BH_SIZE_DW, 2, 1, 0));  // 11
  p.push_back(add(2, 1));
  p.push_back(stx(BH_SIZE_DW, 1, 2, 0));
  p.push_back(mov(6, 0));
  p.push_back(mov(7, 0));
  p.push_back(st(BH_SIZE_DW, 10, -8, 5));  // the callee's own -8
  p.push_back(ldx(BH_SIZE_DW, 0, 10, -8));
  p.push_back(exit_());
  expect_r0("local call frames", p, 5 + 66 + 77 + 1001);
  Config checked;
  checked.checked = true;
  expect_r0("local call frames, checked", p, 5 + 66 + 77 + 1001, checked);

  // Recursion: depth n -> n + 1 frames; past BH_MAX_CALL_DEPTH it faults.
  for (int n = 0; n <= 10; ++n) {
    Prog r;
    r.push_back(mov(1, n));
    r.push_back(call_local(1));
    r.push_back(exit_());
    // rec(r1): if r1 == 0 return 1; return rec(r1 - 1) + 1
    r.push_back(jk(false, BH_JMP_JNE, 1, 0, 2));
    r.push_back(mov(0, 1));
    r.push_back(exit_());
    r.push_back(add(1, -1));
    r.push_back(call_local(-5));
    r.push_back(add(0, 1));
    r.push_back(exit_());
    char what[48];
    std::snprintf(what, sizeof what, "recursion %d", n);
    const Outcome o = differ(what, r);
    EXPECT((n + 2 <= BH_MAX_CALL_DEPTH) == (o.rc == 0));
    Config budget;
    budget.budget = 1000000;
    differ(what, r, budget);
  }

  // Exit requests: from the entry frame, from three calls deep, via callx,
  // and a MAY_EXIT helper that does not ask.
  p.clear();
  p.push_back(mov(1, 0));
  p.push_back(call(kMaybeExit));  // returns 7, no exit
  p.push_back(movr(6, 0));
  p.push_back(mov(1, 4));
  p.push_back(call_local(2));  // pc 4 -> 7
  p.push_back(add(0, 1000));
  p.push_back(exit_());
  p.push_back(call_local(1));  // pc 7 -> 9
  p.push_back(exit_());
  p.push_back(call_local(1));  // pc 9 -> 11
  p.push_back(exit_());
  p.push_back(alux(true, BH_ALU_ADD, 1, 6));
  p.push_back(call(kMaybeExit));  // pc 12, r1 = 11: ends with r0 = 110
  p.push_back(mov(0, -1));
  p.push_back(exit_());
  Outcome o = differ("exit request from depth", p);
  EXPECT(o.rc == 0 && o.r0 == 110 && o.fault.code == BH_FAULT_HELPER_EXIT && o.fault.pc == 12);
  o = differ("exit request from depth, checked+budget", p, Config{true, 1000, {}});
  EXPECT(o.rc == 0 && o.r0 == 110 && o.fault.code == BH_FAULT_HELPER_EXIT);

  // SysV stack alignment at every kind of helper call, from the entry frame
  // and from two local calls deep, in every mode; and r10 16-byte aligned.
  for (const Config &cfg : {Config{}, Config{true, 0, {}}, Config{true, 1000000, {}}}) {
    Prog a;
    a.push_back(call_local(4));  // -> f (pc 5)
    a.push_back(movr(6, 0));
    a.push_back(call_local(7));  // -> g (pc 10)
    a.push_back(alux(true, BH_ALU_ADD, 0, 6));
    a.push_back(exit_());
    a.push_back(call_local(4));  // f: pc 5 -> g
    a.push_back(movr(7, 0));
    a.push_back(call_local(2));  // pc 7 -> g, a second time
    a.push_back(alux(true, BH_ALU_ADD, 0, 7));
    a.push_back(exit_());
    a.push_back(mov(6, 0));                            // g: pc 10
    for (uint32_t id : {kAligned, kAlignedMayExit}) {  // pc 8..
      a.push_back(call(int32_t(id)));
      a.push_back(alux(true, BH_ALU_ADD, 6, 0));
      a.push_back(mov(1, int32_t(id)));
      a.push_back(callx(1));
      a.push_back(alux(true, BH_ALU_ADD, 6, 0));
    }
    a.push_back(movr(1, 10));
    a.push_back(alu(true, BH_ALU_AND, 1, 15));
    a.push_back(jk(false, BH_JMP_JEQ, 1, 0, 1));
    a.push_back(mov(6, -100));
    a.push_back(movr(0, 6));
    a.push_back(exit_());
    // Each helper call adds 1 when aligned: 4 per visit, 3 visits.
    expect_r0("stack alignment at helper calls", a, 12, cfg);
  }

  // A program run from inside a helper leaves nothing behind for the run
  // that called the helper: a fault, an exit request, or a clean exit.
  for (int inner_kind = 0; inner_kind < 3; ++inner_kind) {
    Prog inner;
    if (inner_kind == 0) {
      inner.push_back(mov(1, 3));
      inner.push_back(callx(1));  // a hole: BAD_HELPER
    } else if (inner_kind == 1) {
      inner.push_back(mov(1, 4));
      inner.push_back(call(kMaybeExit));  // exit with 40
    } else {
      inner.push_back(mov(0, 5));
    }
    inner.push_back(exit_());
    VmPtr inner_vm = make_vm(inner, Config{});
    g_inner = inner_vm.get();
    Prog outer;
    outer.push_back(call(kNested));
    outer.push_back(add(0, 1));
    outer.push_back(exit_());
    const uint64_t want[] = {0 * 1000 + 0 + 4 * 100 + 1, 1 * 1000 + 40 + 5 * 100 + 1, 1 * 1000 + 5 + 1};
    for (const Config &cfg : {Config{}, Config{true, 100, {}}}) {
      const Outcome o = differ("nested run", outer, cfg);
      EXPECT(o.rc == 0 && o.r0 == want[inner_kind] && o.fault.code == BH_FAULT_NONE);
    }
    g_inner = nullptr;
  }

  // callx: good ids, MAY_EXIT through callx, a hole, out of range, negative.
  for (int64_t id : {int64_t(kWeigh), int64_t(kMaybeExit), int64_t(kClobber), int64_t(3), int64_t(kCount + 1),
                     int64_t(70000), int64_t(-1), int64_t(0)}) {
    Prog c;
    lddw(c, 4, uint64_t(id));
    c.push_back(mov(1, 3));
    c.push_back(mov(2, 0));
    c.push_back(mov(3, 0));
    c.push_back(mov(5, 0));
    c.push_back(mov(6, 1));
    c.push_back(callx(4));
    c.push_back(alux(true, BH_ALU_ADD, 0, 6));
    c.push_back(exit_());
    char what[48];
    std::snprintf(what, sizeof what, "callx %" PRId64, id);
    differ(what, c);
  }
  p.clear();
  p.push_back(mov(8, kWeigh));
  p.push_back(mov(1, 2));
  p.push_back(mov(2, 0));
  p.push_back(mov(3, 0));
  p.push_back(mov(4, 0));
  p.push_back(mov(5, 0));
  p.push_back(callx(8));
  p.push_back(exit_());
  expect_r0("callx r8", p, 2);
  p.back() = mov(1, 2);   // helpers clobber r1-r5
  p.push_back(callx(0));  // the id in r0 (= 2): maybe_exit with r1 = 2 -> 20
  p.push_back(exit_());
  o = differ("callx may exit", p);
  EXPECT(o.rc == 0 && o.r0 == 20 && o.fault.code == BH_FAULT_HELPER_EXIT);
  p.clear();
  p.push_back(mov(1, 3));
  p.push_back(callx(1));
  p.push_back(exit_());
  expect_fault("callx to a hole", p, BH_FAULT_BAD_HELPER);
}

// ---- checked mode and budget -------------------------------------------------

void test_checked() {
  Config cfg;
  cfg.checked = true;
  std::vector<uint8_t> ctx(32, 0x5a);
  static uint8_t ro[64];
  static uint8_t rw[64];
  cfg.regions = {{ro, sizeof ro, false}, {rw, sizeof rw, true}};

  struct Case {
    const char *what;
    int16_t off;
    uint8_t size;
    bool store;
    int fault;
  };
  // Through r1 (the context), r10 (the stack) and pointers derived from them.
  const Case ctx_cases[] = {
      {"ctx in", 24, BH_SIZE_DW, false, 0},       {"ctx edge", 28, BH_SIZE_W, true, 0},
      {"ctx past end", 25, BH_SIZE_DW, false, 1}, {"ctx before", -1, BH_SIZE_B, true, 1},
      {"ctx far", 4000, BH_SIZE_H, false, 1},
  };
  for (const Case &c : ctx_cases) {
    for (uint8_t base : {uint8_t(1), uint8_t(0), uint8_t(4), uint8_t(9)}) {
      Prog p;
      if (base != 1) p.push_back(movr(base, 1));
      p.push_back(c.store ? st(c.size, base, c.off, 1) : ldx(c.size, 2, base, c.off));
      p.push_back(mov(0, 3));
      p.push_back(exit_());
      if (c.fault) {
        expect_fault(c.what, p, BH_FAULT_OUT_OF_BOUNDS, cfg, ctx);
      } else {
        expect_r0(c.what, p, 3, cfg, ctx);
      }
    }
  }
  const Case stack_cases[] = {
      {"stack bottom", -512, BH_SIZE_DW, true, 0}, {"stack top", -8, BH_SIZE_DW, false, 0},
      {"stack over", -4, BH_SIZE_DW, true, 1},     {"stack under", -513, BH_SIZE_B, false, 1},
      {"stack above", 0, BH_SIZE_B, true, 1},
  };
  for (const Case &c : stack_cases) {
    for (uint8_t base : {uint8_t(10), uint8_t(3)}) {
      Prog p;
      if (base != 10) p.push_back(movr(base, 10));
      p.push_back(c.store ? st(c.size, base, c.off, 1) : ldx(c.size, 2, base, c.off));
      p.push_back(mov(0, 3));
      p.push_back(exit_());
      if (c.fault) {
        expect_fault(c.what, p, BH_FAULT_OUT_OF_BOUNDS, cfg, ctx);
      } else {
        expect_r0(c.what, p, 3, cfg, ctx);
      }
    }
  }
  // A NULL context with length 0 admits nothing.
  Prog p;
  p.push_back(ldx(BH_SIZE_B, 0, 1, 0));
  p.push_back(exit_());
  Outcome o = differ("null ctx", p, cfg, {}, true);
  EXPECT(o.rc == -1 && o.fault.code == BH_FAULT_OUT_OF_BOUNDS);

  // Regions: loads from both; stores only to the writable one; atomics count
  // as stores.
  for (int i = 0; i < 6; ++i) {
    uint8_t *base = i % 2 == 0 ? ro : rw;
    p.clear();
    lddw(p, 6, uint64_t(uintptr_t(base)));
    if (i < 2) {
      p.push_back(ldx(BH_SIZE_DW, 0, 6, 56));
    } else if (i < 4) {
      p.push_back(st(BH_SIZE_W, 6, 60, 9));
    } else {
      p.push_back(mov(2, 1));
      p.push_back(atomic(BH_SIZE_DW, 6, 2, 8, BH_ATOMIC_ADD | BH_ATOMIC_FETCH));
    }
    p.push_back(mov(0, 1));
    p.push_back(exit_());
    char what[32];
    std::snprintf(what, sizeof what, "region case %d", i);
    o = differ(what, p, cfg, ctx);
    EXPECT((o.rc == 0) == (i < 2 || base == rw));
  }

  // Address arithmetic wrapping around the top of the address space.
  p.clear();
  p.push_back(mov(1, -4));
  p.push_back(ldx(BH_SIZE_DW, 0, 1, 0));
  p.push_back(exit_());
  expect_fault("wrapping address", p, BH_FAULT_OUT_OF_BOUNDS, cfg, ctx);

  // A callee may reach its caller's frame through r10 with a positive offset
  // (the frames are adjacent), but not above the entry frame.
  p.clear();
  p.push_back(st(BH_SIZE_DW, 10, -8, 42));
  p.push_back(call_local(1));
  p.push_back(exit_());
  p.push_back(ldx(BH_SIZE_DW, 0, 10, 512 - 8));
  p.push_back(exit_());
  expect_r0("callee reads caller frame via r10", p, 42, cfg);
  p[3] = ldx(BH_SIZE_DW, 0, 10, 512);
  expect_fault("callee reads above the entry frame", p, BH_FAULT_OUT_OF_BOUNDS, cfg);

  // The unchecked JIT runs the same in-bounds program without faults.
  p.clear();
  p.push_back(ldx(BH_SIZE_DW, 0, 1, 8));
  p.push_back(exit_());
  expect_r0("fast mode ctx load", p, 0x5a5a5a5a5a5a5a5a, Config{}, ctx);
}

void test_budget() {
  Config cfg;
  cfg.budget = 10000;
  Prog p;
  p.push_back(mov(0, 0));
  p.push_back(add(0, 1));
  p.push_back(ja(-2));
  expect_fault("endless loop", p, BH_FAULT_BUDGET, cfg);
  p.back() = ja32(-2);
  expect_fault("endless loop ja32", p, BH_FAULT_BUDGET, cfg);
  p.back() = jk(true, BH_JMP_JNE, 0, 0, -2);
  p.push_back(exit_());
  expect_fault("endless conditional loop", p, BH_FAULT_BUDGET, cfg);

  // A bounded loop well within budget gives the same answer.
  p.clear();
  p.push_back(mov(0, 0));
  p.push_back(mov(1, 0));
  p.push_back(alux(true, BH_ALU_ADD, 0, 1));
  p.push_back(add(1, 1));
  p.push_back(jk(false, BH_JMP_JLT, 1, 100, -3));
  p.push_back(exit_());
  expect_r0("bounded loop", p, 4950, cfg);

  // A backward jump to itself.
  p.clear();
  p.push_back(mov(0, 0));
  p.push_back(ja(-1));
  expect_fault("self loop", p, BH_FAULT_BUDGET, cfg);

  // Calls charge too: an endless loop of calls.
  p.clear();
  p.push_back(call_local(2));
  p.push_back(ja(-2));
  p.push_back(exit_());
  p.push_back(mov(0, 1));
  p.push_back(exit_());
  expect_fault("endless calls", p, BH_FAULT_BUDGET, cfg);
}

// ---- random programs -----------------------------------------------------------

// Straight-line ALU, loads/stores on the stack, atomics and forward jumps over
// random registers and values; the registers and stack are hashed at the end.
void test_random(unsigned count) {
  std::mt19937_64 rng(20240611);
  auto pick = [&](uint64_t n) { return uint64_t(rng() % n); };
  for (unsigned iter = 0; iter < count; ++iter) {
    Prog p;
    for (uint8_t r = 0; r <= 9; ++r) {
      lddw(p, r, pick(4) == 0 ? kValues[pick(sizeof kValues / sizeof kValues[0])] : rng());
    }
    for (int slot = 0; slot < 8; ++slot) p.push_back(stx(BH_SIZE_DW, 10, uint8_t(pick(10)), int16_t(-8 * (slot + 1))));
    const size_t body = 24 + pick(40);
    for (size_t i = 0; i < body; ++i) {
      const uint8_t d = uint8_t(pick(10));
      const uint8_t s = uint8_t(pick(10));
      const int32_t imm = pick(3) == 0 ? kImms[pick(sizeof kImms / sizeof kImms[0])] : int32_t(rng());
      switch (pick(8)) {
        case 0:
        case 1:
        case 2: {
          const AluCase &c = kAluOps[pick(sizeof kAluOps / sizeof kAluOps[0])];
          const bool is64 = pick(2) == 0;
          if (c.off == 32 && !is64) break;
          if (pick(2) == 0 || (c.op == BH_ALU_MOV && c.off != 0)) {
            p.push_back(alux(is64, c.op, d, s, c.off));
          } else {
            const int32_t k = (c.op == BH_ALU_DIV || c.op == BH_ALU_MOD) && imm == 0 ? 3 : imm;
            p.push_back(alu(is64, c.op, d, k, c.off));
          }
          break;
        }
        case 3: {
          const int32_t bits[] = {16, 32, 64};
          const uint8_t kinds[] = {BH_CLS_ALU | BH_ALU_END, BH_CLS_ALU | BH_ALU_END | BH_SRC_X,
                                   BH_CLS_ALU64 | BH_ALU_END, BH_CLS_ALU64 | BH_ALU_NEG, BH_CLS_ALU | BH_ALU_NEG};
          const uint8_t k = kinds[pick(5)];
          p.push_back(ins(k, d, 0, 0, (k & 0xf0) == BH_ALU_NEG ? 0 : bits[pick(3)]));
          break;
        }
        case 4: {
          const uint8_t size = uint8_t(pick(4) << 3);
          const int bytes[] = {4, 2, 1, 8};
          const int16_t off = int16_t(-(bytes[size >> 3] + int(pick(64 - 8))));
          if (pick(2) == 0) {
            p.push_back(pick(2) == 0 || size == BH_SIZE_DW ? ldx(size, d, 10, off) : ldxsx(size, d, 10, off));
          } else if (pick(2) == 0) {
            p.push_back(stx(size, 10, s, off));
          } else {
            p.push_back(st(size, 10, off, imm));
          }
          break;
        }
        case 5: {
          const int32_t ops[] = {BH_ATOMIC_ADD,     BH_ATOMIC_OR | BH_ATOMIC_FETCH,  BH_ATOMIC_AND | BH_ATOMIC_FETCH,
                                 BH_ATOMIC_XOR,     BH_ATOMIC_ADD | BH_ATOMIC_FETCH, BH_ATOMIC_XCHG,
                                 BH_ATOMIC_CMPXCHG, BH_ATOMIC_XOR | BH_ATOMIC_FETCH};
          const bool dw = pick(2) == 0;
          p.push_back(atomic(dw ? BH_SIZE_DW : BH_SIZE_W, 10, s, int16_t(-8 * (1 + pick(8)) + (dw ? 0 : 4 * pick(2))),
                             ops[pick(8)]));
          break;
        }
        default: {
          // A forward jump of 1..4 instructions; the hash section follows
          // the body, so any target is a real instruction.
          const uint8_t conds[] = {BH_JMP_JEQ,  BH_JMP_JGT, BH_JMP_JGE, BH_JMP_JSET, BH_JMP_JNE, BH_JMP_JSGT,
                                   BH_JMP_JSGE, BH_JMP_JLT, BH_JMP_JLE, BH_JMP_JSLT, BH_JMP_JSLE};
          const bool is32 = pick(2) == 0;
          const int16_t off = int16_t(pick(4) + 1);
          p.push_back(pick(2) == 0 ? jx(is32, conds[pick(11)], d, s, off) : jk(is32, conds[pick(11)], d, imm, off));
          break;
        }
      }
    }
    // Fold the stack slots into registers before hashing.
    for (int slot = 0; slot < 8; ++slot) {
      p.push_back(ldx(BH_SIZE_DW, 1, 10, int16_t(-8 * (slot + 1))));
      p.push_back(alu(true, BH_ALU_MUL, 0, 31));
      p.push_back(alux(true, BH_ALU_ADD, 0, 1));
    }
    hash_regs(p);
    char what[48];
    std::snprintf(what, sizeof what, "random program %u", iter);
    const int before = g_failures;
    differ(what, p);
    if (g_failures - before > 0 && g_failures > 20) return;  // enough noise
  }
}

// ---- entry and exit shapes -----------------------------------------------------

// Runs the compiled program through bh_jit_selftest_call_sentinels: every
// callee-saved register and rsp must come back as they were. Returns r0.
uint64_t run_with_sentinels(const char *what, bh_vm *vm, void *ctx = nullptr, size_t ctx_len = 0) {
  char err[160];
  const bh_jit_fn fn = bh_vm_compile(vm, err, sizeof err);
  ++g_checks;
  if (fn == nullptr) {
    ++g_failures;
    std::printf("FAIL %s: compile: %s\n", what, err);
    return 0;
  }
  uint64_t out[8] = {};
  const uint64_t r0 = bh_jit_selftest_call_sentinels(fn, ctx, ctx_len, out);
  const uint64_t want[6] = {0x1b1b1b1b1b1b1b1b, 0x5b5b5b5b5b5b5b5b, 0x7c7c7c7c7c7c7c7c,
                            0xd3d3d3d3d3d3d3d3, 0xe4e4e4e4e4e4e4e4, 0xf5f5f5f5f5f5f5f5};
  const char *names[6] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
  for (int i = 0; i < 6; ++i) {
    ++g_checks;
    if (out[i] != want[i]) {
      ++g_failures;
      std::printf("FAIL %s: %s not preserved: 0x%" PRIx64 "\n", what, names[i], out[i]);
    }
  }
  ++g_checks;
  if (out[6] != out[7]) {
    ++g_failures;
    std::printf("FAIL %s: rsp moved by %" PRId64 "\n", what, int64_t(out[6] - out[7]));
  }
  return r0;
}

// Every mix of named r6..r9 and r10, with and without a helper call, in each
// mode: leaf runs (fast mode, plain helpers) push 0..5 registers and reserve a
// stack frame only for r10, so each push count's alignment is exercised.
// Registers are read before they are written (they must start at zero, even
// with the host's values in rbx/r13-r15), helpers check SysV alignment, r10
// must be 16-byte aligned, and the host's callee-saved registers must survive.
void test_entry_shapes() {
  const Config modes[] = {Config{}, Config{true, 0, {}}, Config{false, 1000, {}}, Config{true, 1000, {}}};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; ++m) {
    for (int helper : {0, int(kAligned), int(kAlignedMayExit)}) {
      for (unsigned mask = 0; mask < 32; ++mask) {
        const bool r10 = (mask & 16) != 0;
        Prog p;
        uint64_t want = 0;
        for (uint8_t r = 6; r <= 9; ++r) {
          if (mask & (1u << (r - 6))) p.push_back(alux(true, BH_ALU_ADD, 0, r));  // + 0
        }
        p.push_back(movr(3, 0));  // r3 = r0 (0 so far); kept in r6..r9 below
        for (uint8_t r = 6; r <= 9; ++r) {
          if (mask & (1u << (r - 6))) {
            p.push_back(mov(r, 1000 * r));
            want += 1000 * r;
          }
        }
        if (r10) {
          p.push_back(st(BH_SIZE_DW, 10, -8, 77));
          p.push_back(st(BH_SIZE_DW, 10, -512, 11));
          want += 77 + 11;
        }
        if (helper != 0) {
          p.push_back(call(helper));  // r0 = 1 when aligned
          want += 1;
        } else {
          p.push_back(movr(0, 3));
        }
        for (uint8_t r = 6; r <= 9; ++r) {
          if (mask & (1u << (r - 6))) p.push_back(alux(true, BH_ALU_ADD, 0, r));
        }
        if (r10) {
          p.push_back(ldx(BH_SIZE_DW, 1, 10, -8));
          p.push_back(alux(true, BH_ALU_ADD, 0, 1));
          p.push_back(ldx(BH_SIZE_DW, 1, 10, -512));
          p.push_back(alux(true, BH_ALU_ADD, 0, 1));
          p.push_back(movr(1, 10));
          p.push_back(alu(true, BH_ALU_AND, 1, 15));
          p.push_back(alu(true, BH_ALU_LSH, 1, 20));  // a misaligned r10 shows in r0
          p.push_back(alux(true, BH_ALU_ADD, 0, 1));
        }
        p.push_back(exit_());
        char what[96];
        std::snprintf(what, sizeof what, "entry shape mode %zu helper %d r6-r9 mask 0x%x r10 %d", m, helper, mask & 15,
                      int(r10));
        expect_r0(what, p, want, modes[m]);
        VmPtr vm = make_vm(p, modes[m]);
        if (vm) {
          const uint64_t r0 = run_with_sentinels(what, vm.get());
          ++g_checks;
          if (r0 != want) {
            ++g_failures;
            std::printf("FAIL %s: r0 0x%" PRIx64 " with host registers set, expected 0x%" PRIx64 "\n", what, r0, want);
          }
        }
      }
    }
  }

  // The empty program compiles to almost nothing: no pushes, no frame.
  Prog p;
  p.push_back(mov(0, 0));
  p.push_back(exit_());
  VmPtr vm = make_vm(p, Config{});
  EXPECT(run_with_sentinels("empty program", vm.get()) == 0);
  EXPECT(bh_vm_jit_size(vm.get()) > 0 && bh_vm_jit_size(vm.get()) <= 8);
  // ... and returns 0 when it never writes r0, whatever rax held.
  p.clear();
  p.push_back(exit_());
  expect_r0("bare exit", p, 0);
  vm = make_vm(p, Config{});
  EXPECT(run_with_sentinels("bare exit", vm.get()) == 0);

  // r1/r2 arrive as ctx/ctx_len; r3..r5 start at zero without helper calls.
  std::vector<uint8_t> ctx(16, 0x42);
  p.clear();
  p.push_back(ldx(BH_SIZE_B, 0, 1, 3));
  p.push_back(alux(true, BH_ALU_ADD, 0, 2));
  p.push_back(alux(true, BH_ALU_ADD, 0, 3));
  p.push_back(alux(true, BH_ALU_ADD, 0, 4));
  p.push_back(alux(true, BH_ALU_ADD, 0, 5));
  p.push_back(exit_());
  expect_r0("ctx, ctx_len, zero r3-r5", p, 0x42 + 16, Config{}, ctx);
  vm = make_vm(p, Config{});
  EXPECT(run_with_sentinels("ctx, ctx_len, zero r3-r5", vm.get(), ctx.data(), ctx.size()) == 0x42 + 16);

  // A helper is passed r3..r5 the program never names: zero, as in the
  // interpreter, whatever the caller left in rdx/rcx/r8 (the harness leaves
  // ctx_len in rdx and a pointer in rcx).
  p.clear();
  p.push_back(mov(1, 1));
  p.push_back(mov(2, 10));
  p.push_back(call(kWeigh));
  p.push_back(exit_());
  expect_r0("unnamed r3-r5 reach a helper as zero", p, 21, Config{}, ctx);
  vm = make_vm(p, Config{});
  EXPECT(run_with_sentinels("unnamed r3-r5 reach a helper as zero", vm.get(), ctx.data(), ctx.size()) == 21);

  // Several exits, each an epilogue of its own, from a program with a frame
  // and saved registers.
  for (uint64_t v : {uint64_t(0), uint64_t(5), uint64_t(9)}) {
    p.clear();
    lddw(p, 7, v);
    p.push_back(stx(BH_SIZE_DW, 10, 7, -16));
    p.push_back(jk(false, BH_JMP_JEQ, 7, 0, 2));
    p.push_back(jk(false, BH_JMP_JEQ, 7, 5, 3));
    p.push_back(exit_());  // r0 = 0
    p.push_back(mov(0, 1));
    p.push_back(exit_());
    p.push_back(ldx(BH_SIZE_DW, 0, 10, -16));
    p.push_back(mov(9, 3));
    p.push_back(alux(true, BH_ALU_ADD, 0, 9));
    p.push_back(exit_());
    const uint64_t want = v == 0 ? 1 : v == 5 ? 8 : 0;
    expect_r0("several exits", p, want);
    vm = make_vm(p, Config{});
    EXPECT(run_with_sentinels("several exits", vm.get()) == want);
  }

  // Unwinding paths of full runs restore the host's registers too: an exit
  // request, a budget fault, a bad callx, a call-depth fault, each with
  // r6..r9 named or not, from the entry frame and from a local call.
  for (int kind = 0; kind < 4; ++kind) {
    for (bool named : {false, true}) {
      for (bool deep : {false, true}) {
        p.clear();
        if (named) {
          for (uint8_t r = 6; r <= 9; ++r) p.push_back(mov(r, r));
        }
        if (deep) {
          p.push_back(call_local(1));
          p.push_back(exit_());
        }
        Config cfg;
        uint64_t want = 0;
        int fault = BH_FAULT_NONE;
        if (kind == 0) {
          p.push_back(mov(1, 3));
          p.push_back(call(kMaybeExit));  // ends with r0 = 30
          p.push_back(mov(0, -1));
          p.push_back(exit_());
          want = 30;
        } else if (kind == 1) {
          cfg.budget = 50;
          p.push_back(ja(-1));
          fault = BH_FAULT_BUDGET;
        } else if (kind == 2) {
          p.push_back(mov(1, 3));
          p.push_back(callx(1));
          p.push_back(exit_());
          fault = BH_FAULT_BAD_HELPER;
        } else {
          p.push_back(call_local(-1));  // calls itself forever
          p.push_back(exit_());
          fault = BH_FAULT_CALL_DEPTH;
          if (!deep) continue;  // the recursion needs a function of its own
        }
        char what[80];
        std::snprintf(what, sizeof what, "unwind kind %d named %d deep %d", kind, int(named), int(deep));
        if (fault == BH_FAULT_NONE) {
          expect_r0(what, p, want, cfg);
        } else {
          expect_fault(what, p, fault, cfg);
        }
        vm = make_vm(p, cfg);
        if (vm) EXPECT(run_with_sentinels(what, vm.get()) == want);
      }
    }
  }
}

// Random programs over a random subset of the registers (so that leaf runs
// save some of r6..r9 and r10 and not others), with helper calls between
// them, against the interpreter and with the host's registers set.
void test_random_shapes(unsigned count) {
  std::mt19937_64 rng(977);
  auto pick = [&](uint64_t n) { return uint64_t(rng() % n); };
  for (unsigned iter = 0; iter < count; ++iter) {
    std::vector<uint8_t> regs = {0};
    for (uint8_t r = 1; r <= 9; ++r) {
      if (pick(2) == 0) regs.push_back(r);
    }
    const bool stack = pick(2) == 0;
    auto any = [&] { return regs[pick(regs.size())]; };
    // Stack slots: the top 16 and the frame's bottom two, all written first
    // (a forward jump may skip any later store).
    const int16_t slots[] = {-8,  -16, -24, -32,  -40,  -48,  -56,  -64,  -72,
                             -80, -88, -96, -104, -112, -120, -128, -504, -512};
    Prog p;
    if (stack) {
      for (int16_t off : slots) p.push_back(st(BH_SIZE_DW, 10, off, int32_t(rng())));
    }
    for (uint8_t r : regs) {
      if (pick(3) != 0) lddw(p, r, rng());  // some start at zero
    }
    const size_t body = 8 + pick(24);
    for (size_t i = 0; i < body; ++i) {
      const uint8_t d = any();
      const uint8_t s = any();
      switch (pick(6)) {
        case 0:
        case 1: {
          const uint8_t ops[] = {BH_ALU_ADD, BH_ALU_SUB, BH_ALU_MUL, BH_ALU_XOR, BH_ALU_OR, BH_ALU_LSH, BH_ALU_DIV};
          p.push_back(alux(pick(2) == 0, ops[pick(sizeof ops)], d, s));
          break;
        }
        case 2: p.push_back(alu(true, BH_ALU_ADD, d, int32_t(rng()))); break;
        case 3:
          if (stack) {
            const int16_t off = slots[pick(sizeof slots / sizeof slots[0])];
            p.push_back(pick(2) == 0 ? stx(BH_SIZE_DW, 10, s, off) : st(BH_SIZE_DW, 10, off, int32_t(rng())));
            p.push_back(ldx(BH_SIZE_DW, d, 10, off));
          }
          break;
        case 4: {
          // A helper call. It clobbers r1..r5 (the JIT's, not the
          // interpreter's), and a later call reads them all, so all are reset.
          const int32_t ids[] = {int32_t(kWeigh), int32_t(kAligned), int32_t(kClobber)};
          p.push_back(call(ids[pick(3)]));
          for (uint8_t r = 1; r <= 5; ++r) p.push_back(mov(r, int32_t(rng())));
          break;
        }
        default: p.push_back(jx(pick(2) == 0, BH_JMP_JGT, d, s, int16_t(1 + pick(2)))); break;
      }
    }
    for (uint8_t r : regs) {
      p.push_back(alu(true, BH_ALU_MUL, 0, 1000003));
      p.push_back(alux(true, BH_ALU_XOR, 0, r));
    }
    p.push_back(exit_());
    char what[48];
    std::snprintf(what, sizeof what, "random shape %u", iter);
    const Outcome o = differ(what, p);
    VmPtr vm = make_vm(p, Config{});
    if (vm) {
      const uint64_t r0 = run_with_sentinels(what, vm.get());
      ++g_checks;
      if (o.rc == 0 && r0 != o.r0) {
        ++g_failures;
        std::printf("FAIL %s: r0 0x%" PRIx64 " with host registers set, 0x%" PRIx64 " without\n", what, r0, o.r0);
      }
    }
    if (g_failures > 20) return;
  }
}

// ---- concurrency, W^X, sizes -------------------------------------------------

void test_threads() {
  // Many threads race to compile and run one VM; each run adds through a
  // locked atomic into a shared buffer and calls a helper.
  Prog p;
  lddw(p, 6, 0);  // patched below with the buffer address
  p.push_back(mov(2, 1));
  p.push_back(atomic(BH_SIZE_DW, 6, 2, 0, BH_ATOMIC_ADD));
  p.push_back(mov(1, 1));
  p.push_back(call(kCount));
  p.push_back(mov(0, 1));
  p.push_back(exit_());
  alignas(8) static uint64_t shared_word = 0;
  p[0].imm = int32_t(uint32_t(uintptr_t(&shared_word)));
  p[1].imm = int32_t(uint32_t(uintptr_t(&shared_word) >> 32));
  VmPtr vm = make_vm(p, Config{});
  EXPECT(vm != nullptr);
  if (!vm) return;
  g_counter = 0;
  constexpr int kThreads = 8;
  constexpr int kRuns = 20000;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRuns; ++i) {
        uint64_t r0 = 0;
        bh_fault f;
        if (bh_vm_exec_jit(vm.get(), nullptr, 0, &r0, &f) != 0 || r0 != 1) bad.fetch_add(1);
      }
    });
  }
  for (auto &t : threads) t.join();
  EXPECT(bad.load() == 0);
  EXPECT(shared_word == uint64_t(kThreads) * kRuns);
  EXPECT(g_counter.load() == uint64_t(kThreads) * kRuns);
  EXPECT(bh_vm_jit_size(vm.get()) > 0);
}

void test_wx_and_api() {
  Prog p;
  p.push_back(mov(0, 9));
  p.push_back(exit_());
  VmPtr vm = make_vm(p, Config{});
  EXPECT(bh_vm_jit_size(vm.get()) == 0);
  char err[128];
  bh_jit_fn fn = bh_vm_compile(vm.get(), err, sizeof err);
  EXPECT(fn != nullptr);
  if (fn == nullptr) return;
  EXPECT(bh_vm_compile(vm.get(), err, sizeof err) == fn);  // once
  EXPECT(fn(nullptr, 0) == 9);
  // The code's pages are read+exec, never write.
  const uintptr_t at = reinterpret_cast<uintptr_t>(fn);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool found = false;
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %7s", &lo, &hi, perms) != 3) continue;
    if (at >= lo && at < hi) {
      found = true;
      EXPECT(std::string(perms).substr(0, 3) == "r-x");
    }
  }
  EXPECT(found);

  // Compiling before load fails with a message.
  VmPtr empty(bh_vm_create());
  err[0] = '\0';
  EXPECT(bh_vm_compile(empty.get(), err, sizeof err) == nullptr && err[0] != '\0');
  bh_fault f{};
  uint64_t r0 = 0;
  EXPECT(bh_vm_exec_jit(empty.get(), nullptr, 0, &r0, &f) == -1 && f.message[0] != '\0');
}

// ---- benchmark -------------------------------------------------------------------

// The arithmetic loop, in C for gcc -O2 and hand-encoded as clang -O2 -target
// bpf would emit it.
__attribute__((noinline)) uint64_t native_loop(uint64_t n) {
  uint64_t x = 1, y = 2, acc = 0;
  for (uint64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    y ^= x >> 17;
    y = (y << 5) | (y >> 59);
    acc += (x & 0xffff) * (y | 1);
    acc ^= i;
  }
  return acc + y;
}

Prog bpf_loop() {
  Prog p;
  p.push_back(movr(1, 2));  // n = ctx_len
  p.push_back(mov(2, 1));   // x
  p.push_back(mov(3, 2));   // y
  p.push_back(mov(0, 0));   // acc
  p.push_back(mov(4, 0));   // i
  lddw(p, 6, 6364136223846793005ull);
  lddw(p, 7, 1442695040888963407ull);
  p.push_back(jk(false, BH_JMP_JEQ, 1, 0, 18));
  const size_t top = p.size();
  p.push_back(alux(true, BH_ALU_MUL, 2, 6));
  p.push_back(alux(true, BH_ALU_ADD, 2, 7));
  p.push_back(movr(5, 2));
  p.push_back(alu(true, BH_ALU_RSH, 5, 17));
  p.push_back(alux(true, BH_ALU_XOR, 3, 5));
  p.push_back(movr(5, 3));
  p.push_back(alu(true, BH_ALU_LSH, 5, 5));
  p.push_back(alu(true, BH_ALU_RSH, 3, 59));
  p.push_back(alux(true, BH_ALU_OR, 3, 5));
  p.push_back(movr(5, 2));
  p.push_back(alu(true, BH_ALU_AND, 5, 0xffff));
  p.push_back(movr(8, 3));
  p.push_back(alu(true, BH_ALU_OR, 8, 1));
  p.push_back(alux(true, BH_ALU_MUL, 5, 8));
  p.push_back(alux(true, BH_ALU_ADD, 0, 5));
  p.push_back(alux(true, BH_ALU_XOR, 0, 4));
  p.push_back(add(4, 1));
  p.push_back(jx(false, BH_JMP_JLT, 4, 1, int16_t(int64_t(top) - int64_t(p.size()) - 1)));
  p.push_back(alux(true, BH_ALU_ADD, 0, 3));
  p.push_back(exit_());
  return p;
}

template <typename F>
double best_seconds(F &&f) {
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
  }
  return best;
}

void bench(bool enforce) {
  const Prog p = bpf_loop();
  VmPtr vm = make_vm(p, Config{});
  EXPECT(vm != nullptr);
  if (!vm) return;
  char err[128];
  const bh_jit_fn fn = bh_vm_compile(vm.get(), err, sizeof err);
  EXPECT(fn != nullptr);
  if (fn == nullptr) return;
  volatile uint64_t n_small = 1000;
  uint64_t r_interp = 0;
  bh_vm_exec(vm.get(), nullptr, n_small, &r_interp, nullptr);
  EXPECT(fn(nullptr, n_small) == native_loop(n_small));
  EXPECT(r_interp == native_loop(n_small));

  volatile uint64_t n = 50000000;
  uint64_t sink = 0;
  const double t_native = best_seconds([&] { sink += native_loop(n); });
  const double t_jit = best_seconds([&] { sink += fn(nullptr, n); });
  Config budget;
  budget.budget = ~0ull >> 1;
  VmPtr vm_budget = make_vm(p, budget);
  const bh_jit_fn fn_budget = bh_vm_compile(vm_budget.get(), err, sizeof err);
  const double t_budget = best_seconds([&] { sink += fn_budget(nullptr, n); });
  const double ratio = t_jit / t_native;
  std::printf("bench: %" PRIu64
              " iterations: gcc -O2 %.3f s, jit %.3f s (%.2fx), jit+budget %.3f s (%.2fx), %zu bytes"
              " [sink %" PRIx64 "]\n",
              uint64_t(n), t_native, t_jit, ratio, t_budget, t_budget / t_native, bh_vm_jit_size(vm.get()), sink & 0xf);
  if (enforce) EXPECT(ratio < 2.0);
}

}  // namespace

int main(int argc, char **argv) {
  const bool enforce_bench = argc > 1 && std::strcmp(argv[1], "--bench") == 0;
  test_known_answers();
  test_alu_registers();
  test_alu_values();
  test_div_constants();
  test_jumps();
  test_memory();
  test_atomics();
  test_calls();
  test_checked();
  test_budget();
  test_random(20000);
  test_entry_shapes();
  test_random_shapes(3000);
  test_threads();
  test_wx_and_api();
  bench(enforce_bench);
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
