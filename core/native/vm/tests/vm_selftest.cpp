// Standalone self-test of the VM's validator and interpreter: ISA edge cases,
// atomics, calls, validator messages, checked mode and the budget. Programs
// are hand-encoded with the small builders below. Prints one line per failed
// check and a summary; exits non-zero on any failure.
#include <bpfhook/vm.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

#define EXPECT_EQ_U64(a, b)                                                                                     \
  do {                                                                                                          \
    ++g_checks;                                                                                                 \
    const uint64_t a_ = (a), b_ = (b);                                                                          \
    if (a_ != b_) {                                                                                             \
      ++g_failures;                                                                                             \
      std::printf("FAIL %s:%d: %s == 0x%" PRIx64 ", expected 0x%" PRIx64 "\n", __FILE__, __LINE__, #a, a_, b_); \
    }                                                                                                           \
  } while (0)

// ---- instruction builders -------------------------------------------------

bh_inst ins(uint8_t op, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bh_inst i{};
  i.opcode = op;
  i.dst = dst & 0xf;
  i.src = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

bh_inst alu64k(uint8_t op, uint8_t dst, int32_t imm, int16_t off = 0) {
  return ins(BH_CLS_ALU64 | op, dst, 0, off, imm);
}
bh_inst alu64x(uint8_t op, uint8_t dst, uint8_t src, int16_t off = 0) {
  return ins(BH_CLS_ALU64 | op | BH_SRC_X, dst, src, off, 0);
}
bh_inst alu32k(uint8_t op, uint8_t dst, int32_t imm, int16_t off = 0) { return ins(BH_CLS_ALU | op, dst, 0, off, imm); }
bh_inst alu32x(uint8_t op, uint8_t dst, uint8_t src, int16_t off = 0) {
  return ins(BH_CLS_ALU | op | BH_SRC_X, dst, src, off, 0);
}
bh_inst mov(uint8_t dst, int32_t imm) { return alu64k(BH_ALU_MOV, dst, imm); }
bh_inst movr(uint8_t dst, uint8_t src) { return alu64x(BH_ALU_MOV, dst, src); }
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
bh_inst jk(uint8_t op, uint8_t dst, int32_t imm, int16_t off) { return ins(BH_CLS_JMP | op, dst, 0, off, imm); }
bh_inst jx(uint8_t op, uint8_t dst, uint8_t src, int16_t off) {
  return ins(BH_CLS_JMP | op | BH_SRC_X, dst, src, off, 0);
}
bh_inst j32k(uint8_t op, uint8_t dst, int32_t imm, int16_t off) { return ins(BH_CLS_JMP32 | op, dst, 0, off, imm); }
bh_inst j32x(uint8_t op, uint8_t dst, uint8_t src, int16_t off) {
  return ins(BH_CLS_JMP32 | op | BH_SRC_X, dst, src, off, 0);
}
bh_inst ja(int16_t off) { return ins(BH_CLS_JMP | BH_JMP_JA, 0, 0, off, 0); }
bh_inst ja32(int32_t imm) { return ins(BH_CLS_JMP32 | BH_JMP_JA, 0, 0, 0, imm); }
bh_inst call(int32_t id) { return ins(BH_OP_CALL, 0, BH_CALL_HELPER, 0, id); }
bh_inst call_local(int32_t rel) { return ins(BH_OP_CALL, 0, BH_CALL_LOCAL, 0, rel); }
bh_inst callx(uint8_t reg) { return ins(BH_OP_CALLX, reg, 0, 0, 0); }
bh_inst exit_() { return ins(BH_OP_EXIT, 0, 0, 0, 0); }

// A program is a list of pieces; lddw is a two-slot piece.
struct Piece {
  std::vector<bh_inst> v;
  Piece(bh_inst i) : v{i} {}
  Piece(std::vector<bh_inst> x) : v(std::move(x)) {}
};
using Code = std::vector<bh_inst>;
Code prog(std::initializer_list<Piece> pieces) {
  Code c;
  for (const Piece &p : pieces) c.insert(c.end(), p.v.begin(), p.v.end());
  return c;
}
std::vector<bh_inst> lddw(uint8_t dst, uint64_t v, uint8_t src = 0) {
  return {ins(BH_OP_LDDW, dst, src, 0, int32_t(uint32_t(v))), ins(0, 0, 0, 0, int32_t(uint32_t(v >> 32)))};
}

// ---- running --------------------------------------------------------------

struct VmDeleter {
  void operator()(bh_vm *vm) const { bh_vm_destroy(vm); }
};
using VmPtr = std::unique_ptr<bh_vm, VmDeleter>;

uint64_t h_add(uint64_t a, uint64_t b, uint64_t, uint64_t, uint64_t) { return a + b; }
uint64_t h_sum5(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) { return a + b + c + d + e; }
// Like the conformance suite's helper 5: ends the program when r1 is 0.
uint64_t h_unwind(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (a == 0) bh_vm_request_exit(0x77);
  return a;
}
// Requests an exit but is not flagged MAY_EXIT: the request must be ignored.
uint64_t h_rogue(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  bh_vm_request_exit(0x99);
  return 3;
}

struct Options {
  bool checked = false;
  uint64_t budget = 0;
  std::vector<uint8_t> mem;
  bool no_helpers = false;
};

struct Result {
  int load_rc = -1;
  std::string load_err;
  int rc = -1;
  uint64_t r0 = 0;
  bh_fault fault{};
};

VmPtr make_vm(const Options &o) {
  VmPtr vm(bh_vm_create());
  if (!o.no_helpers) {
    bh_vm_register_helper(vm.get(), 1, "add", h_add, BH_HELPER_ARGS_SCALAR);
    bh_vm_register_helper(vm.get(), 2, "sum5", h_sum5, BH_HELPER_ARGS_SCALAR);
    bh_vm_register_helper(vm.get(), 5, "unwind", h_unwind, BH_HELPER_MAY_EXIT | BH_HELPER_ARGS_SCALAR);
    bh_vm_register_helper(vm.get(), 6, "rogue", h_rogue, BH_HELPER_ARGS_SCALAR);
  }
  bh_vm_set_checked(vm.get(), o.checked);
  bh_vm_set_budget(vm.get(), o.budget);
  return vm;
}

Result run(const Code &code, Options o = {}) {
  Result r;
  VmPtr vm = make_vm(o);
  char err[256] = "";
  r.load_rc = bh_vm_load(vm.get(), code.data(), code.size() * sizeof(bh_inst), err, sizeof err);
  r.load_err = err;
  if (r.load_rc != 0) return r;
  r.rc = bh_vm_exec(vm.get(), o.mem.empty() ? nullptr : o.mem.data(), o.mem.size(), &r.r0, &r.fault);
  return r;
}

// Runs in both fast and checked mode and expects the same r0.
void expect_r0(int line, const Code &code, uint64_t want, std::vector<uint8_t> mem = {}) {
  for (bool checked : {false, true}) {
    Options o;
    o.checked = checked;
    o.mem = mem;
    Result r = run(code, o);
    ++g_checks;
    if (r.load_rc != 0) {
      ++g_failures;
      std::printf("FAIL line %d: load failed: %s\n", line, r.load_err.c_str());
    } else if (r.rc != 0) {
      ++g_failures;
      std::printf("FAIL line %d (%s): exec failed: %s\n", line, checked ? "checked" : "fast", r.fault.message);
    } else if (r.r0 != want) {
      ++g_failures;
      std::printf("FAIL line %d (%s): r0 = 0x%" PRIx64 ", expected 0x%" PRIx64 "\n", line, checked ? "checked" : "fast",
                  r.r0, want);
    }
  }
}
#define R0(code, want, ...) expect_r0(__LINE__, code, want, ##__VA_ARGS__)

// Expects the load to fail with a message containing `want`.
void expect_reject(int line, const Code &code, const char *want) {
  Result r = run(code);
  ++g_checks;
  if (r.load_rc == 0) {
    ++g_failures;
    std::printf("FAIL line %d: load succeeded, expected \"%s\"\n", line, want);
  } else if (r.load_err.find(want) == std::string::npos) {
    ++g_failures;
    std::printf("FAIL line %d: load error \"%s\", expected \"%s\"\n", line, r.load_err.c_str(), want);
  }
}
#define REJECT(code, want) expect_reject(__LINE__, code, want)

constexpr uint64_t kIntMin64 = 0x8000000000000000ull;

// ---- ALU ------------------------------------------------------------------

void test_alu() {
  // 32-bit ops zero-extend.
  R0(prog({lddw(0, ~0ull), alu32k(BH_ALU_ADD, 0, 0), exit_()}), 0xffffffffull);
  R0(prog({lddw(0, ~0ull), alu32k(BH_ALU_ADD, 0, 1), exit_()}), 0);
  R0(prog({alu32k(BH_ALU_MOV, 0, -1), exit_()}), 0xffffffffull);
  R0(prog({mov(0, -1), exit_()}), ~0ull);
  R0(prog({mov(0, 0x7fffffff), alu32k(BH_ALU_MUL, 0, 4), exit_()}), 0xfffffffcull);
  R0(prog({mov(0, 3), alu64k(BH_ALU_SUB, 0, 5), exit_()}), uint64_t(-2));
  R0(prog({mov(0, 1), alu32k(BH_ALU_NEG, 0, 0), exit_()}), 0xffffffffull);
  R0(prog({mov(0, 1), alu64k(BH_ALU_NEG, 0, 0), exit_()}), ~0ull);
  R0(prog({mov(0, 0xf0), alu64k(BH_ALU_XOR, 0, 0xff), alu64k(BH_ALU_OR, 0, 0x100), alu64k(BH_ALU_AND, 0, 0x10f),
           exit_()}),
     0x10f);

  // Unsigned division and modulo by a zero register.
  R0(prog({mov(0, 7), mov(1, 0), alu64x(BH_ALU_DIV, 0, 1), exit_()}), 0);
  R0(prog({mov(0, 7), mov(1, 0), alu64x(BH_ALU_MOD, 0, 1), exit_()}), 7);
  R0(prog({mov(0, 7), mov(1, 0), alu32x(BH_ALU_DIV, 0, 1), exit_()}), 0);
  R0(prog({lddw(0, 0x100000005ull), mov(1, 0), alu32x(BH_ALU_MOD, 0, 1), exit_()}), 5);
  // 64-bit imm is sign-extended before an unsigned divide (div64-negative-imm).
  R0(prog({lddw(0, ~0ull), alu64k(BH_ALU_DIV, 0, -10), exit_()}), 1);
  // div32 uses only the low 32 bits of the divisor (div32-high-divisor).
  R0(prog({mov(0, 12), lddw(1, 0x100000004ull), alu32x(BH_ALU_DIV, 0, 1), exit_()}), 3);

  // Signed division and modulo (off 1).
  R0(prog({mov(0, -7), alu64k(BH_ALU_DIV, 0, 2, 1), exit_()}), uint64_t(-3));
  R0(prog({mov(0, -7), alu64k(BH_ALU_MOD, 0, 2, 1), exit_()}), uint64_t(-1));
  R0(prog({mov(0, 7), alu64k(BH_ALU_MOD, 0, -2, 1), exit_()}), 1);
  R0(prog({mov(0, 1), mov(1, 0), alu64x(BH_ALU_DIV, 0, 1, 1), exit_()}), 0);
  R0(prog({mov(0, -10), mov(1, 0), alu64x(BH_ALU_MOD, 0, 1, 1), exit_()}), uint64_t(-10));
  R0(prog({lddw(0, kIntMin64), alu64k(BH_ALU_DIV, 0, -1, 1), exit_()}), kIntMin64);
  R0(prog({lddw(0, kIntMin64), mov(1, -1), alu64x(BH_ALU_DIV, 0, 1, 1), exit_()}), kIntMin64);
  R0(prog({lddw(0, kIntMin64), alu64k(BH_ALU_MOD, 0, -1, 1), exit_()}), 0);
  R0(prog({lddw(0, kIntMin64), mov(1, -1), alu64x(BH_ALU_MOD, 0, 1, 1), exit_()}), 0);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), alu32k(BH_ALU_DIV, 0, -1, 1), exit_()}), 0x80000000ull);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), mov(1, -1), alu32x(BH_ALU_DIV, 0, 1, 1), exit_()}), 0x80000000ull);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), alu32k(BH_ALU_MOD, 0, -1, 1), exit_()}), 0);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), mov(1, -1), alu32x(BH_ALU_MOD, 0, 1, 1), exit_()}), 0);
  R0(prog({alu32k(BH_ALU_MOV, 0, -10), alu32k(BH_ALU_MOD, 0, 3, 1), exit_()}), 0xffffffffull);
  // smod32 by zero keeps the low 32 bits, zero-extended (smod32-neg-by-zero-reg).
  R0(prog({mov(0, -10), mov(1, 0), alu32x(BH_ALU_MOD, 0, 1, 1), exit_()}), 0xfffffff6ull);
  R0(prog({mov(0, -10), mov(1, 0), alu32x(BH_ALU_DIV, 0, 1, 1), exit_()}), 0);
  // The 32-bit signed ops read only the low halves: 0x1_FFFFFFF6 is -10.
  R0(prog({lddw(0, 0x1fffffff6ull), alu32k(BH_ALU_DIV, 0, 2, 1), exit_()}), 0xfffffffbull);

  // Shift counts are masked.
  R0(prog({mov(0, 1), mov(1, 65), alu64x(BH_ALU_LSH, 0, 1), exit_()}), 2);
  R0(prog({mov(0, 1), alu64k(BH_ALU_LSH, 0, -1), exit_()}), kIntMin64);
  R0(prog({mov(0, 1), mov(1, 33), alu32x(BH_ALU_LSH, 0, 1), exit_()}), 2);
  R0(prog({lddw(0, 0x180000000ull), alu32k(BH_ALU_RSH, 0, 1), exit_()}), 0x40000000);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), alu32k(BH_ALU_ARSH, 0, 4), exit_()}), 0xf8000000ull);
  R0(prog({alu32k(BH_ALU_MOV, 0, INT32_MIN), mov(1, 36), alu32x(BH_ALU_ARSH, 0, 1), exit_()}), 0xf8000000ull);
  R0(prog({lddw(0, kIntMin64), mov(1, 68), alu64x(BH_ALU_ARSH, 0, 1), exit_()}), 0xf800000000000000ull);
  R0(prog({lddw(0, kIntMin64), alu64k(BH_ALU_RSH, 0, 63), exit_()}), 1);

  // Sign-extending moves.
  R0(prog({mov(1, 0x80), alu64x(BH_ALU_MOV, 0, 1, 8), exit_()}), 0xffffffffffffff80ull);
  R0(prog({mov(1, 0x8000), alu64x(BH_ALU_MOV, 0, 1, 16), exit_()}), 0xffffffffffff8000ull);
  R0(prog({alu32k(BH_ALU_MOV, 1, INT32_MIN), alu64x(BH_ALU_MOV, 0, 1, 32), exit_()}), 0xffffffff80000000ull);
  R0(prog({mov(1, 0x7f), alu64x(BH_ALU_MOV, 0, 1, 8), exit_()}), 0x7f);
  R0(prog({mov(1, 0x80), alu32x(BH_ALU_MOV, 0, 1, 8), exit_()}), 0xffffff80ull);
  R0(prog({lddw(1, 0x1234567800008000ull), alu32x(BH_ALU_MOV, 0, 1, 16), exit_()}), 0xffff8000ull);
  R0(prog({lddw(1, 0x1234567880000000ull), alu32x(BH_ALU_MOV, 0, 1, 0), exit_()}), 0x80000000ull);

  // Byte swaps.
  const uint64_t v = 0x1122334455667788ull;
  R0(prog({lddw(0, v), alu32k(BH_ALU_END, 0, 16), exit_()}), 0x7788);
  R0(prog({lddw(0, v), alu32k(BH_ALU_END, 0, 32), exit_()}), 0x55667788);
  R0(prog({lddw(0, v), alu32k(BH_ALU_END, 0, 64), exit_()}), v);
  R0(prog({lddw(0, v), ins(BH_CLS_ALU | BH_ALU_END | BH_SRC_X, 0, 0, 0, 16), exit_()}), 0x8877);
  R0(prog({lddw(0, v), ins(BH_CLS_ALU | BH_ALU_END | BH_SRC_X, 0, 0, 0, 32), exit_()}), 0x88776655);
  R0(prog({lddw(0, v), ins(BH_CLS_ALU | BH_ALU_END | BH_SRC_X, 0, 0, 0, 64), exit_()}), 0x8877665544332211ull);
  R0(prog({lddw(0, v), alu64k(BH_ALU_END, 0, 16), exit_()}), 0x8877);
  R0(prog({lddw(0, v), alu64k(BH_ALU_END, 0, 32), exit_()}), 0x88776655);
  R0(prog({lddw(0, v), alu64k(BH_ALU_END, 0, 64), exit_()}), 0x8877665544332211ull);

  // r1 = ctx, r2 = ctx_len at entry (mem-len).
  R0(prog({movr(0, 2), exit_()}), 8, std::vector<uint8_t>(8));
}

