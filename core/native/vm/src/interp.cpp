// The interpreter. One loop, instantiated per mode (checked memory access,
// instruction budget) so the default fast mode carries no checks at all.
// It trusts everything the validator proved (opcodes, registers, jump and
// call targets, r10 never written) and checks only what depends on run-time
// values: memory addresses (checked mode), the budget, call depth and callx.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "vm_internal.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the byte-swap ops assume a little-endian host");

namespace {

// Stack layout: one block of BH_MAX_CALL_DEPTH frames, the entry frame at the
// top, each local call's frame directly below its caller's, with nothing
// between them. Checked mode therefore lets a function reach its callers'
// frames too ([current frame's bottom, entry frame's top)): clang passes
// pointers to locals into non-inlined functions, and those frames are live.
// A callback (bpf_loop ...) is a nested run of this loop on the same block:
// its frame is the one below the function that called the helper, and it
// shares the budget count and the depth limit with the run it is nested in.
constexpr size_t kStackBytes = size_t(BH_MAX_CALL_DEPTH) * BH_STACK_SIZE;

struct Frame {
  uint64_t saved[5];  // r6..r9, r10
  size_t ret_pc;
};

template <typename T>
inline T load(uint64_t addr) {
  T v;
  std::memcpy(&v, reinterpret_cast<const void *>(uintptr_t(addr)), sizeof v);
  return v;
}

template <typename T>
inline void store(uint64_t addr, T v) {
  std::memcpy(reinterpret_cast<void *>(uintptr_t(addr)), &v, sizeof v);
}

template <typename T>
inline auto as_signed(T v) {
  return static_cast<std::make_signed_t<T>>(v);
}

// Division and modulo with the ISA's total semantics: x/0 = 0, x%0 = x, and
// INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0 (no SIGFPE). T is uint32_t or
// uint64_t; callers zero-extend 32-bit results.
template <typename T>
inline T div_op(T a, T b, bool is_signed) {
  if (b == 0) return 0;
  if (!is_signed) return a / b;
  if (as_signed(b) == -1) return T(0) - a;  // wraps INT_MIN to itself without UB
  return T(as_signed(a) / as_signed(b));
}

template <typename T>
inline T mod_op(T a, T b, bool is_signed) {
  if (b == 0) return a;
  if (!is_signed) return a % b;
  if (as_signed(b) == -1) return 0;
  return T(as_signed(a) % as_signed(b));
}

// The ISA's atomics are sequentially consistent read-modify-writes; programs
// run on many threads at once, so these must be real locked instructions.
// `src` receives the old value for the FETCH forms and xchg, `r0` for cmpxchg.
template <typename T>
inline void atomic_op(uint64_t addr, int32_t op, uint64_t &src, uint64_t &r0) {
  T *p = reinterpret_cast<T *>(uintptr_t(addr));
  const T v = T(src);
  switch (op) {
    case BH_ATOMIC_ADD: __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_OR: __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_AND: __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_XOR: __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_ADD | BH_ATOMIC_FETCH: src = __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_OR | BH_ATOMIC_FETCH: src = __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_AND | BH_ATOMIC_FETCH: src = __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_XOR | BH_ATOMIC_FETCH: src = __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_XCHG: src = __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); break;
    case BH_ATOMIC_CMPXCHG: {
      T expected = T(r0);
      // On failure `expected` becomes the current value, on success it
      // already is: either way it is the old value the ISA puts in r0.
      __atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      r0 = expected;
      break;
    }
    default: break;  // the validator admits no other
  }
}

__attribute__((cold, noinline, format(printf, 6, 7))) int report(bh_fault *fault, int code, size_t pc, uint64_t addr,
                                                                 uint32_t size, const char *fmt, ...) {
  if (fault != nullptr) {
    fault->code = code;
    fault->pc = uint32_t(pc);
    fault->addr = addr;
    fault->size = size;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fault->message, sizeof fault->message, fmt, ap);
    va_end(ap);
  }
  return -1;
}

