// Load-time validation: everything about a program that can be decided
// without running it, so that the interpreter and the JIT may trust opcodes,
// registers and control flow and only check memory (in checked mode).
//
// Passes: (1) mark lddw second slots, (2) check each instruction on its own
// and collect jump and call targets (and callback targets), (3) split the program into functions and
// check that control flow stays inside them, (4) bound the static call depth.
#include <algorithm>
#include <cinttypes>

#include "vm_internal.h"

namespace bh {
namespace {

constexpr uint8_t kMaxReg = BH_NUM_REGS - 1;

bool is_ja(const bh_inst &ins) {
  return ins.opcode == (BH_CLS_JMP | BH_JMP_JA) || ins.opcode == (BH_CLS_JMP32 | BH_JMP_JA);
}

bool ends_function(const bh_inst &ins) { return ins.opcode == BH_OP_EXIT || is_ja(ins); }

struct Validator {
  bh_vm *vm;
  char *err;
  size_t err_len;
  const std::vector<bh_inst> &code;
  size_t n;
  std::vector<uint8_t> second_slot;  // 1 where the slot is an lddw's upper half
  std::vector<uint8_t> is_target;
  std::vector<uint32_t> call_targets;

  Validator(bh_vm *v, char *e, size_t el)
      : vm(v), err(e), err_len(el), code(v->insts), n(v->insts.size()), second_slot(n), is_target(n) {}

  int unknown(size_t pc) { return fail(err, err_len, "pc %zu: unknown opcode 0x%02x", pc, code[pc].opcode); }

  int no_r10(size_t pc) {
    return fail(err, err_len, "pc %zu: cannot write to r10 (the frame pointer is read-only)", pc);
  }

  // A jump or call target: in the program and on the first slot of an
  // instruction. `what` is "jump" or "local call".
  int check_target(size_t pc, int64_t target, const char *what) {
    if (target < 0 || target >= int64_t(n)) {
      return fail(err, err_len, "pc %zu: %s to pc %" PRId64 " is out of range (program has %zu instructions)", pc, what,
                  target, n);
    }
    if (second_slot[size_t(target)]) {
      return fail(err, err_len, "pc %zu: %s to pc %" PRId64 " lands in the middle of the lddw at pc %" PRId64, pc, what,
                  target, target - 1);
    }
    is_target[size_t(target)] = 1;
    return 0;
  }

  int check_alu(size_t pc) {
    const bh_inst &ins = code[pc];
    const bool is64 = (ins.opcode & BH_CLS_MASK) == BH_CLS_ALU64;
    const bool reg = (ins.opcode & BH_SRC_X) != 0;
    const uint8_t op = ins.opcode & 0xf0;
    if (op > BH_ALU_END) return unknown(pc);
    if (op == BH_ALU_NEG && reg) return unknown(pc);          // neg has no register form
    if (op == BH_ALU_END && is64 && reg) return unknown(pc);  // ALU64 swaps are unconditional
    if (ins.dst == BH_REG_FP) return no_r10(pc);
    if ((!reg || op == BH_ALU_END) && ins.src != 0) {
      return fail(err, err_len, "pc %zu: invalid source register %u for an immediate operand (must be 0)", pc,
                  unsigned(ins.src));
    }
    switch (op) {
      case BH_ALU_END:
        if (ins.imm != 16 && ins.imm != 32 && ins.imm != 64) {
          return fail(err, err_len, "pc %zu: invalid byte swap width %d (must be 16, 32 or 64)", pc, int(ins.imm));
        }
        break;
      case BH_ALU_MOV:
        if (reg && (ins.off == 8 || ins.off == 16 || (is64 && ins.off == 32))) break;
        if (ins.off != 0) {
          return fail(err, err_len, "pc %zu: invalid sign-extension width %d for %s", pc, int(ins.off),
                      is64 ? "mov (must be 8, 16 or 32)" : "mov32 (must be 8 or 16)");
        }
        break;
      case BH_ALU_DIV:
      case BH_ALU_MOD:
        if (ins.off != 0 && ins.off != 1) {
          return fail(err, err_len, "pc %zu: invalid offset %d for %s (must be 0 or 1)", pc, int(ins.off),
                      op == BH_ALU_DIV ? "div" : "mod");
        }
        if (!reg && ins.imm == 0) {
          return fail(err, err_len, "pc %zu: %s by an immediate zero", pc, op == BH_ALU_DIV ? "division" : "modulo");
        }
        break;
      default:
        if (ins.off != 0)
          return fail(err, err_len, "pc %zu: invalid offset %d for an alu op (must be 0)", pc, int(ins.off));
        break;
    }
    return 0;
  }