// ---- memory ---------------------------------------------------------------

void test_memory() {
  R0(prog({st(BH_SIZE_DW, 10, -8, -1), ldx(BH_SIZE_DW, 0, 10, -8), exit_()}), ~0ull);
  R0(prog({st(BH_SIZE_W, 10, -8, -1), st(BH_SIZE_W, 10, -4, 0), ldx(BH_SIZE_DW, 0, 10, -8), exit_()}), 0xffffffffull);
  R0(prog({st(BH_SIZE_B, 10, -1, 0x80), ldxsx(BH_SIZE_B, 0, 10, -1), exit_()}), 0xffffffffffffff80ull);
  R0(prog({st(BH_SIZE_H, 10, -2, 0x8001), ldxsx(BH_SIZE_H, 0, 10, -2), exit_()}), 0xffffffffffff8001ull);
  R0(prog({st(BH_SIZE_W, 10, -4, INT32_MIN), ldxsx(BH_SIZE_W, 0, 10, -4), exit_()}), 0xffffffff80000000ull);
  R0(prog({st(BH_SIZE_H, 10, -2, 0x8001), ldx(BH_SIZE_H, 0, 10, -2), exit_()}), 0x8001);
  // Loads and stores through the context (r1).
  R0(prog({ldx(BH_SIZE_W, 0, 1, 4), exit_()}), 0x44332211, {0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44});
  R0(prog({mov(2, 0x2a), stx(BH_SIZE_B, 1, 2, 3), ldx(BH_SIZE_DW, 0, 1, 0), exit_()}), 0x2a000000ull,
     std::vector<uint8_t>(8));
  // Unaligned access is allowed.
  R0(prog({lddw(2, 0x0102030405060708ull), stx(BH_SIZE_DW, 10, 2, -13), ldx(BH_SIZE_W, 0, 10, -11), exit_()}),
     0x03040506);
}

