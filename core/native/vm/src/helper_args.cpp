// Checked mode's helper-argument checks: each argument of a helper call is
// tested against the helper's prototype (bpfhook/vm.h, bh_helper_proto)
// before the helper runs, by the interpreter and by the JIT's checked path
// alike. Helpers trust their pointers (as the kernel's trust the verifier),
// so this is what keeps a bad pointer in a program from crashing the host.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "vm_internal.h"

namespace bh {
namespace {

// Bytes accessible from `addr` on inside the one area that holds it: the
// stack [stack_lo, stack_hi), the context, or a registered region (writable
// ones only for writes). 0 if none holds it. Areas are [lo, hi) ranges, so an
// address near the top of the address space cannot wrap into a match.
size_t accessible(const bh_vm *vm, uintptr_t addr, bool write, uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t ctx,
                  size_t ctx_len) {
  size_t best = 0;
  auto consider = [&](uintptr_t lo, uintptr_t hi) {
    if (addr >= lo && addr < hi && hi - addr > best) best = hi - addr;
  };
  consider(stack_lo, stack_hi);
  if (ctx_len != 0) consider(ctx, ctx + ctx_len);
  for (const Region &r : vm->regions) {
    if (!write || r.writable) consider(r.base, r.base + r.len);
  }
  // A callback's read-only window (an array map's key passed on to
  // bpf_map_lookup_elem inside bpf_for_each_map_elem's callback).
  if (!write && !vm->callbacks.empty()) {
    const CallbackWindow &w = callback_window();
    if (w.len != 0) consider(w.base, w.base + w.len);
  }
  return best;
}

const VmMap *find_map(const bh_vm *vm, uint64_t handle) {
  for (const VmMap &m : vm->maps) {
    if (m.handle == uintptr_t(handle)) return &m;
  }
  return nullptr;
}

const char *map_type_name(uint32_t t) {
  switch (t) {
    case 1: return "hash";
    case 2: return "array";
    case 3: return "prog_array";
    case 4: return "perf_event_array";
    case 5: return "percpu_hash";
    case 6: return "percpu_array";
    case 7: return "stack_trace";
    case 9: return "lru_hash";
    case 11: return "lpm_trie";
    case 22: return "queue";
    case 23: return "stack";
    case 27: return "ringbuf";
    case 30: return "bloom_filter";
    default: return "unknown";
  }
}

class ArgFault {
 public:
  ArgFault(const Helper &h, uint32_t pc, bh_fault *f) : h_(h), pc_(pc), f_(f) {}

  // "pc 3: bpf_map_lookup_elem: arg 2 (key): <what>"; returns false.
  __attribute__((format(printf, 5, 6))) bool operator()(int arg, uint64_t value, uint64_t size, const char *fmt, ...) {
    if (f_ == nullptr) return false;
    f_->code = BH_FAULT_HELPER_ARG;
    f_->pc = pc_;
    f_->addr = value;
    f_->size = size > UINT32_MAX ? UINT32_MAX : uint32_t(size);
    const std::string &name = h_.arg_name[arg];
    int n = snprintf(f_->message, sizeof f_->message, "pc %u: %s: arg %d (%s): ", pc_, h_.name.c_str(), arg + 1,
                     name.empty() ? "arg" : name.c_str());
    if (n < 0 || size_t(n) >= sizeof f_->message) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f_->message + n, sizeof f_->message - size_t(n), fmt, ap);
    va_end(ap);
    return false;
  }

 private:
  const Helper &h_;
  uint32_t pc_;
  bh_fault *f_;
};

}  // namespace