  int check_ld(size_t pc) {
    const bh_inst &ins = code[pc];
    const uint8_t mode = ins.opcode & 0xe0;
    if (mode == BH_MODE_ABS || mode == BH_MODE_IND) {
      return fail(err, err_len, "pc %zu: legacy packet access (ABS/IND, opcode 0x%02x) is not supported", pc,
                  ins.opcode);
    }
    if (ins.opcode != BH_OP_LDDW) return unknown(pc);
    if (pc + 1 >= n) return fail(err, err_len, "pc %zu: incomplete lddw (the second slot is missing)", pc);
    if (ins.dst == BH_REG_FP) return no_r10(pc);
    if (ins.src != 0) return fail(err, err_len, "pc %zu: unsupported lddw source %u", pc, unsigned(ins.src));
    if (ins.off != 0) return fail(err, err_len, "pc %zu: invalid offset %d for lddw (must be 0)", pc, int(ins.off));
    const bh_inst &hi = code[pc + 1];
    if (hi.opcode != 0 || hi.dst != 0 || hi.src != 0 || hi.off != 0) {
      return fail(err, err_len, "pc %zu: invalid second slot of the lddw at pc %zu (only imm may be set)", pc + 1, pc);
    }
    return 0;
  }

  int check_mem(size_t pc) {
    const bh_inst &ins = code[pc];
    const uint8_t cls = ins.opcode & BH_CLS_MASK;
    const uint8_t mode = ins.opcode & 0xe0;
    const uint8_t size = ins.opcode & 0x18;
    switch (cls) {
      case BH_CLS_LDX:
        if (mode != BH_MODE_MEM && !(mode == BH_MODE_MEMSX && size != BH_SIZE_DW)) return unknown(pc);
        if (ins.dst == BH_REG_FP) return no_r10(pc);
        return 0;
      case BH_CLS_ST:
        if (mode != BH_MODE_MEM) return unknown(pc);
        if (ins.src != 0) {
          return fail(err, err_len, "pc %zu: invalid source register %u for a store of an immediate (must be 0)", pc,
                      unsigned(ins.src));
        }
        return 0;
      default:  // STX
        if (mode == BH_MODE_MEM) return 0;
        if (mode != BH_MODE_ATOMIC || (size != BH_SIZE_W && size != BH_SIZE_DW)) return unknown(pc);
        switch (ins.imm) {
          case BH_ATOMIC_ADD:
          case BH_ATOMIC_OR:
          case BH_ATOMIC_AND:
          case BH_ATOMIC_XOR: return 0;
          case BH_ATOMIC_ADD | BH_ATOMIC_FETCH:
          case BH_ATOMIC_OR | BH_ATOMIC_FETCH:
          case BH_ATOMIC_AND | BH_ATOMIC_FETCH:
          case BH_ATOMIC_XOR | BH_ATOMIC_FETCH:
          case BH_ATOMIC_XCHG:
            // These load the old value into src.
            if (ins.src == BH_REG_FP) return no_r10(pc);
            return 0;
          case BH_ATOMIC_CMPXCHG:  // loads the old value into r0
            return 0;
          default: return fail(err, err_len, "pc %zu: unknown atomic operation 0x%02x", pc, unsigned(ins.imm));
        }
    }
  }

