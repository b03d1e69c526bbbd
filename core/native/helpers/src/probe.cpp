// The attach-point helpers and the thread-local probe context they read.
//
// The hook engine (the uprobe plugin, syscall-trace, ...) owns everything
// about the probed function; these helpers only ask it through the
// bh_probe_ctx it installed for the current thread. That keeps the helpers
// independent of any hook engine, as the reference's thread-local
// override-return callback does, and keeps a probe hit cheap: enter/leave are
// a handful of stores to one initial-exec thread-local block.

#include <errno.h>
#include <link.h>
#include <string.h>

#include <cstddef>

#include "internal.h"

namespace bh::helpers {
namespace {

// struct pt_regs, x86-64 kernel layout: slot indices (8 bytes each).
enum : unsigned { kBp = 4, kAx = 10, kCx = 11, kDx = 12, kSi = 13, kDi = 14, kIp = 16, kSp = 19 };
// The SysV argument registers, in order.
constexpr unsigned kArgSlots[6] = {kDi, kSi, kDx, kCx, 9 /* r8 */, 8 /* r9 */};
constexpr uint32_t kMaxFuncArgs = 12;  // MAX_BPF_FUNC_ARGS

// An older plugin may hand a shorter ops struct: a member exists only if the
// struct's declared size covers it.
#define BH_OPS_HAS(ops, member) \
  ((ops) != nullptr && (ops)->sz >= offsetof(bh_probe_ops, member) + sizeof((ops)->member) && (ops)->member != nullptr)

inline const uint64_t *pt_regs(const bh_probe_ctx *pc) {
  return (pc->flags & BH_PROBE_F_PT_REGS) ? static_cast<const uint64_t *>(pc->regs) : nullptr;
}

// The function's return value by default: ax at a return probe.
int default_ret(const bh_probe_ctx *pc, uint64_t *value) {
  const uint64_t *r = pt_regs(pc);
  if (r == nullptr || !(pc->flags & BH_PROBE_F_RETURN)) return -EOPNOTSUPP;
  *value = r[kAx];
  return 0;
}

// get_stack's limits: sysctl perf_event_max_stack's default, and the largest
// distance between two frames we still believe (big alloca()s happen; a
// larger jump means rbp was not a frame pointer).
constexpr uint32_t kMaxStackDepth = 127;
constexpr uint64_t kMaxFrameSize = 16u << 20;

// BPF_F_* of get_stack.
constexpr uint64_t kSkipMask = 0xff;
constexpr uint64_t kUserStack = 1u << 8;
constexpr uint64_t kUserBuildId = 1u << 11;

// struct bpf_stack_build_id.
struct StackBuildId {
  int32_t status;  // 0 empty, 1 valid (build id + file offset), 2 ip only
  unsigned char build_id[20];
  uint64_t offset_or_ip;
};
static_assert(sizeof(StackBuildId) == 32, "bpf_stack_build_id layout");

struct BuildIdQuery {
  uint64_t ip;
  StackBuildId *out;
};

// dl_iterate_phdr callback: if the object maps ip, fill its GNU build id and
// ip's file offset.
int find_build_id(struct dl_phdr_info *info, size_t, void *arg) {
  auto *q = static_cast<BuildIdQuery *>(arg);
  const ElfW(Phdr) *seg = nullptr;
  for (int k = 0; k < info->dlpi_phnum; k++) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[k];
    const uint64_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && q->ip >= start && q->ip < start + ph.p_memsz) seg = &ph;
  }
  if (seg == nullptr) return 0;
  for (int k = 0; k < info->dlpi_phnum; k++) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[k];
    if (ph.p_type != PT_NOTE) continue;
    // Notes of a loaded object are in its mapped, readable image.
    const char *p = reinterpret_cast<const char *>(info->dlpi_addr + ph.p_vaddr);
    const char *end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto *nh = reinterpret_cast<const ElfW(Nhdr) *>(p);
      const char *name = p + sizeof *nh;
      const char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
          desc + nh->n_descsz <= end) {
        const size_t len = nh->n_descsz < 20 ? nh->n_descsz : 20;
        memset(q->out->build_id, 0, sizeof q->out->build_id);
        memcpy(q->out->build_id, desc, len);
        q->out->status = 1;
        q->out->offset_or_ip = q->ip - (info->dlpi_addr + seg->p_vaddr) + seg->p_offset;
        return 1;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 1;  // the object maps ip but has no build id: stop, leave "ip only"
}

}  // namespace
}  // namespace bh::helpers

using namespace bh::helpers;

