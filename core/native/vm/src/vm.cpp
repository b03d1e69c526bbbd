// The VM's life: create, configure, load (copy, resolve lddw forms, validate),
// destroy; plus the small services every backend shares (the error channel,
// the thread-local exit request, the checked-mode access test).
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>

#include "bpfhook/errmsg.h"
#include "vm_internal.h"

namespace bh {

ExitRequest &exit_request() {
  thread_local ExitRequest req;
  return req;
}

bh_fault &jit_fault() {
  thread_local bh_fault fault{};
  return fault;
}

int fail(char *err, size_t err_len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bh_vfail(err, err_len, -1, fmt, ap);
  va_end(ap);
  return -1;
}

// Bounds are compared as [lo, hi) ranges with the end computed once, so an
// address near the top of the address space cannot wrap around into a match.
bool access_ok(const bh_vm *vm, uintptr_t addr, size_t size, bool is_store, uintptr_t stack_lo, uintptr_t stack_hi,
               uintptr_t ctx, size_t ctx_len) {
  const uintptr_t end = addr + size;
  if (end < addr) return false;
  if (addr >= stack_lo && end <= stack_hi) return true;
  if (ctx_len != 0 && addr >= ctx && end <= ctx + ctx_len) return true;
  for (const Region &r : vm->regions) {
    if (addr >= r.base && end <= r.base + r.len) {
      if (!is_store || r.writable) return true;
    }
  }
  // A callback's read-only window (an array map's key): only while a
  // callback runs, so the thread-local is read on this slow path alone.
  if (!is_store && !vm->callbacks.empty()) {
    const CallbackWindow &w = callback_window();
    if (w.len != 0 && addr >= w.base && end <= w.base + w.len) return true;
  }
  return false;
}

}  // namespace bh

namespace {

const char *lddw_form_name(uint8_t src) {
  switch (src) {
    case BH_PSEUDO_MAP_FD: return "map fd";
    case BH_PSEUDO_MAP_VALUE: return "map value";
    case BH_PSEUDO_BTF_ID: return "btf id";
    case BH_PSEUDO_FUNC: return "function";
    case BH_PSEUDO_MAP_IDX: return "map index";
    case BH_PSEUDO_MAP_IDX_VALUE: return "map index value";
    default: return "unknown";
  }
}

// Function references (lddw src 4) become callback objects of the VM: one
// per distinct target, created before any value is handed out so that their
// addresses never move. Targets are checked by the validator (func_refs).
int collect_callbacks(bh_vm *vm, char *err, size_t err_len) {
  std::vector<bh_inst> &code = vm->insts;
  const size_t n = code.size();
  std::vector<uint32_t> targets;
  for (size_t pc = 0; pc + 1 < n; ++pc) {
    const bh_inst &ins = code[pc];
    if (ins.opcode != BH_OP_LDDW) continue;
    if (ins.src == BH_PSEUDO_FUNC) {
      const int64_t target = int64_t(pc) + int64_t(ins.imm) + 1;
      if (target <= 0 || target >= int64_t(n)) {
        return bh::fail(err, err_len,
                        "pc %zu: lddw source 4 (function): callback at pc %" PRId64
                        " is %s (program has %zu instructions)",
                        pc, target, target == 0 ? "the entry function, which cannot be a callback" : "out of range", n);
      }
      vm->func_refs.emplace_back(uint32_t(pc), uint32_t(target));
      targets.push_back(uint32_t(target));
    }
    ++pc;
  }
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  vm->callbacks.resize(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    vm->callbacks[i].vm = vm;
    vm->callbacks[i].pc = targets[i];
  }
  return 0;
}

// Turns every special lddw (src 1..6) into a plain one holding the resolved
// value, so that validator, interpreter and JIT only ever see src 0.
int resolve_lddw(bh_vm *vm, char *err, size_t err_len) {
  if (collect_callbacks(vm, err, err_len) != 0) return -1;
  std::vector<bh_inst> &code = vm->insts;
  const size_t n = code.size();
  vm->map_lddw.assign(n, false);
  for (size_t pc = 0; pc < n; ++pc) {
    bh_inst &ins = code[pc];
    if (ins.opcode != BH_OP_LDDW) continue;
    // A truncated lddw is the validator's to report, with the same wording
    // whether or not it carries a special form.
    if (pc + 1 >= n) break;
    if (ins.src == BH_PSEUDO_FUNC) {
      const uint32_t target = uint32_t(int64_t(pc) + int64_t(ins.imm) + 1);
      const auto it = std::lower_bound(vm->callbacks.begin(), vm->callbacks.end(), target,
                                       [](const bh::Callback &c, uint32_t t) { return c.pc < t; });
      const uint64_t value = uint64_t(reinterpret_cast<uintptr_t>(&*it));
      ins.src = 0;
      ins.imm = int32_t(uint32_t(value));
      code[pc + 1].imm = int32_t(uint32_t(value >> 32));
    } else if (ins.src != 0) {
      if (ins.src > BH_PSEUDO_MAP_IDX_VALUE) {
        return bh::fail(err, err_len, "pc %zu: unsupported lddw source %u", pc, unsigned(ins.src));
      }
      if (vm->resolver == nullptr) {
        return bh::fail(err, err_len, "pc %zu: lddw source %u (%s) needs a resolver, none is set", pc,
                        unsigned(ins.src), lddw_form_name(ins.src));
      }
      char why[128] = "";
      uint64_t value = 0;
      if (vm->resolver(vm->resolver_cookie, uint32_t(pc), ins.src, ins.imm, code[pc + 1].imm, &value, why,
                       sizeof why) != 0) {
        return bh::fail(err, err_len, "pc %zu: lddw source %u (%s): %s", pc, unsigned(ins.src), lddw_form_name(ins.src),
                        why[0] != '\0' ? why : "resolver failed");
      }
      vm->map_lddw[pc] = ins.src == BH_PSEUDO_MAP_FD || ins.src == BH_PSEUDO_MAP_IDX;
      ins.src = 0;
      ins.imm = int32_t(uint32_t(value));
      code[pc + 1].imm = int32_t(uint32_t(value >> 32));
    }
    ++pc;  // skip the second slot
  }
  return 0;
}

}  // namespace