__attribute__((cold, noinline)) int out_of_bounds(bh_fault *fault, size_t pc, uint64_t addr, uint32_t size,
                                                  bool is_store) {
  if (is_store) {
    return report(fault, BH_FAULT_OUT_OF_BOUNDS, pc, addr, size,
                  "pc %zu: store of %u bytes to 0x%" PRIx64 " outside stack, context and regions", pc, size, addr);
  }
  return report(fault, BH_FAULT_OUT_OF_BOUNDS, pc, addr, size,
                "pc %zu: load of %u bytes at 0x%" PRIx64 " outside stack, context and regions", pc, size, addr);
}

inline void succeed(bh_fault *fault, int code, size_t pc) {
  if (fault != nullptr) {
    fault->code = code;
    fault->pc = uint32_t(pc);
    fault->addr = 0;
    fault->size = 0;
    fault->message[0] = '\0';
  }
}

// Calls a helper with r1..r5 and leaves its r0 in reg[0]. Returns true when
// a BH_HELPER_MAY_EXIT helper asked to end the program; reg[0] then holds
// the value the program ends with.
inline bool call_helper(const bh::Helper &h, uint64_t *reg) {
  if ((h.flags & BH_HELPER_MAY_EXIT) == 0) {
    reg[0] = h.fn(reg[1], reg[2], reg[3], reg[4], reg[5]);
    return false;
  }
  bh::ExitRequest &req = bh::exit_request();
  req.requested = false;
  reg[0] = h.fn(reg[1], reg[2], reg[3], reg[4], reg[5]);
  if (!req.requested) return false;
  req.requested = false;
  reg[0] = req.ret;
  return true;
}

// Where a run starts: the entry function (pc 0, r1 = ctx, r2 = ctx_len, the
// top frame) or a callback (its pc, r1..r5 from the helper, the frame below
// the caller's, `depth0` frames already in use by the enclosing run).
struct Start {
  size_t pc;
  uint64_t args[5];
  uint64_t frame_top;
  int depth0;
};

// Runs a BH_HELPER_CALLS_BACK helper with this run published as the
// thread's callback link; `executed` is shared with nested runs through it.
template <bool Budget>
__attribute__((noinline)) int call_calls_back(const bh_vm *vm, const bh::Helper &h, uint64_t *reg, void *ctx,
                                              size_t ctx_len, uint64_t stack_top, int depth, uint64_t &executed,
                                              bh_fault *fault, bool &exited);