  int check_jmp(size_t pc) {
    const bh_inst &ins = code[pc];
    const bool is32 = (ins.opcode & BH_CLS_MASK) == BH_CLS_JMP32;
    const bool reg = (ins.opcode & BH_SRC_X) != 0;
    const uint8_t op = ins.opcode & 0xf0;
    if (op > BH_JMP_JSLE) return unknown(pc);
    switch (op) {
      case BH_JMP_JA:
        if (reg) return unknown(pc);
        if (ins.dst != 0 || ins.src != 0) return fail(err, err_len, "pc %zu: ja must have registers 0", pc);
        // gotol (JMP32|JA) keeps its offset in imm: it may reach farther.
        return check_target(pc, int64_t(pc) + (is32 ? int64_t(ins.imm) : int64_t(ins.off)) + 1, "jump");
      case BH_JMP_EXIT:
        if (is32 || reg) return unknown(pc);
        if (ins.dst != 0 || ins.src != 0) return fail(err, err_len, "pc %zu: exit must have registers 0", pc);
        return 0;
      case BH_JMP_CALL:
        if (is32) return unknown(pc);
        if (reg) return 0;  // callx: the register (dst) holds a helper id, checked at run time
        if (ins.dst != 0) {
          return fail(err, err_len, "pc %zu: invalid destination register %u for call (must be 0)", pc,
                      unsigned(ins.dst));
        }
        switch (ins.src) {
          case BH_CALL_HELPER: {
            const uint32_t id = uint32_t(ins.imm);
            if (id >= vm->helpers.size() || vm->helpers[id].fn == nullptr) {
              return fail(err, err_len, "pc %zu: call to unregistered helper %d", pc, int(ins.imm));
            }
            // Checked mode tests arguments against the helper's prototype;
            // without one (and without a promise of plain-number arguments)
            // it could not, so the program is refused rather than run blind.
            const Helper &h = vm->helpers[id];
            if (vm->checked && !h.has_proto && (h.flags & BH_HELPER_ARGS_SCALAR) == 0) {
              return fail(err, err_len,
                          "pc %zu: helper %u '%s' has no argument prototype, so checked mode cannot call it", pc, id,
                          h.name.c_str());
            }
            return 0;
          }
          case BH_CALL_LOCAL: {
            const int64_t target = int64_t(pc) + int64_t(ins.imm) + 1;
            if (check_target(pc, target, "local call") != 0) return -1;
            call_targets.push_back(uint32_t(target));
            return 0;
          }
          case BH_CALL_KFUNC: return fail(err, err_len, "pc %zu: kfunc calls are not supported", pc);
          default: return fail(err, err_len, "pc %zu: invalid call source %u", pc, unsigned(ins.src));
        }
      default:  // conditional jumps
        if (!reg && ins.src != 0) {
          return fail(err, err_len, "pc %zu: invalid source register %u for an immediate comparison (must be 0)", pc,
                      unsigned(ins.src));
        }
        return check_target(pc, int64_t(pc) + int64_t(ins.off) + 1, "jump");
    }
  }

  int check_insts() {
    for (size_t pc = 0; pc < n; ++pc) {
      if (code[pc].opcode == BH_OP_LDDW && pc + 1 < n) second_slot[++pc] = 1;
    }
    for (size_t pc = 0; pc < n; ++pc) {
      if (second_slot[pc]) continue;  // checked with its first slot
      const bh_inst &ins = code[pc];
      if (ins.dst > kMaxReg)
        return fail(err, err_len, "pc %zu: invalid destination register %u", pc, unsigned(ins.dst));
      if (ins.src > kMaxReg) return fail(err, err_len, "pc %zu: invalid source register %u", pc, unsigned(ins.src));
      int rc = 0;
      switch (ins.opcode & BH_CLS_MASK) {
        case BH_CLS_ALU:
        case BH_CLS_ALU64: rc = check_alu(pc); break;
        case BH_CLS_LD: rc = check_ld(pc); break;
        case BH_CLS_LDX:
        case BH_CLS_ST:
        case BH_CLS_STX: rc = check_mem(pc); break;
        default: rc = check_jmp(pc); break;
      }
      if (rc != 0) return rc;
    }
    const size_t last = second_slot[n - 1] ? n - 2 : n - 1;
    if (!ends_function(code[last])) {
      return fail(err, err_len, "pc %zu: the program falls off its end (the last instruction must be exit or ja)",
                  last);
    }
    return 0;
  }

  // Functions are the ranges between consecutive entries; a jump may not leave
  // its function and a function may not run into the next one, so every
  // backend can treat functions as closed units.
  int check_functions(std::vector<uint32_t> &functions, std::vector<uint32_t> &func_of) {
    functions.push_back(0);
    functions.insert(functions.end(), call_targets.begin(), call_targets.end());
    std::sort(functions.begin(), functions.end());
    functions.erase(std::unique(functions.begin(), functions.end()), functions.end());

    func_of.assign(n, 0);
    for (size_t f = 0; f < functions.size(); ++f) {
      const size_t end = f + 1 < functions.size() ? functions[f + 1] : n;
      for (size_t pc = functions[f]; pc < end; ++pc) func_of[pc] = uint32_t(f);
      if (f > 0) {
        const size_t prev = second_slot[functions[f] - 1] ? functions[f] - 2 : functions[f] - 1;
        if (!ends_function(code[prev])) {
          return fail(err, err_len, "pc %zu: falls through into the function at pc %u (must end with exit or ja)", prev,
                      functions[f]);
        }
      }
    }
    for (size_t pc = 0; pc < n; ++pc) {
      const bh_inst &ins = code[pc];
      const uint8_t cls = ins.opcode & BH_CLS_MASK;
      if (second_slot[pc] || (cls != BH_CLS_JMP && cls != BH_CLS_JMP32)) continue;
      const uint8_t op = ins.opcode & 0xf0;
      if (op == BH_JMP_CALL || op == BH_JMP_EXIT) continue;
      const int64_t target =
          int64_t(pc) + (cls == BH_CLS_JMP32 && op == BH_JMP_JA ? int64_t(ins.imm) : int64_t(ins.off)) + 1;
      if (func_of[size_t(target)] != func_of[pc]) {
        return fail(err, err_len, "pc %zu: jump to pc %" PRId64 " leaves the function that starts at pc %u", pc, target,
                    functions[func_of[pc]]);
      }
    }
    return 0;
  }