extern "C" {

void bh_probe_ctx_enter(bh_probe_ctx *ctx) {
  ThreadState &t = tls;
  ctx->prev_ = t.probe;
  ctx->saved_tail_depth_ = t.tail_depth;
  t.probe = ctx;
  // A new program invocation starts a new tail-call chain (the kernel counts
  // per invocation, and a probe can fire inside a tail-called program).
  t.tail_depth = 0;
}

void bh_probe_ctx_leave(void) {
  ThreadState &t = tls;
  bh_probe_ctx *cur = t.probe;
  if (cur == nullptr) return;  // unbalanced leave: ignore rather than crash a host
  t.probe = cur->prev_;
  t.tail_depth = cur->saved_tail_depth_;
}

bh_probe_ctx *bh_probe_ctx_current(void) { return tls.probe; }

const struct bh_probe_api *bh_helpers_probe_api(void) {
  static const struct bh_probe_api api = {sizeof(bh_probe_api), bh_probe_ctx_enter, bh_probe_ctx_leave,
                                          bh_probe_ctx_current};
  return &api;
}

uint64_t bh_helper_get_func_ip(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  return pc != nullptr ? pc->func_ip : 0;
}

uint64_t bh_helper_get_attach_cookie(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  return pc != nullptr ? pc->cookie : 0;
}

uint64_t bh_helper_get_func_arg(uint64_t, uint64_t n64, uint64_t value_ptr, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  auto *value = reinterpret_cast<uint64_t *>(value_ptr);
  if (pc == nullptr || value == nullptr) return uint64_t(-EINVAL);
  const uint32_t n = uint32_t(n64);
  if (BH_OPS_HAS(pc->ops, get_arg)) return uint64_t(int64_t(pc->ops->get_arg(pc->opaque, n, value)));
  // Default: the registers at function entry. At a return probe they no
  // longer hold the arguments, so only a hook engine that saved them can
  // answer (through ops->get_arg).
  const uint64_t *r = pt_regs(pc);
  if (r == nullptr || (pc->flags & BH_PROBE_F_RETURN)) return uint64_t(-EINVAL);
  const uint32_t count = pc->nr_args >= 0 ? uint32_t(pc->nr_args) : 6;
  if (n >= count || n >= kMaxFuncArgs) return uint64_t(-EINVAL);
  if (n < 6) {
    *value = r[kArgSlots[n]];
    return 0;
  }
  // Stack arguments sit above the return address at entry.
  const uint64_t at = r[kSp] + 8 + 8 * uint64_t(n - 6);
  uint64_t v;
  if (bh_safe_read(&v, reinterpret_cast<const void *>(at), sizeof v) != 0) return uint64_t(-EFAULT);
  *value = v;
  return 0;
}

uint64_t bh_helper_get_func_arg_cnt(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  if (pc == nullptr || pc->nr_args < 0) return uint64_t(-EOPNOTSUPP);
  return uint64_t(pc->nr_args);
}

uint64_t bh_helper_get_func_ret(uint64_t, uint64_t value_ptr, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  auto *value = reinterpret_cast<uint64_t *>(value_ptr);
  if (pc == nullptr || value == nullptr) return uint64_t(-EOPNOTSUPP);
  if (BH_OPS_HAS(pc->ops, get_ret)) return uint64_t(int64_t(pc->ops->get_ret(pc->opaque, value)));
  return uint64_t(int64_t(default_ret(pc, value)));
}

uint64_t bh_helper_get_retval(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  if (pc == nullptr) return uint64_t(-EOPNOTSUPP);
  uint64_t v = 0;
  int rc;
  if (BH_OPS_HAS(pc->ops, get_retval))
    rc = pc->ops->get_retval(pc->opaque, &v);
  else if (BH_OPS_HAS(pc->ops, get_ret))
    rc = pc->ops->get_ret(pc->opaque, &v);
  else
    rc = default_ret(pc, &v);
  return rc != 0 ? uint64_t(int64_t(rc)) : v;
}

// override_return and set_retval both mean "the probed function returns this
// value" here; the full 64 bits are passed, since user-space functions return
// pointers and 64-bit integers (the kernel's set_retval takes an int).
uint64_t bh_helper_set_retval(uint64_t retval, uint64_t, uint64_t, uint64_t, uint64_t) {
  const bh_probe_ctx *pc = tls.probe;
  if (pc == nullptr || !BH_OPS_HAS(pc->ops, set_ret)) return uint64_t(-EOPNOTSUPP);
  return uint64_t(int64_t(pc->ops->set_ret(pc->opaque, retval)));
}

uint64_t bh_helper_override_return(uint64_t, uint64_t rc, uint64_t, uint64_t, uint64_t) {
  return bh_helper_set_retval(rc, 0, 0, 0, 0);
}

uint32_t bh_stack_walk(uint64_t *ips, uint32_t max, uint32_t skip) {
  uint32_t n = 0;
  uint32_t seen = 0;
  // Returns false once the output is full.
  auto push = [&](uint64_t ip) {
    if (seen++ < skip) return true;
    if (n >= max) return false;
    ips[n++] = ip;
    return n < max;
  };
  uint64_t fp;
  const ThreadState &t = tls;
  const bh_probe_ctx *pc = t.probe;
  const uint64_t *r = pc != nullptr ? pt_regs(pc) : nullptr;
  if (r != nullptr) {
    // The probed code's stack, as the kernel's user callchain: ip first.
    if (!push(r[kIp])) return n;
    // At a function's first instruction the caller's frame is not linked
    // yet: its return address is at sp, and rbp is still the caller's.
    if (!(pc->flags & BH_PROBE_F_RETURN) && r[kIp] == pc->func_ip) {
      uint64_t ret;
      if (bh_safe_read(&ret, reinterpret_cast<const void *>(r[kSp]), sizeof ret) == 0 && ret != 0 && !push(ret))
        return n;
    }
    fp = r[kBp];
  } else if (t.origin_ip != 0) {
    // The code that started the run. JIT code keeps no frame-pointer chain
    // (rbp is the eBPF frame pointer), so a walk from here would stop at the
    // program; the origin is where the chain picks up again.
    if (!push(t.origin_ip)) return n;
    fp = t.origin_fp;
  } else {
    fp = reinterpret_cast<uint64_t>(__builtin_frame_address(0));
  }
  for (uint32_t k = 0; k < kMaxStackDepth + skip; k++) {
    if (fp == 0 || (fp & 7) != 0) break;
    uint64_t frame[2];  // saved rbp, return address
    if (bh_safe_read(frame, reinterpret_cast<const void *>(fp), sizeof frame) != 0) break;
    if (frame[1] == 0 || !push(frame[1])) break;
    // Callers' frames lie above: a chain that goes down or jumps far is not
    // a frame-pointer chain (code built without frame pointers).
    if (frame[0] <= fp || frame[0] - fp > kMaxFrameSize) break;
    fp = frame[0];
  }
  return n;
}

__attribute__((noinline)) bh_stack_origin bh_stack_origin_mark(void) {
  ThreadState &t = tls;
  const bh_stack_origin prev = {t.origin_ip, t.origin_fp};
  // This file keeps frame pointers: our frame record holds the caller's rbp
  // and the return address into the caller, which stay valid while the
  // caller's frame lives (that is, for the run it brackets).
  const auto *frame = static_cast<const uint64_t *>(__builtin_frame_address(0));
  t.origin_fp = frame[0];
  t.origin_ip = frame[1];
  return prev;
}

void bh_stack_origin_restore(bh_stack_origin prev) {
  ThreadState &t = tls;
  t.origin_ip = prev.ip;
  t.origin_fp = prev.fp;
}

uint64_t bh_helper_get_stack(uint64_t, uint64_t buf64, uint64_t size64, uint64_t flags, uint64_t) {
  auto *buf = reinterpret_cast<unsigned char *>(buf64);
  const uint32_t size = uint32_t(size64);
  const bool user = flags & kUserStack;
  const bool build_id = flags & kUserBuildId;
  const size_t elem = build_id ? sizeof(StackBuildId) : sizeof(uint64_t);
  if ((flags & ~(kSkipMask | kUserStack | kUserBuildId)) != 0 || (build_id && !user) || size % elem != 0 ||
      buf == nullptr) {
    if (buf != nullptr) memset(buf, 0, size);
    return uint64_t(-EINVAL);
  }
  // A user-space process has no kernel stack to report: empty, not an error.
  uint32_t count = 0;
  uint64_t ips[kMaxStackDepth];
  if (user) {
    uint32_t want = uint32_t(size / elem);
    if (want > kMaxStackDepth) want = kMaxStackDepth;
    count = bh_stack_walk(ips, want, uint32_t(flags & kSkipMask));
  }
  if (!build_id) {
    memcpy(buf, ips, count * sizeof(uint64_t));
  } else {
    for (uint32_t k = 0; k < count; k++) {
      StackBuildId e{};
      e.status = 2;  // ip only, unless an object with a build id maps it
      e.offset_or_ip = ips[k];
      BuildIdQuery q{ips[k], &e};
      dl_iterate_phdr(find_build_id, &q);
      memcpy(buf + k * sizeof e, &e, sizeof e);
    }
  }
  const size_t used = count * elem;
  memset(buf + used, 0, size - used);
  return used;
}

}  // extern "C"