template <bool Checked, bool Budget>
int run(const bh_vm *vm, void *ctx, size_t ctx_len, uint64_t stack_top, const Start &start, uint64_t &executed_io,
        uint64_t *r0_out, bh_fault *fault) {
  const bh_inst *const code = vm->insts.data();
  const bh::Helper *const helpers = vm->helpers.data();
  const size_t n_helpers = vm->helpers.size();
  const uint64_t budget = vm->budget;
  // A local copy, so the loop keeps it in a register; written back whenever
  // the run ends or a nested run may need it.
  uint64_t executed = executed_io;

  uint64_t reg[BH_NUM_REGS] = {};
  std::memcpy(&reg[1], start.args, sizeof start.args);
  reg[BH_REG_FP] = start.frame_top;
  // Checked mode: no host data reaches the program, so a read of a stack
  // slot it never wrote gives 0 (each callee frame is cleared at its call).
  if constexpr (Checked)
    std::memset(reinterpret_cast<void *>(uintptr_t(start.frame_top - BH_STACK_SIZE)), 0, BH_STACK_SIZE);
  Frame frames[BH_MAX_CALL_DEPTH];
  const int depth0 = start.depth0;
  int depth = depth0;  // frames in use below the entry one (local calls and enclosing callbacks)
  size_t pc = start.pc;

// Memory operands are checked before the access in checked mode only.
#define BH_ACCESS(ADDR, SIZE, IS_STORE)                                                                            \
  do {                                                                                                             \
    if constexpr (Checked) {                                                                                       \
      const uint64_t a_ = (ADDR);                                                                                  \
      const bool in_stack_ = a_ >= reg[BH_REG_FP] - BH_STACK_SIZE && a_ + (SIZE) <= stack_top && a_ + (SIZE) > a_; \
      if (!in_stack_ &&                                                                                            \
          !bh::access_ok(vm, uintptr_t(a_), (SIZE), (IS_STORE), uintptr_t(reg[BH_REG_FP] - BH_STACK_SIZE),         \
                         uintptr_t(stack_top), uintptr_t(ctx), ctx_len))                                           \
        return out_of_bounds(fault, cur, a_, (SIZE), (IS_STORE));                                                  \
    }                                                                                                              \
  } while (0)

// ALU: `s` is the source operand, `d` the destination register.
#define BH_ALU64(OP, EXPR)             \
  case BH_CLS_ALU64 | OP | BH_SRC_K: { \
    const uint64_t s = imm;            \
    EXPR;                              \
    break;                             \
  }                                    \
  case BH_CLS_ALU64 | OP | BH_SRC_X: { \
    const uint64_t s = src;            \
    EXPR;                              \
    break;                             \
  }
#define BH_ALU32(OP, EXPR)            \
  case BH_CLS_ALU | OP | BH_SRC_K: {  \
    const uint32_t s = uint32_t(imm); \
    const uint32_t d32 = uint32_t(d); \
    d = uint32_t(EXPR);               \
    break;                            \
  }                                   \
  case BH_CLS_ALU | OP | BH_SRC_X: {  \
    const uint32_t s = uint32_t(src); \
    const uint32_t d32 = uint32_t(d); \
    d = uint32_t(EXPR);               \
    break;                            \
  }
// Conditional jumps: `a` is dst, `b` the operand, both of the class's width.
#define BH_JMP(CLS, T, OP, COND)              \
  case CLS | OP | BH_SRC_K: {                 \
    const T a = T(d), b = T(imm);             \
    if (COND) pc += size_t(int64_t(ins.off)); \
    break;                                    \
  }                                           \
  case CLS | OP | BH_SRC_X: {                 \
    const T a = T(d), b = T(src);             \
    if (COND) pc += size_t(int64_t(ins.off)); \
    break;                                    \
  }
#define BH_JMP_BOTH(OP, COND)            \
  BH_JMP(BH_CLS_JMP, uint64_t, OP, COND) \
  BH_JMP(BH_CLS_JMP32, uint32_t, OP, COND)

  // Every way out of the loop is a return: hand the count back then.
  struct WriteBack {
    uint64_t &from;
    uint64_t &to;
    ~WriteBack() { to = from; }
  } write_back{executed, executed_io};

  for (;;) {
    if constexpr (Budget) {
      if (++executed > budget) {
        return report(fault, BH_FAULT_BUDGET, pc, 0, 0, "pc %zu: instruction budget of %" PRIu64 " exhausted", pc,
                      budget);
      }
    }
    const bh_inst ins = code[pc];
    const size_t cur = pc++;
    uint64_t &d = reg[ins.dst];
    const uint64_t src = reg[ins.src];
    const uint64_t imm = uint64_t(int64_t(ins.imm));  // sign-extended, as the ISA reads it

    switch (ins.opcode) {
      BH_ALU64(BH_ALU_ADD, d += s)
      BH_ALU64(BH_ALU_SUB, d -= s)
      BH_ALU64(BH_ALU_MUL, d *= s)
      BH_ALU64(BH_ALU_DIV, d = div_op<uint64_t>(d, s, ins.off == 1))
      BH_ALU64(BH_ALU_MOD, d = mod_op<uint64_t>(d, s, ins.off == 1))
      BH_ALU64(BH_ALU_OR, d |= s)
      BH_ALU64(BH_ALU_AND, d &= s)
      BH_ALU64(BH_ALU_XOR, d ^= s)
      BH_ALU64(BH_ALU_LSH, d <<= (s & 63))
      BH_ALU64(BH_ALU_RSH, d >>= (s & 63))
      BH_ALU64(BH_ALU_ARSH, d = uint64_t(int64_t(d) >> (s & 63)))

      case BH_CLS_ALU64 | BH_ALU_NEG: d = uint64_t(0) - d; break;
      case BH_CLS_ALU64 | BH_ALU_MOV | BH_SRC_K: d = imm; break;
      case BH_CLS_ALU64 | BH_ALU_MOV | BH_SRC_X:
        switch (ins.off) {
          case 8: d = uint64_t(int64_t(int8_t(src))); break;
          case 16: d = uint64_t(int64_t(int16_t(src))); break;
          case 32: d = uint64_t(int64_t(int32_t(src))); break;
          default: d = src; break;
        }
        break;

        BH_ALU32(BH_ALU_ADD, d32 + s)
        BH_ALU32(BH_ALU_SUB, d32 - s)
        BH_ALU32(BH_ALU_MUL, d32 * s)
        BH_ALU32(BH_ALU_DIV, div_op<uint32_t>(d32, s, ins.off == 1))
        BH_ALU32(BH_ALU_MOD, mod_op<uint32_t>(d32, s, ins.off == 1))
        BH_ALU32(BH_ALU_OR, d32 | s)
        BH_ALU32(BH_ALU_AND, d32 & s)
        BH_ALU32(BH_ALU_XOR, d32 ^ s)
        BH_ALU32(BH_ALU_LSH, d32 << (s & 31))
        BH_ALU32(BH_ALU_RSH, d32 >> (s & 31))
        BH_ALU32(BH_ALU_ARSH, int32_t(d32) >> (s & 31))

      case BH_CLS_ALU | BH_ALU_NEG: d = uint32_t(0u - uint32_t(d)); break;
      case BH_CLS_ALU | BH_ALU_MOV | BH_SRC_K: d = uint32_t(ins.imm); break;
      case BH_CLS_ALU | BH_ALU_MOV | BH_SRC_X:
        switch (ins.off) {
          case 8: d = uint32_t(int32_t(int8_t(src))); break;
          case 16: d = uint32_t(int32_t(int16_t(src))); break;
          default: d = uint32_t(src); break;
        }
        break;

      // Byte order: to-little-endian only truncates on this host.
      case BH_CLS_ALU | BH_ALU_END | BH_SRC_K:
        if (ins.imm == 16)
          d = uint16_t(d);
        else if (ins.imm == 32)
          d = uint32_t(d);
        break;
      case BH_CLS_ALU | BH_ALU_END | BH_SRC_X:
      case BH_CLS_ALU64 | BH_ALU_END | BH_SRC_K:
        if (ins.imm == 16)
          d = __builtin_bswap16(uint16_t(d));
        else if (ins.imm == 32)
          d = __builtin_bswap32(uint32_t(d));
        else
          d = __builtin_bswap64(d);
        break;

      case BH_OP_LDDW:
        d = uint64_t(uint32_t(ins.imm)) | (uint64_t(uint32_t(code[pc].imm)) << 32);
        ++pc;
        break;

        // Loads: dst = *(src + off)
#define BH_LDX(SIZE_BITS, MODE, T, WIDEN)                   \
  case BH_CLS_LDX | MODE | SIZE_BITS: {                     \
    const uint64_t addr = src + uint64_t(int64_t(ins.off)); \
    BH_ACCESS(addr, uint32_t(sizeof(T)), false);            \
    d = WIDEN(load<T>(addr));                               \
    break;                                                  \
  }
#define BH_ZX(x) uint64_t(x)
#define BH_SX(x) uint64_t(int64_t(x))
        BH_LDX(BH_SIZE_B, BH_MODE_MEM, uint8_t, BH_ZX)
        BH_LDX(BH_SIZE_H, BH_MODE_MEM, uint16_t, BH_ZX)
        BH_LDX(BH_SIZE_W, BH_MODE_MEM, uint32_t, BH_ZX)
        BH_LDX(BH_SIZE_DW, BH_MODE_MEM, uint64_t, BH_ZX)
        BH_LDX(BH_SIZE_B, BH_MODE_MEMSX, int8_t, BH_SX)
        BH_LDX(BH_SIZE_H, BH_MODE_MEMSX, int16_t, BH_SX)
        BH_LDX(BH_SIZE_W, BH_MODE_MEMSX, int32_t, BH_SX)

        // Stores: *(dst + off) = imm (ST) or src (STX)
#define BH_STORE(CLS, SIZE_BITS, T, VALUE)                \
  case CLS | BH_MODE_MEM | SIZE_BITS: {                   \
    const uint64_t addr = d + uint64_t(int64_t(ins.off)); \
    BH_ACCESS(addr, uint32_t(sizeof(T)), true);           \
    store<T>(addr, T(VALUE));                             \
    break;                                                \
  }
        BH_STORE(BH_CLS_ST, BH_SIZE_B, uint8_t, imm)
        BH_STORE(BH_CLS_ST, BH_SIZE_H, uint16_t, imm)
        BH_STORE(BH_CLS_ST, BH_SIZE_W, uint32_t, imm)
        BH_STORE(BH_CLS_ST, BH_SIZE_DW, uint64_t, imm)
        BH_STORE(BH_CLS_STX, BH_SIZE_B, uint8_t, src)
        BH_STORE(BH_CLS_STX, BH_SIZE_H, uint16_t, src)
        BH_STORE(BH_CLS_STX, BH_SIZE_W, uint32_t, src)
        BH_STORE(BH_CLS_STX, BH_SIZE_DW, uint64_t, src)

      case BH_CLS_STX | BH_MODE_ATOMIC | BH_SIZE_W: {
        const uint64_t addr = d + uint64_t(int64_t(ins.off));
        BH_ACCESS(addr, 4u, true);
        atomic_op<uint32_t>(addr, ins.imm, reg[ins.src], reg[0]);
        break;
      }
      case BH_CLS_STX | BH_MODE_ATOMIC | BH_SIZE_DW: {
        const uint64_t addr = d + uint64_t(int64_t(ins.off));
        BH_ACCESS(addr, 8u, true);
        atomic_op<uint64_t>(addr, ins.imm, reg[ins.src], reg[0]);
        break;
      }

      case BH_CLS_JMP | BH_JMP_JA: pc += size_t(int64_t(ins.off)); break;
      case BH_CLS_JMP32 | BH_JMP_JA:
        pc += size_t(int64_t(ins.imm));
        break;
        BH_JMP_BOTH(BH_JMP_JEQ, a == b)
        BH_JMP_BOTH(BH_JMP_JNE, a != b)
        BH_JMP_BOTH(BH_JMP_JGT, a > b)
        BH_JMP_BOTH(BH_JMP_JGE, a >= b)
        BH_JMP_BOTH(BH_JMP_JLT, a < b)
        BH_JMP_BOTH(BH_JMP_JLE, a <= b)
        BH_JMP_BOTH(BH_JMP_JSET, (a & b) != 0)
        BH_JMP_BOTH(BH_JMP_JSGT, as_signed(a) > as_signed(b))
        BH_JMP_BOTH(BH_JMP_JSGE, as_signed(a) >= as_signed(b))
        BH_JMP_BOTH(BH_JMP_JSLT, as_signed(a) < as_signed(b))
        BH_JMP_BOTH(BH_JMP_JSLE, as_signed(a) <= as_signed(b))

      case BH_OP_CALL:
        if (ins.src == BH_CALL_LOCAL) {
          if (depth + 1 >= BH_MAX_CALL_DEPTH) {
            return report(fault, BH_FAULT_CALL_DEPTH, cur, 0, 0, "pc %zu: local calls nest deeper than %d frames", cur,
                          BH_MAX_CALL_DEPTH);
          }
          Frame &f = frames[depth++];
          std::memcpy(f.saved, &reg[6], sizeof f.saved);
          f.ret_pc = pc;
          reg[BH_REG_FP] -= BH_STACK_SIZE;
          if constexpr (Checked) {
            std::memset(reinterpret_cast<void *>(uintptr_t(reg[BH_REG_FP] - BH_STACK_SIZE)), 0, BH_STACK_SIZE);
          }
          pc += size_t(int64_t(ins.imm));
          break;
        }
        if constexpr (Checked) {
          if (!bh::check_helper_args(vm, uint32_t(ins.imm), &reg[1], uint32_t(cur),
                                     uintptr_t(reg[BH_REG_FP] - BH_STACK_SIZE), uintptr_t(stack_top), uintptr_t(ctx),
                                     ctx_len, fault)) {
            return -1;
          }
        }
        {
          const bh::Helper &h = helpers[uint32_t(ins.imm)];
          bool exited;
          if (__builtin_expect((h.flags & BH_HELPER_CALLS_BACK) != 0, 0)) {
            // A fault inside a callback is reported with the callback's pc.
            if (call_calls_back<Budget>(vm, h, reg, ctx, ctx_len, stack_top, depth, executed, fault, exited) != 0) {
              return -1;
            }
          } else {
            exited = call_helper(h, reg);
          }
          if (exited) {
            if (r0_out != nullptr) *r0_out = reg[0];
            succeed(fault, BH_FAULT_HELPER_EXIT, cur);
            return 0;
          }
        }
        break;

      case BH_OP_CALLX: {
        // The register's value is a helper id, known only now.
        const uint64_t id = d;
        if (id >= n_helpers || helpers[id].fn == nullptr) {
          return report(fault, BH_FAULT_BAD_HELPER, cur, id, 0, "pc %zu: callx to unregistered helper %" PRIu64, cur,
                        id);
        }
        if constexpr (Checked) {
          if (!bh::check_helper_args(vm, uint32_t(id), &reg[1], uint32_t(cur),
                                     uintptr_t(reg[BH_REG_FP] - BH_STACK_SIZE), uintptr_t(stack_top), uintptr_t(ctx),
                                     ctx_len, fault)) {
            return -1;
          }
        }
        bool exited;
        if (__builtin_expect((helpers[id].flags & BH_HELPER_CALLS_BACK) != 0, 0)) {
          if (call_calls_back<Budget>(vm, helpers[id], reg, ctx, ctx_len, stack_top, depth, executed, fault, exited) !=
              0) {
            return -1;
          }
        } else {
          exited = call_helper(helpers[id], reg);
        }
        if (exited) {
          if (r0_out != nullptr) *r0_out = reg[0];
          succeed(fault, BH_FAULT_HELPER_EXIT, cur);
          return 0;
        }
        break;
      }

      case BH_OP_EXIT:
        if (depth == depth0) {
          if (r0_out != nullptr) *r0_out = reg[0];
          succeed(fault, BH_FAULT_NONE, cur);
          return 0;
        }
        {
          const Frame &f = frames[--depth];
          std::memcpy(&reg[6], f.saved, sizeof f.saved);
          pc = f.ret_pc;
        }
        break;

      default:
        // Unreachable for a validated program; fail rather than run garbage.
        return report(fault, BH_FAULT_NONE, cur, 0, 0, "pc %zu: unexpected opcode 0x%02x", cur, ins.opcode);
    }
  }
#undef BH_ACCESS
#undef BH_ALU64
#undef BH_ALU32
#undef BH_JMP
#undef BH_JMP_BOTH
#undef BH_LDX
#undef BH_ZX
#undef BH_SX
#undef BH_STORE
}