extern "C" {

bh_vm *bh_vm_create(void) { return new (std::nothrow) bh_vm(); }

void bh_vm_destroy(bh_vm *vm) {
  if (vm == nullptr) return;
  // The JIT maps its code with mmap and records the mapping's size; freeing
  // it here keeps destroy a single call whichever backends were used.
  if (vm->jit_code != nullptr && vm->jit_map_size != 0) munmap(vm->jit_code, vm->jit_map_size);
  delete vm;
}

int bh_vm_register_helper(bh_vm *vm, uint32_t id, const char *name, bh_helper_fn fn, uint32_t flags) {
  if (vm == nullptr || vm->loaded || fn == nullptr || id > bh::kMaxHelperId) return -1;
  try {
    if (vm->helpers.size() <= id) vm->helpers.resize(size_t(id) + 1);
    bh::Helper &h = vm->helpers[id];
    // A replacement is another function: the old prototype does not apply.
    h = bh::Helper{};
    h.fn = fn;
    h.flags = flags;
    h.name = name != nullptr ? name : "";
  } catch (const std::bad_alloc &) {
    return -1;
  }
  return 0;
}

int bh_vm_set_helper_proto(bh_vm *vm, uint32_t id, const struct bh_helper_proto *proto) {
  if (vm == nullptr || vm->loaded || proto == nullptr || id >= vm->helpers.size() || vm->helpers[id].fn == nullptr) {
    return -1;
  }
  // Older callers may pass a shorter struct: fields past their sz are zero.
  if (proto->sz < offsetof(bh_helper_proto, map_types)) return -1;
  bh_helper_proto p{};
  std::memcpy(&p, proto, proto->sz < sizeof p ? proto->sz : sizeof p);
  bh::Helper &h = vm->helpers[id];
  try {
    for (int i = 0; i < 5; ++i) {
      if (p.arg_type[i] > BH_ARG_PTR_TO_STACK_OR_NULL) return -1;
      h.arg_type[i] = p.arg_type[i];
      h.arg_name[i] = p.arg_name[i] != nullptr ? p.arg_name[i] : "";
    }
  } catch (const std::bad_alloc &) {
    return -1;
  }
  h.map_types = p.map_types;
  // Numbers and sizes need no test of their own (sizes are tested with
  // their pointer), so the check stops after the last argument that does.
  h.check_upto = 0;
  for (int i = 0; i < 5; ++i) {
    const uint8_t t = h.arg_type[i];
    if (t != BH_ARG_NONE && t != BH_ARG_ANYTHING && t != BH_ARG_CONST_SIZE && t != BH_ARG_CONST_SIZE_OR_ZERO) {
      h.check_upto = uint8_t(i + 1);
    }
  }
  h.has_proto = true;
  return 0;
}

int bh_vm_add_map(bh_vm *vm, const struct bh_vm_map *map) {
  if (vm == nullptr || vm->loaded || map == nullptr || map->sz < offsetof(bh_vm_map, storage) ||
      map->handle == nullptr) {
    return -1;
  }
  bh_vm_map m{};
  std::memcpy(&m, map, map->sz < sizeof m ? map->sz : sizeof m);
  try {
    vm->maps.push_back(bh::VmMap{reinterpret_cast<uintptr_t>(m.handle), m.type, m.key_size, m.value_size,
                                 reinterpret_cast<uintptr_t>(m.storage), m.storage_len});
  } catch (const std::bad_alloc &) {
    return -1;
  }
  return 0;
}

const char *bh_vm_helper_name(const bh_vm *vm, uint32_t id) {
  if (vm == nullptr || id >= vm->helpers.size() || vm->helpers[id].fn == nullptr) return nullptr;
  return vm->helpers[id].name.c_str();
}

// The setters below are ignored once loaded: a loaded VM is shared by threads
// without locks, and a compiled program has these settings baked in.
void bh_vm_set_lddw_resolver(bh_vm *vm, bh_lddw_resolver fn, void *cookie) {
  if (vm == nullptr || vm->loaded) return;
  vm->resolver = fn;
  vm->resolver_cookie = cookie;
}

void bh_vm_set_inline_lookup(bh_vm *vm, bh_vm_map_layout_fn fn, void *cookie) {
  if (vm == nullptr) return;
  std::lock_guard<std::mutex> lock(vm->jit_mutex);
  vm->inline_lookup = fn;
  vm->inline_lookup_cookie = cookie;
}

void bh_vm_set_checked(bh_vm *vm, int checked) {
  if (vm == nullptr || vm->loaded) return;
  vm->checked = checked != 0;
}

int bh_vm_add_region(bh_vm *vm, const void *base, size_t len, int writable) {
  if (vm == nullptr || vm->loaded || base == nullptr || len == 0) return -1;
  const uintptr_t b = reinterpret_cast<uintptr_t>(base);
  if (b + len < b) return -1;
  try {
    vm->regions.push_back(bh::Region{b, len, writable != 0});
  } catch (const std::bad_alloc &) {
    return -1;
  }
  return 0;
}

void bh_vm_set_budget(bh_vm *vm, uint64_t max_insts) {
  if (vm == nullptr || vm->loaded) return;
  vm->budget = max_insts;
}

int bh_vm_load(bh_vm *vm, const void *code, size_t len, char *err, size_t err_len) {
  if (err != nullptr && err_len > 0) err[0] = '\0';
  if (vm == nullptr) return bh::fail(err, err_len, "no vm");
  if (vm->loaded) return bh::fail(err, err_len, "a program is already loaded");
  if (code == nullptr || len == 0) return bh::fail(err, err_len, "empty program");
  if (len % sizeof(bh_inst) != 0) {
    return bh::fail(err, err_len, "program size %zu is not a multiple of %zu bytes", len, sizeof(bh_inst));
  }
  const size_t n = len / sizeof(bh_inst);
  if (n > BH_MAX_INSTS) {
    return bh::fail(err, err_len, "program has %zu instructions, more than the limit of %d", n, BH_MAX_INSTS);
  }
  try {
    vm->insts.resize(n);
    std::memcpy(vm->insts.data(), code, len);
    if (resolve_lddw(vm, err, err_len) != 0 || bh::validate(vm, err, err_len) != 0) {
      vm->insts.clear();
      vm->analysis = bh::Analysis{};
      vm->callbacks.clear();
      vm->func_refs.clear();
      return -1;
    }
  } catch (const std::bad_alloc &) {
    vm->insts.clear();
    vm->analysis = bh::Analysis{};
    vm->callbacks.clear();
    vm->func_refs.clear();
    return bh::fail(err, err_len, "out of memory");
  }
  vm->loaded = true;
  return 0;
}

const struct bh_inst *bh_vm_insts(const bh_vm *vm, size_t *n) {
  if (vm == nullptr || !vm->loaded) {
    if (n != nullptr) *n = 0;
    return nullptr;
  }
  if (n != nullptr) *n = vm->insts.size();
  return vm->insts.data();
}

void bh_vm_request_exit(uint64_t ret) {
  bh::ExitRequest &req = bh::exit_request();
  req.requested = true;
  req.ret = ret;
}

}  // extern "C"