bool check_helper_args(const bh_vm *vm, uint32_t id, const uint64_t *args, uint32_t pc, uintptr_t stack_lo,
                       uintptr_t stack_hi, uintptr_t ctx, size_t ctx_len, bh_fault *fault) {
  if (id >= vm->helpers.size() || vm->helpers[id].fn == nullptr) return true;
  const Helper &h = vm->helpers[id];
  ArgFault bad(h, pc, fault);
  if (!h.has_proto) {
    if (h.flags & BH_HELPER_ARGS_SCALAR) return true;
    // Reached by callx only: a static call was refused at load.
    if (fault != nullptr) {
      fault->code = BH_FAULT_HELPER_ARG;
      fault->pc = pc;
      fault->addr = id;
      fault->size = 0;
      snprintf(fault->message, sizeof fault->message,
               "pc %u: %s: helper %u has no argument prototype, so checked mode cannot call it", pc, h.name.c_str(),
               id);
    }
    return false;
  }
  // Memory of `size` bytes at `p`, readable or writable.
  auto mem = [&](int arg, uint64_t p, uint64_t size, bool write) {
    if (size == 0) return true;  // nothing is touched
    if (size <= accessible(vm, uintptr_t(p), write, stack_lo, stack_hi, ctx, ctx_len)) return true;
    return bad(arg, p, size, "%" PRIu64 " bytes at 0x%" PRIx64 " outside %sstack, context and regions", size, p,
               write ? "writable " : "");
  };
  const VmMap *map = nullptr;  // the call's first map argument
  for (int i = 0; i < h.check_upto; ++i) {
    const uint64_t v = args[i];
    switch (h.arg_type[i]) {
      case BH_ARG_CONST_MAP_PTR: {
        const VmMap *m = find_map(vm, v);
        if (m == nullptr) return bad(i, v, 0, "0x%" PRIx64 " is not a map of this program", v);
        if (m->type >= 64 || (h.map_types & (uint64_t(1) << m->type)) == 0) {
          return bad(i, v, 0, "a %s map (type %u) is not accepted here", map_type_name(m->type), m->type);
        }
        if (map == nullptr) map = m;
        break;
      }
      case BH_ARG_PTR_TO_MEM:
      case BH_ARG_PTR_TO_MEM_OR_NULL:
      case BH_ARG_PTR_TO_UNINIT_MEM: {
        if (h.arg_type[i] == BH_ARG_PTR_TO_MEM_OR_NULL && v == 0) break;
        // The size is the next argument (the kernel's convention); a
        // prototype without one checks a single byte.
        uint64_t size = 1;
        if (i + 1 < 5 && (h.arg_type[i + 1] == BH_ARG_CONST_SIZE || h.arg_type[i + 1] == BH_ARG_CONST_SIZE_OR_ZERO)) {
          size = args[i + 1];
          if (size == 0 && h.arg_type[i + 1] == BH_ARG_CONST_SIZE) {
            return bad(i + 1, size, 0, "size 0, where the helper needs at least 1 byte");
          }
        }
        if (!mem(i, v, size, h.arg_type[i] == BH_ARG_PTR_TO_UNINIT_MEM)) return false;
        break;
      }
      case BH_ARG_PTR_TO_LONG:
        if (!mem(i, v, 8, true)) return false;
        break;
      case BH_ARG_PTR_TO_MAP_KEY:
      case BH_ARG_PTR_TO_MAP_VALUE:
      case BH_ARG_PTR_TO_UNINIT_MAP_VALUE: {
        if (map == nullptr) return bad(i, v, 0, "no map argument precedes it (bad prototype)");
        const uint32_t size = h.arg_type[i] == BH_ARG_PTR_TO_MAP_KEY ? map->key_size : map->value_size;
        if (!mem(i, v, size, h.arg_type[i] == BH_ARG_PTR_TO_UNINIT_MAP_VALUE)) return false;
        break;
      }
      case BH_ARG_PTR_TO_CTX:
        if (uintptr_t(v) != ctx) return bad(i, v, 0, "0x%" PRIx64 " is not the program's context", v);
        break;
      case BH_ARG_PTR_TO_CONST_STR: {
        const size_t avail = accessible(vm, uintptr_t(v), false, stack_lo, stack_hi, ctx, ctx_len);
        if (avail == 0 || memchr(reinterpret_cast<const void *>(uintptr_t(v)), 0, avail) == nullptr) {
          return bad(i, v, 0, "no NUL-terminated string at 0x%" PRIx64 " inside stack, context and regions", v);
        }
        break;
      }
      case BH_ARG_PTR_TO_RINGBUF_MEM: {
        // The helper writes the record's 8-byte header just below it.
        bool ok = false;
        for (const VmMap &m : vm->maps) {
          if (m.type != 27 || m.storage == 0) continue;
          if (v >= m.storage + 8 && v <= m.storage + m.storage_len) ok = true;
        }
        if (!ok) return bad(i, v, 0, "0x%" PRIx64 " is not a record of a ring buffer of this program", v);
        break;
      }
      case BH_ARG_PTR_TO_FUNC:
        if (find_callback(vm, v) == nullptr) {
          return bad(i, v, 0, "0x%" PRIx64 " is not a callback of this program (lddw of a function)", v);
        }
        break;
      case BH_ARG_PTR_TO_STACK_OR_NULL:
        if (v != 0 && (v < stack_lo || v >= stack_hi)) {
          return bad(i, v, 0, "0x%" PRIx64 " is neither 0 nor in the current or a caller's stack frame", v);
        }
        break;
      default:  // NONE, ANYTHING, and the sizes (checked with their pointer)
        break;
    }
  }
  return true;
}

}  // namespace bh