template <bool Checked, bool Budget>
int run_entry(const bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0_out, bh_fault *fault) {
  alignas(16) uint8_t stack[kStackBytes];
  const uint64_t stack_top = uint64_t(uintptr_t(stack + kStackBytes));
  const Start start{0, {uint64_t(uintptr_t(ctx)), uint64_t(ctx_len), 0, 0, 0}, stack_top, 0};
  uint64_t executed = 0;
  return run<Checked, Budget>(vm, ctx, ctx_len, stack_top, start, executed, r0_out, fault);
}

template <bool Budget>
int call_calls_back(const bh_vm *vm, const bh::Helper &h, uint64_t *reg, void *ctx, size_t ctx_len, uint64_t stack_top,
                    int depth, uint64_t &executed, bh_fault *fault, bool &exited) {
  bh::CallbackLink link;
  link.vm = vm;
  link.jit = false;
  link.active = true;
  link.frame_top = reg[BH_REG_FP];
  link.stack_top = stack_top;
  link.depth = depth;
  link.executed = executed;
  link.ctx = ctx;
  link.ctx_len = ctx_len;
  bh::CallbackLink *&current = bh::callback_link();
  link.prev = current;
  current = &link;
  exited = call_helper(h, reg);
  current = link.prev;
  if constexpr (Budget) executed = link.executed;
  if (link.pending == bh::kPendingFault) {
    if (fault != nullptr) *fault = link.fault;
    return -1;
  }
  if (link.pending == bh::kPendingExit) {
    reg[0] = link.exit_value;
    exited = true;
  }
  return 0;
}

}  // namespace