// ---- atomics --------------------------------------------------------------

void test_atomics() {
  const int16_t o = -8;
  auto init = [](uint64_t v) { return prog({lddw(2, v), stx(BH_SIZE_DW, 10, 2, -8)}); };
  auto cat = [](Code a, const Code &b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  // Non-fetch forms change memory only.
  R0(cat(init(10), prog({mov(1, 5), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_ADD), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     15);
  R0(cat(init(10), prog({mov(1, 5), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_ADD), movr(0, 1), exit_()})), 5);
  R0(cat(init(0xf0),
         prog({mov(1, 0x0f), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_OR), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     0xff);
  R0(cat(init(0xf0),
         prog({mov(1, 0x3c), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_AND), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     0x30);
  R0(cat(init(0xf0),
         prog({mov(1, 0x3c), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_XOR), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     0xcc);
  // Fetch forms return the old value in src.
  R0(cat(init(10),
         prog({mov(1, 5), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_ADD | BH_ATOMIC_FETCH), movr(0, 1), exit_()})),
     10);
  R0(cat(init(0xf0),
         prog({mov(1, 0x0f), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_OR | BH_ATOMIC_FETCH), movr(0, 1), exit_()})),
     0xf0);
  R0(cat(init(0xf0), prog({mov(1, 0x0f), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_AND | BH_ATOMIC_FETCH),
                           ldx(BH_SIZE_DW, 0, 10, o), alu64x(BH_ALU_ADD, 0, 1), exit_()})),
     0xf0);
  R0(cat(init(0xff), prog({mov(1, 0x0f), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_XOR | BH_ATOMIC_FETCH),
                           ldx(BH_SIZE_DW, 0, 10, o), alu64k(BH_ALU_LSH, 0, 8), alu64x(BH_ALU_OR, 0, 1), exit_()})),
     0xf0ff);
  R0(cat(init(0x1122334455667788ull), prog({mov(1, 7), atomic(BH_SIZE_DW, 10, 1, o, BH_ATOMIC_XCHG),
                                            ldx(BH_SIZE_DW, 0, 10, o), alu64x(BH_ALU_ADD, 0, 1), exit_()})),
     0x1122334455667788ull + 7);
  // 32-bit forms touch only the low word and zero-extend what they fetch.
  R0(cat(init(0x00000001ffffffffull),
         prog({mov(1, 1), atomic(BH_SIZE_W, 10, 1, o, BH_ATOMIC_ADD), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     0x0000000100000000ull);
  R0(cat(init(0x12345678ffffff00ull),
         prog({mov(1, -1), atomic(BH_SIZE_W, 10, 1, o, BH_ATOMIC_ADD | BH_ATOMIC_FETCH), movr(0, 1), exit_()})),
     0xffffff00ull);
  R0(cat(init(0x12345678aaaaaaaaull),
         prog({mov(1, -1), atomic(BH_SIZE_W, 10, 1, o, BH_ATOMIC_XCHG), movr(0, 1), exit_()})),
     0xaaaaaaaaull);
  R0(cat(init(0x12345678aaaaaaaaull),
         prog({mov(1, 0x55), atomic(BH_SIZE_W, 10, 1, o, BH_ATOMIC_XCHG), ldx(BH_SIZE_DW, 0, 10, o), exit_()})),
     0x1234567800000055ull);

  // lock_cmpxchg (conformance): success stores src and r0 keeps the old
  // value; failure leaves memory and loads the current value into r0.
  R0(prog({lddw(0, 0x123456789abcdef0ull), stx(BH_SIZE_DW, 10, 0, -8), lddw(1, 0x1122334455667788ull),
           lddw(0, 0x0fedcba987654321ull), atomic(BH_SIZE_DW, 10, 1, -8, BH_ATOMIC_CMPXCHG),
           lddw(1, 0x123456789abcdef0ull), jx(BH_JMP_JNE, 0, 1, 16), ldx(BH_SIZE_DW, 0, 10, -8),
           jx(BH_JMP_JNE, 0, 1, 14),
           // second half: a match
           lddw(0, 0x123456789abcdef0ull), stx(BH_SIZE_DW, 10, 0, -8), lddw(1, 0x1122334455667788ull),
           atomic(BH_SIZE_DW, 10, 1, -8, BH_ATOMIC_CMPXCHG), lddw(1, 0x123456789abcdef0ull), jx(BH_JMP_JNE, 0, 1, 5),
           ldx(BH_SIZE_DW, 0, 10, -8), lddw(1, 0x1122334455667788ull), jx(BH_JMP_JNE, 0, 1, 1), mov(0, 0), exit_()}),
     0);
  // cmpxchg32 compares the low words only and zero-extends into r0.
  R0(prog({lddw(0, 0x123456789abcdef0ull), stx(BH_SIZE_DW, 10, 0, -8), alu32k(BH_ALU_MOV, 1, 0x11223344),
           atomic(BH_SIZE_W, 10, 1, -8, BH_ATOMIC_CMPXCHG), exit_()}),
     0x9abcdef0ull);
  R0(prog({lddw(0, 0x123456789abcdef0ull), stx(BH_SIZE_DW, 10, 0, -8), alu32k(BH_ALU_MOV, 1, 0x11223344),
           atomic(BH_SIZE_W, 10, 1, -8, BH_ATOMIC_CMPXCHG), ldx(BH_SIZE_DW, 0, 10, -8), exit_()}),
     0x1234567811223344ull);
  R0(prog({lddw(0, 0x123456789abcdef0ull), stx(BH_SIZE_DW, 10, 0, -8), mov(0, 5), alu32k(BH_ALU_MOV, 1, 0x11223344),
           atomic(BH_SIZE_W, 10, 1, -8, BH_ATOMIC_CMPXCHG), exit_()}),
     0x9abcdef0ull);

  // Many threads hammer one counter in the context: real atomics lose nothing.
  Code loop = prog({mov(2, 20000), mov(3, 1), atomic(BH_SIZE_DW, 1, 3, 0, BH_ATOMIC_ADD),
                    atomic(BH_SIZE_W, 1, 3, 8, BH_ATOMIC_ADD | BH_ATOMIC_FETCH), alu64k(BH_ALU_SUB, 2, 1),
                    jk(BH_JMP_JNE, 2, 0, -5), mov(0, 0), exit_()});
  VmPtr vm = make_vm(Options{});
  char err[256] = "";
  EXPECT(bh_vm_load(vm.get(), loop.data(), loop.size() * 8, err, sizeof err) == 0);
  alignas(8) uint64_t counters[2] = {0, 0};
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      uint64_t r0 = 0;
      if (bh_vm_exec(vm.get(), counters, sizeof counters, &r0, nullptr) != 0) failures++;
    });
  }
  for (auto &t : threads) t.join();
  EXPECT(failures == 0);
  EXPECT_EQ_U64(counters[0], 80000);
  EXPECT_EQ_U64(counters[1] & 0xffffffff, 80000);
}

// ---- jumps ----------------------------------------------------------------

void test_jumps() {
  // JMP compares 64 bits with the sign-extended imm; JMP32 the low halves.
  R0(prog({lddw(1, 0xffffffffull), mov(0, 0), jk(BH_JMP_JEQ, 1, -1, 1), mov(0, 1), exit_()}), 1);
  R0(prog({lddw(1, 0x1ffffffffull), mov(0, 0), j32k(BH_JMP_JEQ, 1, -1, 1), mov(0, 1), exit_()}), 0);
  R0(prog({mov(1, -1), mov(0, 0), jk(BH_JMP_JSGT, 1, 0, 1), mov(0, 1), exit_()}), 1);
  R0(prog({mov(1, -1), mov(0, 0), jk(BH_JMP_JGT, 1, 0, 1), mov(0, 1), exit_()}), 0);
  R0(prog({lddw(1, 0x80000000ull), mov(0, 0), j32k(BH_JMP_JSLT, 1, 0, 1), mov(0, 1), exit_()}), 0);
  R0(prog({lddw(1, 0x80000000ull), mov(0, 0), jk(BH_JMP_JSLT, 1, 0, 1), mov(0, 1), exit_()}), 1);
  R0(prog({mov(1, 6), mov(2, 4), mov(0, 0), jx(BH_JMP_JSET, 1, 2, 1), mov(0, 1), exit_()}), 0);
  R0(prog({mov(1, 6), mov(2, 1), mov(0, 0), j32x(BH_JMP_JSET, 1, 2, 1), mov(0, 1), exit_()}), 1);
  R0(prog({mov(1, 5), mov(2, 5), mov(0, 0), jx(BH_JMP_JLE, 1, 2, 1), mov(0, 1), exit_()}), 0);
  R0(prog({mov(1, -5), mov(2, 5), mov(0, 0), j32x(BH_JMP_JSGE, 1, 2, 1), mov(0, 1), exit_()}), 1);
  R0(prog({mov(1, 5), mov(0, 0), j32k(BH_JMP_JLT, 1, 6, 1), mov(0, 1), exit_()}), 0);
  // exit-not-last / ja32 (gotol): the last instruction may be a jump.
  R0(prog({mov(1, 0), ja(2), mov(2, 0), exit_(), mov(0, 0), ja(-4)}), 0);
  R0(prog({mov(1, 0), ja32(2), mov(0, 3), exit_(), mov(0, 4), ja32(-4)}), 3);
  // A counted loop (prime-style backward jump).
  R0(prog({mov(0, 0), mov(1, 10), alu64x(BH_ALU_ADD, 0, 1), alu64k(BH_ALU_SUB, 1, 1), jk(BH_JMP_JNE, 1, 0, -3),
           exit_()}),
     55);
}

// ---- calls ----------------------------------------------------------------

void test_calls() {
  // Helpers get r1..r5 and return r0.
  R0(prog({mov(1, 1), mov(2, 2), mov(3, 3), mov(4, 4), mov(5, 5), call(2), exit_()}), 15);
  // rfc9669_call_local.
  R0(prog({mov(1, 1), mov(2, 2), mov(3, 3), mov(4, 4), mov(5, 5), call_local(5), jk(BH_JMP_JNE, 0, 15, 2), mov(0, 1),
           exit_(), mov(0, 0), exit_(), mov(0, 0), alu64x(BH_ALU_ADD, 0, 1), alu64x(BH_ALU_ADD, 0, 2),
           alu64x(BH_ALU_ADD, 0, 3), alu64x(BH_ALU_ADD, 0, 4), alu64x(BH_ALU_ADD, 0, 5), exit_()}),
     1);
  // The callee has its own stack and may clobber r6-r9: the caller keeps
  // its r6-r9, r10 and stack slot.
  R0(prog({mov(6, 100), mov(9, 9), st(BH_SIZE_DW, 10, -8, 7), call_local(5), ldx(BH_SIZE_DW, 1, 10, -8),
           alu64x(BH_ALU_ADD, 0, 1), alu64x(BH_ALU_ADD, 0, 6), alu64x(BH_ALU_ADD, 0, 9), exit_(),
           // callee: scribbles over r6, r9 and its own [r10-8]
           mov(6, 1000), mov(9, 1000), st(BH_SIZE_DW, 10, -8, 2000), ldx(BH_SIZE_DW, 0, 10, -8), exit_()}),
     2000 + 7 + 100 + 9);
  // A callee may use a pointer into its caller's frame (checked mode too).
  R0(prog({st(BH_SIZE_DW, 10, -8, 41), movr(1, 10), alu64k(BH_ALU_ADD, 1, -8), call_local(2),
           ldx(BH_SIZE_DW, 0, 10, -8), exit_(), ldx(BH_SIZE_DW, 2, 1, 0), alu64k(BH_ALU_ADD, 2, 1),
           stx(BH_SIZE_DW, 1, 2, 0), exit_()}),
     42);
  // A chain of 8 frames (7 nested calls) is allowed.
  {
    Code c;
    for (int f = 0; f < 7; ++f) {
      c.push_back(call_local(1));
      c.push_back(exit_());
    }
    c.push_back(mov(0, 8));
    c.push_back(exit_());
    R0(c, 8);
    // One more frame is rejected at load, naming the call that opens it.
    Code d;
    for (int f = 0; f < 8; ++f) {
      d.push_back(call_local(1));
      d.push_back(exit_());
    }
    d.push_back(mov(0, 9));
    d.push_back(exit_());
    REJECT(d, "pc 14: local calls nest 9 frames deep, more than the limit of 8");
  }
  // Recursion is caught at run time.
  {
    Code rec = prog({call_local(1), exit_(), alu64k(BH_ALU_ADD, 0, 1), call_local(-2), exit_()});
    Result rr = run(rec);
    EXPECT(rr.load_rc == 0);
    EXPECT(rr.rc == -1);
    EXPECT(rr.fault.code == BH_FAULT_CALL_DEPTH);
    EXPECT(std::string(rr.fault.message) == "pc 3: local calls nest deeper than 8 frames");
    EXPECT(rr.fault.pc == 3);
  }
  // callx: the register holds a helper id (conformance callx).
  R0(prog({mov(1, -1), mov(2, 5), callx(2), mov(0, 2), exit_()}), 2);
  R0(prog({mov(1, 20), mov(2, 22), mov(7, 1), callx(7), exit_()}), 42);
  {
    Result r = run(prog({mov(3, 4), callx(3), exit_()}));
    EXPECT(r.load_rc == 0 && r.rc == -1);
    EXPECT(r.fault.code == BH_FAULT_BAD_HELPER);
    EXPECT(r.fault.addr == 4);
    EXPECT(std::string(r.fault.message) == "pc 1: callx to unregistered helper 4");
    Result big = run(prog({mov(3, -1), callx(3), exit_()}));
    EXPECT(big.fault.code == BH_FAULT_BAD_HELPER);
  }
  // MAY_EXIT helper: call_unwind_fail (no exit requested) and a real unwind.
  R0(prog({mov(1, -1), call(5), mov(0, 2), exit_()}), 2);
  {
    Result r = run(prog({mov(1, 0), call(5), mov(0, 2), exit_()}));
    EXPECT(r.rc == 0);
    EXPECT_EQ_U64(r.r0, 0x77);
    EXPECT(r.fault.code == BH_FAULT_HELPER_EXIT);
    // From inside a local call, too: the whole program ends.
    Result deep = run(prog({call_local(2), mov(0, 2), exit_(), mov(1, 0), mov(2, 5), callx(2), mov(0, 3), exit_()}));
    EXPECT(deep.rc == 0);
    EXPECT_EQ_U64(deep.r0, 0x77);
  }
  // A request from a helper not flagged MAY_EXIT is ignored, and a stale
  // request does not end a later MAY_EXIT call.
  R0(prog({call(6), mov(1, 1), call(5), mov(0, 4), exit_()}), 4);
  {
    VmPtr vm = make_vm(Options{});
    EXPECT(std::string(bh_vm_helper_name(vm.get(), 5)) == "unwind");
    EXPECT(bh_vm_helper_name(vm.get(), 3) == nullptr);
    EXPECT(bh_vm_helper_name(vm.get(), 100000) == nullptr);
  }
}

// ---- validator ------------------------------------------------------------

void test_validator() {
  REJECT(prog({}), "empty program");
  {
    VmPtr vm = make_vm(Options{});
    char err[128] = "";
    const Code c = prog({mov(0, 0), exit_()});
    EXPECT(bh_vm_load(vm.get(), c.data(), 12, err, sizeof err) == -1);
    EXPECT(std::string(err) == "program size 12 is not a multiple of 8 bytes");
    Code big(BH_MAX_INSTS + 1, exit_());
    EXPECT(bh_vm_load(vm.get(), big.data(), big.size() * 8, err, sizeof err) == -1);
    EXPECT(std::string(err) == "program has 65537 instructions, more than the limit of 65536");
    // A NULL error buffer is fine.
    EXPECT(bh_vm_load(vm.get(), c.data(), 12, nullptr, 0) == -1);
  }
  REJECT(prog({mov(0, 0), ins(0xff, 0, 0, 0, 0), exit_()}), "pc 1: unknown opcode 0xff");
  REJECT(prog({ins(BH_CLS_ALU64 | 0xe0, 0, 0, 0, 0), exit_()}), "pc 0: unknown opcode 0xe7");
  REJECT(prog({ins(BH_CLS_ALU64 | BH_ALU_NEG | BH_SRC_X, 0, 0, 0, 0), exit_()}), "pc 0: unknown opcode 0x8f");
  REJECT(prog({mov(11, 0), exit_()}), "pc 0: invalid destination register 11");
  REJECT(prog({mov(0, 0), movr(0, 12), exit_()}), "pc 1: invalid source register 12");
  REJECT(prog({mov(10, 0), exit_()}), "pc 0: cannot write to r10");
  REJECT(prog({ldx(BH_SIZE_DW, 10, 1, 0), exit_()}), "pc 0: cannot write to r10");
  REJECT(prog({lddw(10, 1), exit_()}), "pc 0: cannot write to r10");
  REJECT(prog({atomic(BH_SIZE_DW, 1, 10, 0, BH_ATOMIC_XCHG), exit_()}), "pc 0: cannot write to r10");
  REJECT(prog({ins(BH_CLS_ALU64 | BH_ALU_ADD, 0, 3, 0, 1), exit_()}),
         "pc 0: invalid source register 3 for an immediate");
  REJECT(prog({alu64k(BH_ALU_DIV, 0, 0), exit_()}), "pc 0: division by an immediate zero");
  REJECT(prog({alu32k(BH_ALU_MOD, 0, 0, 1), exit_()}), "pc 0: modulo by an immediate zero");
  REJECT(prog({alu64k(BH_ALU_DIV, 0, 3, 2), exit_()}), "pc 0: invalid offset 2 for div");
  REJECT(prog({alu32x(BH_ALU_MOV, 0, 1, 32), exit_()}), "pc 0: invalid sign-extension width 32 for mov32");
  REJECT(prog({alu64k(BH_ALU_END, 0, 24), exit_()}), "pc 0: invalid byte swap width 24");
  REJECT(prog({alu64k(BH_ALU_ADD, 0, 1, 4), exit_()}), "pc 0: invalid offset 4 for an alu op");
  REJECT(prog({jk(BH_JMP_JEQ, 0, 0, 5), exit_()}), "pc 0: jump to pc 6 is out of range (program has 2 instructions)");
  REJECT(prog({jk(BH_JMP_JEQ, 0, 0, -2), exit_()}), "pc 0: jump to pc -1 is out of range");
  REJECT(prog({ja(1), lddw(0, 1), exit_()}), "pc 0: jump to pc 2 lands in the middle of the lddw at pc 1");
  REJECT(prog({mov(0, 0)}), "pc 0: the program falls off its end");
  REJECT(prog({mov(0, 0), lddw(0, 1)}), "pc 1: the program falls off its end");
  REJECT(prog({mov(0, 0), ins(BH_OP_LDDW, 0, 0, 0, 0)}), "pc 1: incomplete lddw");
  REJECT(prog({ins(BH_OP_LDDW, 0, 0, 0, 0), ins(0, 1, 0, 0, 0), exit_()}),
         "pc 1: invalid second slot of the lddw at pc 0");
  REJECT(prog({call(3), exit_()}), "pc 0: call to unregistered helper 3");
  REJECT(prog({call(-7), exit_()}), "pc 0: call to unregistered helper -7");
  REJECT(prog({call_local(5), exit_()}), "pc 0: local call to pc 6 is out of range");
  REJECT(prog({call_local(2), exit_(), lddw(0, 1), exit_()}),
         "pc 0: local call to pc 3 lands in the middle of the lddw at pc 2");
  REJECT(prog({ins(BH_OP_CALL, 0, BH_CALL_KFUNC, 0, 1), exit_()}), "pc 0: kfunc calls are not supported");
  REJECT(prog({ins(BH_CLS_LD | BH_MODE_ABS | BH_SIZE_W, 0, 0, 0, 0), exit_()}), "pc 0: legacy packet access");
  REJECT(prog({ins(BH_CLS_LD | BH_MODE_IND | BH_SIZE_B, 0, 1, 0, 0), exit_()}), "pc 0: legacy packet access");
  REJECT(prog({atomic(BH_SIZE_DW, 10, 1, -8, 0x10), exit_()}), "pc 0: unknown atomic operation 0x10");
  REJECT(prog({atomic(BH_SIZE_H, 10, 1, -8, BH_ATOMIC_ADD), exit_()}), "pc 0: unknown opcode 0xcb");
  REJECT(prog({ldxsx(BH_SIZE_DW, 0, 10, -8), exit_()}), "pc 0: unknown opcode 0x99");
  REJECT(prog({ins(BH_CLS_JMP32 | BH_JMP_EXIT, 0, 0, 0, 0), exit_()}), "pc 0: unknown opcode 0x96");
  // A function may not run into the next, and jumps stay in their function.
  REJECT(prog({call_local(1), mov(0, 1), exit_()}), "pc 1: falls through into the function at pc 2");
  REJECT(prog({call_local(2), ja(2), exit_(), mov(0, 1), exit_()}), "pc 1: jump to pc 4 leaves the function");
  // Things clang emits are accepted.
  R0(prog({mov(0, 0), ins(BH_CLS_JMP | BH_JMP_JA, 0, 0, 0, 0), exit_()}), 0);

  // lddw forms: resolved at load into plain lddw, or refused.
  const Code map = prog({lddw(1, 0, BH_PSEUDO_MAP_FD), movr(0, 1), exit_()});
  REJECT(map, "pc 0: lddw source 1 (map fd) needs a resolver");
  REJECT(prog({lddw(1, 0, 7), exit_()}), "pc 0: unsupported lddw source 7");
  {
    VmPtr vm = make_vm(Options{});
    auto resolver = [](void *cookie, uint32_t pc, uint8_t src, int32_t imm, int32_t next_imm, uint64_t *out, char *err,
                       size_t err_len) -> int {
      if (imm == 3) {
        std::snprintf(err, err_len, "no map with fd %d", imm);
        return -1;
      }
      *out = *static_cast<uint64_t *>(cookie) + uint64_t(imm) + src + pc;
      return 0;
    };
    uint64_t base = 0x7f0000001000ull;
    bh_vm_set_lddw_resolver(vm.get(), resolver, &base);
    char err[256] = "";
    const Code c = prog({mov(0, 0), lddw(1, 0x500000002ull, BH_PSEUDO_MAP_FD), movr(0, 1), exit_()});
    EXPECT(bh_vm_load(vm.get(), c.data(), c.size() * 8, err, sizeof err) == 0);
    size_t n = 0;
    const bh_inst *loaded = bh_vm_insts(vm.get(), &n);
    EXPECT(n == 5 && loaded != nullptr && loaded[1].src == 0);
    uint64_t r0 = 0;
    EXPECT(bh_vm_exec(vm.get(), nullptr, 0, &r0, nullptr) == 0);
    EXPECT_EQ_U64(r0, base + 2 + 1 + 1);

    VmPtr vm2 = make_vm(Options{});
    bh_vm_set_lddw_resolver(vm2.get(), resolver, &base);
    const Code bad = prog({mov(0, 0), mov(0, 0), lddw(1, 3, BH_PSEUDO_MAP_VALUE), exit_()});
    EXPECT(bh_vm_load(vm2.get(), bad.data(), bad.size() * 8, err, sizeof err) == -1);
    EXPECT(std::string(err) == "pc 2: lddw source 2 (map value): no map with fd 3");
  }

  // Life-cycle rules.
  {
    VmPtr vm = make_vm(Options{});
    char err[128] = "";
    const Code c = prog({mov(0, 1), exit_()});
    uint64_t r0 = 0;
    bh_fault f{};
    EXPECT(bh_vm_exec(vm.get(), nullptr, 0, &r0, &f) == -1);
    EXPECT(std::string(f.message) == "no program loaded");
    EXPECT(bh_vm_load(vm.get(), c.data(), 16, err, sizeof err) == 0);
    EXPECT(bh_vm_load(vm.get(), c.data(), 16, err, sizeof err) == -1);
    EXPECT(std::string(err) == "a program is already loaded");
    EXPECT(bh_vm_register_helper(vm.get(), 9, "late", h_add, 0) == -1);
    EXPECT(bh_vm_register_helper(nullptr, 9, "x", h_add, 0) == -1);
    EXPECT(bh_vm_exec(vm.get(), nullptr, 0, &r0, &f) == 0 && r0 == 1 && f.code == BH_FAULT_NONE);
    VmPtr fresh(bh_vm_create());
    EXPECT(bh_vm_register_helper(fresh.get(), 65536, "x", h_add, 0) == -1);
    EXPECT(bh_vm_register_helper(fresh.get(), 65535, "x", h_add, 0) == 0);
    EXPECT(bh_vm_register_helper(fresh.get(), 1, "x", nullptr, 0) == -1);
    bh_vm_destroy(nullptr);
  }
}

// ---- checked mode and budget ----------------------------------------------

Result run_checked(const Code &c, std::vector<uint8_t> mem, uint64_t budget = 0) {
  Options o;
  o.checked = true;
  o.mem = std::move(mem);
  o.budget = budget;
  return run(c, o);
}

void test_checked() {
  char text[160];
  {
    std::vector<uint8_t> mem(8);
    Result r = run_checked(prog({ldx(BH_SIZE_DW, 0, 1, 4), exit_()}), mem);
    EXPECT(r.rc == -1 && r.fault.code == BH_FAULT_OUT_OF_BOUNDS);
    EXPECT(r.fault.pc == 0 && r.fault.size == 8);
    std::snprintf(text, sizeof text, "pc 0: load of 8 bytes at 0x%" PRIx64 " outside stack, context and regions",
                  r.fault.addr);
    EXPECT(std::string(r.fault.message) == text);
  }
  {
    Result r = run_checked(prog({mov(0, 0), mov(1, 0x10), st(BH_SIZE_DW, 1, 0, 1), exit_()}), {});
    EXPECT(r.rc == -1 && r.fault.code == BH_FAULT_OUT_OF_BOUNDS);
    EXPECT(std::string(r.fault.message) == "pc 2: store of 8 bytes to 0x10 outside stack, context and regions");
    EXPECT(r.fault.addr == 0x10);
  }
  // Below the frame, above the stack, and an address that wraps around.
  EXPECT(run_checked(prog({ldx(BH_SIZE_B, 0, 10, -513), exit_()}), {}).fault.code == BH_FAULT_OUT_OF_BOUNDS);
  EXPECT(run_checked(prog({ldx(BH_SIZE_B, 0, 10, -512), exit_()}), {}).rc == 0);
  EXPECT(run_checked(prog({ldx(BH_SIZE_W, 0, 10, -2), exit_()}), {}).fault.code == BH_FAULT_OUT_OF_BOUNDS);
  EXPECT(run_checked(prog({mov(1, -4), ldx(BH_SIZE_DW, 0, 1, 0), exit_()}), {}).fault.code == BH_FAULT_OUT_OF_BOUNDS);
  // Atomics are checked as stores.
  {
    Result r =
        run_checked(prog({mov(2, 1), atomic(BH_SIZE_W, 1, 2, 6, BH_ATOMIC_ADD), exit_()}), std::vector<uint8_t>(8));
    EXPECT(r.fault.code == BH_FAULT_OUT_OF_BOUNDS && r.fault.size == 4);
  }
  // A callee cannot reach below its own frame.
  {
    Result r = run_checked(prog({call_local(1), exit_(), ldx(BH_SIZE_DW, 0, 10, -520), exit_()}), {});
    EXPECT(r.fault.code == BH_FAULT_OUT_OF_BOUNDS && r.fault.pc == 2);
  }
  // Regions: readable, writable only if flagged.
  {
    alignas(8) static uint64_t ro[2] = {0x1111, 0x2222};
    alignas(8) static uint64_t rw[2] = {0, 0};
    const Code c = prog({lddw(1, uint64_t(uintptr_t(ro))), ldx(BH_SIZE_DW, 0, 1, 8), lddw(2, uint64_t(uintptr_t(rw))),
                         stx(BH_SIZE_DW, 2, 0, 8), ldx(BH_SIZE_DW, 3, 2, 8), stx(BH_SIZE_DW, 1, 3, 0), exit_()});
    VmPtr vm(bh_vm_create());
    bh_vm_set_checked(vm.get(), 1);
    EXPECT(bh_vm_add_region(vm.get(), ro, sizeof ro, 0) == 0);
    EXPECT(bh_vm_add_region(vm.get(), rw, sizeof rw, 1) == 0);
    EXPECT(bh_vm_add_region(vm.get(), nullptr, 8, 1) == -1);
    char err[128] = "";
    EXPECT(bh_vm_load(vm.get(), c.data(), c.size() * 8, err, sizeof err) == 0);
    uint64_t r0 = 0;
    bh_fault f{};
    EXPECT(bh_vm_exec(vm.get(), nullptr, 0, &r0, &f) == -1);
    EXPECT(f.code == BH_FAULT_OUT_OF_BOUNDS && f.pc == 7);
    EXPECT(std::strstr(f.message, "pc 7: store of 8 bytes to 0x") == f.message);
    EXPECT(rw[1] == 0x2222);
    EXPECT(ro[0] == 0x1111);
    EXPECT(bh_vm_add_region(vm.get(), rw, sizeof rw, 1) == -1);  // after load
  }
}

void test_budget() {
  const Code forever = prog({mov(0, 0), alu64k(BH_ALU_ADD, 0, 1), ja(-2)});
  for (bool checked : {false, true}) {
    Options o;
    o.checked = checked;
    o.budget = 1000;
    Result r = run(forever, o);
    EXPECT(r.rc == -1 && r.fault.code == BH_FAULT_BUDGET);
    EXPECT(std::string(r.fault.message).find("instruction budget of 1000 exhausted") != std::string::npos);
  }
  // Exactly the budget is fine, one less is not (lddw counts once).
  const Code four = prog({mov(0, 1), lddw(1, 2), alu64x(BH_ALU_ADD, 0, 1), exit_()});
  Options o;
  o.budget = 4;
  Result ok = run(four, o);
  EXPECT(ok.rc == 0 && ok.r0 == 3);
  o.budget = 3;
  Result over = run(four, o);
  EXPECT(over.rc == -1 && over.fault.code == BH_FAULT_BUDGET && over.fault.pc == 4);
  EXPECT(std::string(over.fault.message) == "pc 4: instruction budget of 3 exhausted");
}

// ---- helper arguments in checked mode (both backends) -------------------------

uint64_t h_sum_bytes(uint64_t p, uint64_t n, uint64_t, uint64_t, uint64_t) {
  uint64_t s = 0;
  for (uint64_t i = 0; i < n; ++i) s += reinterpret_cast<const uint8_t *>(uintptr_t(p))[i];
  return s;
}
uint64_t h_key_first(uint64_t, uint64_t key, uint64_t, uint64_t, uint64_t) {
  return *reinterpret_cast<const uint32_t *>(uintptr_t(key));
}

struct ArgRun {
  int load_rc = -1;
  std::string load_err;
  int rc[2] = {-1, -1};  // interpreter, JIT
  uint64_t r0[2] = {0, 0};
  bh_fault fault[2] = {};
};

constexpr uint8_t kFakeMap[16] = {};  // a map handle: only its address matters

ArgRun run_args(const Code &c, uint32_t flags_of_7 = 0, bool proto_of_7 = true, bool checked = true) {
  ArgRun r;
  VmPtr vm(bh_vm_create());
  // 7: sum_bytes(buf, size); 8: key_first(map, key), hash maps (type 1) only.
  bh_vm_register_helper(vm.get(), 7, "sum_bytes", h_sum_bytes, flags_of_7);
  bh_vm_register_helper(vm.get(), 8, "key_first", h_key_first, 0);
  const bh_helper_proto p7 = {sizeof(bh_helper_proto),
                              {BH_ARG_PTR_TO_MEM, BH_ARG_CONST_SIZE, 0, 0, 0},
                              0,
                              {"buf", "size", nullptr, nullptr, nullptr}};
  const bh_helper_proto p8 = {sizeof(bh_helper_proto),
                              {BH_ARG_CONST_MAP_PTR, BH_ARG_PTR_TO_MAP_KEY, 0, 0, 0},
                              uint64_t(1) << 1,
                              {"map", "key", nullptr, nullptr, nullptr}};
  if (proto_of_7) bh_vm_set_helper_proto(vm.get(), 7, &p7);
  bh_vm_set_helper_proto(vm.get(), 8, &p8);
  const bh_vm_map m = {sizeof(bh_vm_map), kFakeMap, 1, 4, 8, nullptr, 0};
  bh_vm_add_map(vm.get(), &m);
  bh_vm_set_checked(vm.get(), checked ? 1 : 0);
  char err[256] = "";
  r.load_rc = bh_vm_load(vm.get(), c.data(), c.size() * sizeof(bh_inst), err, sizeof err);
  r.load_err = err;
  if (r.load_rc != 0) return r;
  r.rc[0] = bh_vm_exec(vm.get(), nullptr, 0, &r.r0[0], &r.fault[0]);
  r.rc[1] = bh_vm_exec_jit(vm.get(), nullptr, 0, &r.r0[1], &r.fault[1]);
  return r;
}

void expect_arg_fault(int line, const ArgRun &r, const char *want) {
  for (int b = 0; b < 2; ++b) {
    ++g_checks;
    if (r.load_rc != 0 || r.rc[b] != -1 || r.fault[b].code != BH_FAULT_HELPER_ARG ||
        std::strstr(r.fault[b].message, want) == nullptr) {
      ++g_failures;
      std::printf("FAIL line %d (%s): load %d \"%s\" rc %d code %d \"%s\", expected \"%s\"\n", line,
                  b == 0 ? "interp" : "jit", r.load_rc, r.load_err.c_str(), r.rc[b], r.fault[b].code,
                  r.fault[b].message, want);
    }
  }
}

void test_helper_args() {
  const uint64_t map = uint64_t(uintptr_t(kFakeMap));
  // Good: 4 bytes on the stack, summed; key read through a known map.
  {
    const Code c =
        prog({st(BH_SIZE_W, 10, -4, 0x01010101), movr(1, 10), alu64k(BH_ALU_ADD, 1, -4), mov(2, 4), call(7), exit_()});
    ArgRun r = run_args(c);
    EXPECT(r.load_rc == 0 && r.rc[0] == 0 && r.rc[1] == 0 && r.r0[0] == 4 && r.r0[1] == 4);
    const Code k =
        prog({st(BH_SIZE_W, 10, -4, 77), lddw(1, map), movr(2, 10), alu64k(BH_ALU_ADD, 2, -4), call(8), exit_()});
    ArgRun rk = run_args(k);
    EXPECT(rk.rc[0] == 0 && rk.rc[1] == 0 && rk.r0[0] == 77 && rk.r0[1] == 77);
  }
  // A bad pointer, an oversize length, a size of 0, past the frame (r10).
  expect_arg_fault(__LINE__, run_args(prog({mov(1, 0x10), mov(2, 4), call(7), exit_()})),
                   "pc 2: sum_bytes: arg 1 (buf): 4 bytes at 0x10 outside stack, context and regions");
  expect_arg_fault(__LINE__,
                   run_args(prog({movr(1, 10), alu64k(BH_ALU_ADD, 1, -8), mov(2, 0x100000), call(7), exit_()})),
                   "sum_bytes: arg 1 (buf): 1048576 bytes at 0x");
  expect_arg_fault(__LINE__, run_args(prog({movr(1, 10), mov(2, 0), call(7), exit_()})),
                   "sum_bytes: arg 2 (size): size 0");
  expect_arg_fault(__LINE__, run_args(prog({movr(1, 10), mov(2, 1), call(7), exit_()})),
                   "sum_bytes: arg 1 (buf): 1 bytes at 0x");
  // Not a map, and a key past the frame.
  expect_arg_fault(__LINE__, run_args(prog({mov(1, 0x1000), movr(2, 10), call(8), exit_()})),
                   "key_first: arg 1 (map): 0x1000 is not a map of this program");
  expect_arg_fault(__LINE__, run_args(prog({lddw(1, map), movr(2, 10), call(8), exit_()})),
                   "key_first: arg 2 (key): 4 bytes at 0x");
  // callx goes through the same check.
  expect_arg_fault(__LINE__, run_args(prog({mov(1, 0x10), mov(2, 4), mov(3, 7), callx(3), exit_()})),
                   "pc 3: sum_bytes: arg 1 (buf): 4 bytes at 0x10");
  // No prototype: refused at load in checked mode, unless flagged scalar;
  // fast mode never checks.
  {
    ArgRun r = run_args(prog({mov(1, 0), mov(2, 0), call(7), exit_()}), 0, false);
    EXPECT(r.load_rc != 0 && r.load_err.find("helper 7 'sum_bytes' has no argument prototype") != std::string::npos);
    ArgRun s = run_args(prog({mov(1, 0), mov(2, 0), call(7), exit_()}), BH_HELPER_ARGS_SCALAR, false);
    EXPECT(s.load_rc == 0 && s.rc[0] == 0 && s.rc[1] == 0);
    ArgRun f = run_args(prog({mov(1, 0), mov(2, 0), call(7), exit_()}), 0, false, false);
    EXPECT(f.load_rc == 0 && f.rc[0] == 0 && f.rc[1] == 0);
    ArgRun x = run_args(prog({mov(1, 0), mov(2, 0), mov(3, 7), callx(3), exit_()}), 0, false);
    EXPECT(x.load_rc == 0 && x.fault[0].code == BH_FAULT_HELPER_ARG && x.fault[1].code == BH_FAULT_HELPER_ARG);
  }
  // Checked mode zeroes every frame: never-written slots read 0, in the
  // entry frame and in a callee's (after an earlier callee wrote there).
  {
    // r0 = the second callee's read of the slot the first wrote, | an
    // entry-frame slot nobody wrote.
    const Code c = prog({call_local(4), call_local(6), ldx(BH_SIZE_DW, 1, 10, -256), alu64x(BH_ALU_OR, 0, 1), exit_(),
                         st(BH_SIZE_DW, 10, -8, 0x5a5a), mov(0, 0), exit_(), ldx(BH_SIZE_DW, 0, 10, -8), exit_()});
    ArgRun r = run_args(c);
    EXPECT(r.load_rc == 0 && r.rc[0] == 0 && r.rc[1] == 0);
    EXPECT(r.r0[0] == 0 && r.r0[1] == 0);
  }
}

}  // namespace

// ---- callbacks (lddw src 4, BH_HELPER_CALLS_BACK) ----------------------------

// Runs callback `ref` for i = 0, 1 with (i, ctx) and returns the sum of its
// returns; 1000 + the error if an invocation fails.
uint64_t h_twice(uint64_t ref, uint64_t ctx, uint64_t, uint64_t, uint64_t) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < 2; ++i) {
    uint64_t r0 = 0;
    const int rc = bh_vm_callback_invoke(ref, i, ctx, 0, 0, 0, nullptr, 0, &r0);
    if (rc != 0) return 1000 + uint64_t(int64_t(rc));
    sum += r0;
  }
  return sum;
}
// Not flagged BH_HELPER_CALLS_BACK: its invocation must be refused.
uint64_t h_sneaky(uint64_t ref, uint64_t, uint64_t, uint64_t, uint64_t) {
  uint64_t r0 = 0;
  return uint64_t(int64_t(bh_vm_callback_invoke(ref, 0, 0, 0, 0, 0, nullptr, 0, &r0)));
}

struct CbRun {
  int load_rc = -1;
  std::string load_err;
  int rc = -1;
  uint64_t r0 = 0;
  bh_fault fault{};
};

CbRun run_cb(const Code &code, bool jit, bool checked, uint64_t budget = 0) {
  CbRun r;
  VmPtr vm = make_vm(Options{});
  bh_vm_register_helper(vm.get(), 7, "twice", h_twice, BH_HELPER_CALLS_BACK | BH_HELPER_ARGS_SCALAR);
  bh_vm_register_helper(vm.get(), 8, "sneaky", h_sneaky, BH_HELPER_ARGS_SCALAR);
  bh_vm_set_checked(vm.get(), checked);
  bh_vm_set_budget(vm.get(), budget);
  char err[256] = "";
  r.load_rc = bh_vm_load(vm.get(), code.data(), code.size() * sizeof(bh_inst), err, sizeof err);
  r.load_err = err;
  if (r.load_rc != 0) return r;
  r.rc =
      jit ? bh_vm_exec_jit(vm.get(), nullptr, 0, &r.r0, &r.fault) : bh_vm_exec(vm.get(), nullptr, 0, &r.r0, &r.fault);
  return r;
}

void test_callbacks() {
  // twice(cb, 10) = cb(0, 10) + cb(1, 10), cb(i, ctx) = i + ctx.
  const Code sum = prog({lddw(1, uint64_t(5 - 0 - 1), BH_PSEUDO_FUNC), mov(2, 10), call(7), exit_(), movr(0, 1),
                         alu64x(BH_ALU_ADD, 0, 2), exit_()});
  // A helper asking to end the program inside the callback ends the run.
  const Code unwind = prog({lddw(1, uint64_t(5 - 0 - 1), BH_PSEUDO_FUNC), mov(2, 0), call(7), exit_(), mov(1, 0),
                            call(5), mov(0, 1), exit_()});
  // A helper without the flag cannot run callbacks.
  const Code sneaky = prog({lddw(1, uint64_t(4 - 0 - 1), BH_PSEUDO_FUNC), call(8), exit_(), mov(0, 1), exit_()});
  // A value that is not a callback reference.
  const Code bogus = prog({lddw(1, 0x1234), mov(2, 0), call(7), exit_()});
  for (bool jit : {false, true}) {
    for (bool checked : {false, true}) {
      CbRun r = run_cb(sum, jit, checked);
      EXPECT(r.load_rc == 0);
      EXPECT(r.rc == 0);
      EXPECT_EQ_U64(r.r0, 21);
      r = run_cb(unwind, jit, checked);
      EXPECT(r.rc == 0);
      EXPECT_EQ_U64(r.r0, 0x77);
      EXPECT(r.fault.code == BH_FAULT_HELPER_EXIT);
      r = run_cb(sneaky, jit, checked);
      EXPECT(r.rc == 0);
      EXPECT_EQ_U64(r.r0, uint64_t(int64_t(-22)));
      r = run_cb(bogus, jit, false);
      EXPECT(r.rc == 0);
      EXPECT_EQ_U64(r.r0, 1000 - 22);
      // The budget is the run's: callbacks spend it (the JIT charges each
      // entry into one; the main function alone never pays here).
      r = run_cb(sum, jit, checked, 1);
      EXPECT(r.rc != 0 && r.fault.code == BH_FAULT_BUDGET);
    }
  }
  // Outside a run nothing can be invoked.
  uint64_t r0 = 0;
  EXPECT(bh_vm_callback_invoke(0, 0, 0, 0, 0, 0, nullptr, 0, &r0) == -22);
  // Bad references are refused at load.
  REJECT(prog({lddw(1, uint64_t(-1), BH_PSEUDO_FUNC), exit_()}), "callback at pc 0 is the entry function");
  REJECT(prog({lddw(1, 40, BH_PSEUDO_FUNC), exit_()}), "callback at pc 41 is out of range");
  REJECT(prog({lddw(1, 0, BH_PSEUDO_FUNC), mov(0, 0), exit_()}), "callback to pc 1 lands in the middle of the lddw");
  REJECT(prog({lddw(1, 1, BH_PSEUDO_FUNC), mov(0, 0), exit_()}), "pc 0: falls through into the function at pc 2");
}

int main() {
  test_callbacks();
  test_alu();
  test_memory();
  test_atomics();
  test_jumps();
  test_calls();
  test_validator();
  test_checked();
  test_budget();
  test_helper_args();
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