  // Longest chain of frames from the entry function over the static call
  // graph. Recursion has no static bound and is left to the run-time check
  // (BH_FAULT_CALL_DEPTH); back edges count as nothing here.
  int check_call_depth(const std::vector<uint32_t> &functions, const std::vector<uint32_t> &func_of) {
    const size_t nf = functions.size();
    if (nf == 1) return 0;
    struct Edge {
      uint32_t callee;
      uint32_t pc;
    };
    std::vector<std::vector<Edge>> callees(nf);
    for (size_t pc = 0; pc < n; ++pc) {
      const bh_inst &ins = code[pc];
      if (!second_slot[pc] && ins.opcode == BH_OP_CALL && ins.src == BH_CALL_LOCAL) {
        const size_t target = size_t(int64_t(pc) + ins.imm + 1);
        callees[func_of[pc]].push_back(Edge{func_of[target], uint32_t(pc)});
      }
    }
    // Iterative post-order DFS (a long chain of functions must not exhaust
    // the host's stack). depth[f] = frames needed by f and its deepest callee;
    // via[f] = the call edge on that deepest chain.
    enum : uint8_t { kNew, kOpen, kDone };
    std::vector<uint8_t> state(nf, kNew);
    std::vector<uint32_t> depth(nf, 1);
    std::vector<int64_t> via(nf, -1);
    struct Item {
      uint32_t f;
      size_t next;
    };
    std::vector<Item> stack{{0, 0}};
    state[0] = kOpen;
    while (!stack.empty()) {
      Item &top = stack.back();
      if (top.next < callees[top.f].size()) {
        const size_t edge = top.next++;
        const uint32_t g = callees[top.f][edge].callee;
        if (state[g] == kNew) {
          state[g] = kOpen;
          stack.push_back(Item{g, 0});
        }
        continue;
      }
      const uint32_t f = top.f;
      for (size_t e = 0; e < callees[f].size(); ++e) {
        const uint32_t g = callees[f][e].callee;
        if (state[g] == kDone && depth[g] + 1 > depth[f]) {
          depth[f] = depth[g] + 1;
          via[f] = int64_t(e);
        }
      }
      state[f] = kDone;
      stack.pop_back();
    }
    if (depth[0] <= BH_MAX_CALL_DEPTH) return 0;
    // Walk the deepest chain to the call that opens one frame too many.
    uint32_t f = 0;
    for (int frames = 1; frames < BH_MAX_CALL_DEPTH; ++frames) f = callees[f][size_t(via[f])].callee;
    return fail(err, err_len, "pc %u: local calls nest %u frames deep, more than the limit of %d",
                callees[f][size_t(via[f])].pc, depth[0], BH_MAX_CALL_DEPTH);
  }
};

}  // namespace

int validate(bh_vm *vm, char *err, size_t err_len) {
  if (vm->insts.empty()) return fail(err, err_len, "empty program");
  Validator v(vm, err, err_len);
  if (v.check_insts() != 0) return -1;
  // Callback targets (lddw src 4, collected at resolution) are function
  // entries like local-call targets: control flow may not run into them,
  // and no jump may leave them.
  for (const auto &ref : vm->func_refs) {
    if (v.check_target(ref.first, ref.second, "callback") != 0) return -1;
    v.call_targets.push_back(ref.second);
  }
  std::vector<uint32_t> functions, func_of;
  if (v.check_functions(functions, func_of) != 0) return -1;
  if (v.check_call_depth(functions, func_of) != 0) return -1;
  vm->analysis.functions = std::move(functions);
  vm->analysis.is_target = std::move(v.is_target);
  return 0;
}

}  // namespace bh