namespace bh {

int interp_callback(CallbackLink *link, const Callback &cb, const uint64_t *args, uint64_t *r0) {
  const bh_vm *vm = link->vm;
  // The callback's frame is one more, as a local call's.
  if (link->depth + 1 >= BH_MAX_CALL_DEPTH) {
    report(&link->fault, BH_FAULT_CALL_DEPTH, cb.pc, 0, 0, "pc %u: callback nests deeper than %d frames", cb.pc,
           BH_MAX_CALL_DEPTH);
    return -1;
  }
  Start start{cb.pc, {args[0], args[1], args[2], args[3], args[4]}, link->frame_top - BH_STACK_SIZE, link->depth + 1};
  bh_fault f{};
  int rc;
  if (vm->checked) {
    rc = vm->budget != 0
             ? run<true, true>(vm, link->ctx, link->ctx_len, link->stack_top, start, link->executed, r0, &f)
             : run<true, false>(vm, link->ctx, link->ctx_len, link->stack_top, start, link->executed, r0, &f);
  } else {
    rc = vm->budget != 0
             ? run<false, true>(vm, link->ctx, link->ctx_len, link->stack_top, start, link->executed, r0, &f)
             : run<false, false>(vm, link->ctx, link->ctx_len, link->stack_top, start, link->executed, r0, &f);
  }
  if (rc != 0) {
    link->fault = f;
    return -1;
  }
  return f.code == BH_FAULT_HELPER_EXIT ? 1 : 0;
}

}  // namespace bh

extern "C" int bh_vm_exec(const bh_vm *vm, void *ctx, size_t ctx_len, uint64_t *r0, bh_fault *fault) {
  if (vm == nullptr || !vm->loaded) return report(fault, BH_FAULT_NONE, 0, 0, 0, "no program loaded");
  if (vm->checked) {
    return vm->budget != 0 ? run_entry<true, true>(vm, ctx, ctx_len, r0, fault)
                           : run_entry<true, false>(vm, ctx, ctx_len, r0, fault);
  }
  return vm->budget != 0 ? run_entry<false, true>(vm, ctx, ctx_len, r0, fault)
                         : run_entry<false, false>(vm, ctx, ctx_len, r0, fault);
}
