// The syscall dispatcher: what the text transformer calls on every system
// call it delivers (hook_enter before the call, hook_exit after it), and the
// attachment tables those hooks read.
//
// Hot path (the hooks): no lock, no allocation, no system call through a
// patched site. Per syscall number an enter list and an exit list, plus one
// pair for raw_syscalls programs (every number); each list is an immutable
// array replaced as a whole (copy-on-write) by the control path, published
// with one release store and read with one acquire load. A number nothing
// traces costs two relaxed loads (and its sites are normally not even
// patched: bh_tt_set_interest).
//
// Readers mark themselves in a per-thread slot, the uprobe dispatcher's
// pattern (sdk/native/hook/src/threads.cpp): the slot's counter
// is odd while the thread runs programs. Writers publish the new list, run
// membarrier(PRIVATE_EXPEDITED) (a full barrier on every CPU running one of
// our threads) and wait for each odd counter to move; only then is the old
// list freed and detach allowed to return. Without membarrier readers pay a
// full fence instead. The wait is bounded: a thread that stays inside for a
// second is given up on (the old list is leaked, not freed, and counted).
//
// The odd counter is also the depth guard: a system call made while a
// program runs on the thread (by a helper, or by a signal handler that
// interrupts the program) is not traced, as the kernel does not trace its
// own helpers. A signal handler that runs between the real call and the
// exit hook finds the counter even: its calls are new outer calls and are
// traced.
//
// Slots are a static pool (no allocation), claimed on a thread's first
// traced call with a CAS on the owner tid, and reclaimed from threads that
// no longer exist (tgkill(tgid, tid, 0) == -ESRCH) when the pool is full.
// Thread-locals are initial-exec: global-dynamic TLS in a dlopen'ed library
// goes through __tls_get_addr, which may allocate on a thread's first
// access, inside someone's malloc.

#include "dispatch.h"

#include "vec_guard.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace sc {
namespace {

struct List {
  uint32_t n;
  bool needs_vec;  // some item may change vector state (text-transformer's vec_guard.h)
  bool plain;      // every item is fast JIT code that reaches no C (general_regs) and needs no probe bracket
  Attachment items[];
};

// The plain lists' programs only read their context (the verifier refuses a
// store to it; checked-mode programs have no fast JIT code and never take
// this path), so an enter context can be the call itself: the transformer's
// headroom, then nr and args, is trace_event_raw_sys_enter.
static_assert(offsetof(bh_tt_call_frame, call) == 8 && offsetof(bh_tt_call, args) == 8 &&
                  offsetof(bh_sc_sys_enter, id) == 8 && offsetof(bh_sc_sys_enter, args) == 16 &&
                  sizeof(bh_sc_sys_enter) == BH_SC_CONTEXT_SIZE && sizeof(bh_tt_call_frame) >= BH_SC_CONTEXT_SIZE,
              "a call frame is an enter context in place");

// One list pointer per number and direction, and the raw_syscalls pair.
std::atomic<const List *> g_nr[2][BH_SC_MAX_NR];
std::atomic<const List *> g_all[2];

const bh_probe_api *g_probe = nullptr;

// ---- per-thread slots --------------------------------------------------------
struct alignas(64) Slot {
  std::atomic<uint64_t> ctr{0};   // odd while the thread runs programs
  std::atomic<int32_t> owner{0};  // tid of the thread using it; 0: free
};
constexpr uint32_t kSlots = 4096;
Slot g_slots[kSlots];
__thread Slot *tls_slot __attribute__((tls_model("initial-exec"))) = nullptr;
std::atomic<int32_t> g_tgid{0};
bool g_reader_fence = false;
std::atomic<uint64_t> g_missed{0}, g_grace_timeouts{0};

inline long raw(long nr, long a = 0, long b = 0, long c = 0, long d = 0) {
  return long(bh_tt_raw_syscall(uint64_t(nr), uint64_t(a), uint64_t(b), uint64_t(c), uint64_t(d), 0, 0));
}

int32_t tgid() {
  int32_t t = g_tgid.load(std::memory_order_relaxed);
  if (t == 0) {
    t = int32_t(raw(SYS_getpid));
    g_tgid.store(t, std::memory_order_relaxed);
  }
  return t;
}

bool thread_gone(int32_t tid) { return tid != 0 && raw(SYS_tgkill, tgid(), tid, 0) == -ESRCH; }

// A thread's first traced call: a free slot, else one of a thread that is gone.
__attribute__((noinline)) Slot *slot_claim() {
  const int32_t tid = int32_t(raw(SYS_gettid));
  for (int pass = 0; pass < 2; pass++) {
    for (Slot &s : g_slots) {
      int32_t o = s.owner.load(std::memory_order_relaxed);
      if (o != 0 && (pass == 0 || (s.ctr.load(std::memory_order_relaxed) & 1) != 0 || !thread_gone(o))) continue;
      if (s.owner.compare_exchange_strong(o, tid, std::memory_order_acq_rel)) {
        uint64_t c = s.ctr.load(std::memory_order_relaxed);
        if (c & 1) s.ctr.store(c + 1, std::memory_order_relaxed);
        tls_slot = &s;
        return &s;
      }
    }
  }
  return nullptr;
}

void after_fork_child() {
  // The child has one thread, the one that forked: its slot follows its new
  // tid, every other slot is free.
  g_tgid.store(0, std::memory_order_relaxed);
  Slot *self = tls_slot;
  for (Slot &s : g_slots) {
    if (&s == self) continue;
    s.ctr.store(0, std::memory_order_relaxed);
    s.owner.store(0, std::memory_order_relaxed);
  }
  if (self != nullptr) self->owner.store(int32_t(raw(SYS_gettid)), std::memory_order_relaxed);
}

inline void section_enter(Slot *s, uint64_t c) {
  s->ctr.store(c + 1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (__builtin_expect(g_reader_fence, 0)) std::atomic_thread_fence(std::memory_order_seq_cst);
}

// Leaves with the slot found again (nothing need be kept across the runs):
// the thread's slot cannot change while it is inside (its odd counter keeps
// nested calls out).
inline void section_leave_self() {
  Slot *s = tls_slot;
  s->ctr.store(s->ctr.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

// xmm0-15, kept around everything but a plain list's runs: this file is
// compiled without vector registers (-mgeneral-regs-only), but the probe
// bracket, the interpreter and helpers are C that may use SSE, and the
// transformer saves nothing for us (BH_TT_HOOKS_F_KEEP_VECTORS). Declared
// before a VecGuard, so that it saves first and restores last.
class XmmGuard {
 public:
  XmmGuard() {
#define S(n) "movaps %%xmm" #n ", " #n "*16(%0)\n"
    asm volatile(S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)::"r"(x_)
                 : "memory");
#undef S
  }
  ~XmmGuard() {
#define L(n) "movaps " #n "*16(%0), %%xmm" #n "\n"
    asm volatile(L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)::"r"(x_)
                 : "memory");
#undef L
  }
  XmmGuard(const XmmGuard &) = delete;
  XmmGuard &operator=(const XmmGuard &) = delete;

 private:
  alignas(16) uint8_t x_[256];
};

// ---- one call's probe context --------------------------------------------------
struct CallState {
  const bh_tt_call *call;
  int64_t ret;      // exit: the result so far; enter: the override value
  bool exit;        // an exit run: get_ret works, set_ret replaces
  bool overridden;  // set_ret was honoured
  bool allow;       // the running attachment may override
};

int op_get_arg(void *opaque, uint32_t n, uint64_t *value) {
  auto *cs = static_cast<CallState *>(opaque);
  if (n >= 6) return -EINVAL;
  *value = cs->call->args[n];
  return 0;
}

int op_get_ret(void *opaque, uint64_t *value) {
  auto *cs = static_cast<CallState *>(opaque);
  if (!cs->exit) return -EOPNOTSUPP;
  *value = uint64_t(cs->ret);
  return 0;
}

int op_set_ret(void *opaque, uint64_t value) {
  auto *cs = static_cast<CallState *>(opaque);
  if (!cs->allow) return -EPERM;
  cs->ret = int64_t(value);
  cs->overridden = true;
  return 0;
}

int op_get_retval(void *opaque, uint64_t *value) {
  auto *cs = static_cast<CallState *>(opaque);
  if (!cs->exit && !cs->overridden) return -EOPNOTSUPP;
  *value = uint64_t(cs->ret);
  return 0;
}

const bh_probe_ops kOps = {sizeof(bh_probe_ops), op_get_arg, op_get_ret, op_set_ret, op_get_retval};

inline void run_list(const List *l, void *ctx, CallState &cs, bh_probe_ctx &pc) {
  for (uint32_t i = 0; i < l->n; i++) {
    const Attachment &a = l->items[i];
    cs.allow = a.allow_override;
    uint64_t r0 = 0;
    const bool bracket = a.reads_probe && g_probe != nullptr;
    if (bracket) {
      pc.cookie = a.cookie;
      g_probe->enter(&pc);
    }
    if (a.jit != nullptr)
      r0 = a.jit(ctx, BH_SC_CONTEXT_SIZE);
    else
      a.run(a.prog, ctx, BH_SC_CONTEXT_SIZE, &r0);  // a fault (checked mode) just ends this run
    if (bracket) g_probe->leave();
    // Later programs of an exit see the result as overridden so far.
    if (cs.exit) reinterpret_cast<bh_sc_sys_exit *>(ctx)->ret = cs.ret;
  }
}

// Both lists of a call, each program in turn. With a program that may change
// vector state, on the path below (its save area is on the stack only there:
// a hook may run on a signal's small alternate stack).
__attribute__((noinline)) void run_lists_vec(const List *all, const List *one, void *ctx, CallState &cs,
                                             bh_probe_ctx &pc) {
  XmmGuard xmm;
  bh_tt::VecGuard guard(true);
  if (all != nullptr) run_list(all, ctx, cs, pc);
  if (one != nullptr) run_list(one, ctx, cs, pc);
}

inline void run_lists(const List *all, const List *one, void *ctx, CallState &cs, bh_probe_ctx &pc) {
  if ((all != nullptr && all->needs_vec) || (one != nullptr && one->needs_vec))
    return run_lists_vec(all, one, ctx, cs, pc);
  XmmGuard xmm;
  if (all != nullptr) run_list(all, ctx, cs, pc);
  if (one != nullptr) run_list(one, ctx, cs, pc);
}

inline bool plain(const List *all, const List *one) {
  return (all == nullptr || all->plain) && (one == nullptr || one->plain);
}

// The calling thread's slot, or nullptr when this call is not to be traced
// (a program of ours is running on the thread, or no slot is free).
inline Slot *enter_slot() {
  Slot *s = tls_slot;
  if (__builtin_expect(s == nullptr, 0)) {
    s = slot_claim();
    if (s == nullptr) {
      g_missed.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
  }
  const uint64_t c = s->ctr.load(std::memory_order_relaxed);
  if (c & 1) return nullptr;
  section_enter(s, c);
  return s;
}

// Both hooks' start: nullptr when no program wants the call (two relaxed
// loads) or it is not to be traced; else the slot, its section entered, and
// the lists to run (either may be null).
inline Slot *begin(uint32_t dir, uint64_t nr, const List **all, const List **one) {
  if (g_all[dir].load(std::memory_order_relaxed) == nullptr &&
      (nr >= BH_SC_MAX_NR || g_nr[dir][nr].load(std::memory_order_relaxed) == nullptr))
    return nullptr;
  Slot *s = enter_slot();
  if (s == nullptr) return nullptr;
  *all = g_all[dir].load(std::memory_order_acquire);
  *one = nr < BH_SC_MAX_NR ? g_nr[dir][nr].load(std::memory_order_acquire) : nullptr;
  return s;
}

// The common header of a context (type, flags, preempt_count 0; the tid)
// in one store.
inline void put_header(void *ctx, const Slot *s) {
  const uint64_t hdr = uint64_t(uint32_t(s->owner.load(std::memory_order_relaxed))) << 32;
  memcpy(ctx, &hdr, sizeof hdr);
}

// Runs a plain list: JIT code straight, on the in-place context.
inline void run_plain(const List *l, void *ctx) {
  for (uint32_t i = 0; i < l->n; i++) l->items[i].jit(ctx, BH_SC_CONTEXT_SIZE);
}

__attribute__((noinline)) void run_plain_lists(const List *all, const List *one, void *ctx) {
  if (all != nullptr) run_plain(all, ctx);
  if (one != nullptr) run_plain(one, ctx);
}

// Enter with a list that is not plain: a copied context, the probe bracket,
// the vector guard where needed, overrides.
__attribute__((noinline)) int enter_lists(const List *all, const List *one, const bh_tt_call *call, int64_t *ret) {
  alignas(16) bh_sc_sys_enter ctx;
  put_header(&ctx, tls_slot);
  ctx.id = int64_t(call->nr);
  memcpy(ctx.args, call->args, sizeof ctx.args);
  CallState cs{call, 0, false, false, false};
  bh_probe_ctx pc{};
  pc.regs = &ctx;
  pc.ops = &kOps;
  pc.opaque = &cs;
  pc.nr_args = 6;
  run_lists(all, one, &ctx, cs, pc);
  if (cs.overridden) {
    *ret = cs.ret;
    return BH_TT_SKIP;
  }
  return BH_TT_RUN;
}

__attribute__((noinline)) void exit_lists(const List *all, const List *one, void *buf, const bh_tt_call *call,
                                          int64_t *ret) {
  CallState cs{call, *ret, true, false, false};
  bh_probe_ctx pc{};
  pc.regs = buf;
  pc.ops = &kOps;
  pc.opaque = &cs;
  pc.nr_args = 0;
  run_lists(all, one, buf, cs, pc);
  if (cs.overridden) *ret = cs.ret;
}

}  // namespace

int hook_enter(void *, const bh_tt_call *call, int64_t *ret) {
  const List *all, *one;
  Slot *s = begin(BH_SC_ENTER, call->nr, &all, &one);
  if (s == nullptr) return BH_TT_RUN;
  if (!plain(all, one)) {
    const int action = enter_lists(all, one, call, ret);
    section_leave_self();
    return action;
  }
  // The hot path: one store for the header, the programs, nothing else;
  // nothing is kept across a program's run (section_leave_self finds the
  // slot again), so this function saves no register of its own.
  void *ctx = const_cast<char *>(reinterpret_cast<const char *>(call)) - offsetof(bh_tt_call_frame, call);
  put_header(ctx, s);
  if (all == nullptr && one != nullptr && one->n == 1)
    one->items[0].jit(ctx, BH_SC_CONTEXT_SIZE);
  else
    run_plain_lists(all, one, ctx);
  section_leave_self();
  return BH_TT_RUN;
}

void hook_exit(void *, const bh_tt_call *call, int64_t *ret) {
  const List *all, *one;
  Slot *s = begin(BH_SC_EXIT, call->nr, &all, &one);
  if (s == nullptr) return;
  // 64 bytes like an enter context: a program verified against the type's
  // widest layout (a config entry's attach) reads zeros past `ret`.
  alignas(16) unsigned char buf[BH_SC_CONTEXT_SIZE] = {};
  auto *ctx = reinterpret_cast<bh_sc_sys_exit *>(buf);
  put_header(buf, s);
  ctx->id = int64_t(call->nr);
  ctx->ret = *ret;
  if (plain(all, one))
    run_plain_lists(all, one, buf);
  else
    exit_lists(all, one, buf, call, ret);
  section_leave_self();
}

// ---- control path ------------------------------------------------------------------
namespace {

struct Record {
  Attachment a;
  bh_sc_private_data pd;
  void *owner;
};

std::mutex g_mu;
std::vector<Record> g_records;  // attach order
int g_next_id = 0;
std::once_flag g_once;

void init_once() {
  bh_tt::vec_init();
  if (raw(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) < 0) g_reader_fence = true;
  pthread_atfork(nullptr, nullptr, after_fork_child);
}

std::atomic<const List *> &slot_of(const bh_sc_private_data &pd) {
  return (pd.flags & BH_SC_F_ALL) ? g_all[pd.direction] : g_nr[pd.direction][pd.nr];
}

bool same_list(const bh_sc_private_data &x, const bh_sc_private_data &y) {
  if (x.direction != y.direction || (x.flags & BH_SC_F_ALL) != (y.flags & BH_SC_F_ALL)) return false;
  return (x.flags & BH_SC_F_ALL) != 0 || x.nr == y.nr;
}

// The list for pd's number and direction, built from the records (NULL: empty).
const List *build(const bh_sc_private_data &pd) {
  std::vector<const Attachment *> items;
  for (const Record &r : g_records)
    if (same_list(r.pd, pd)) items.push_back(&r.a);
  if (items.empty()) return nullptr;
  auto *l = static_cast<List *>(malloc(sizeof(List) + items.size() * sizeof(Attachment)));
  if (l == nullptr) return nullptr;
  l->n = uint32_t(items.size());
  l->needs_vec = false;
  l->plain = true;
  for (size_t i = 0; i < items.size(); i++) {
    const Attachment &a = *items[i];
    l->items[i] = a;
    l->needs_vec = l->needs_vec || !a.no_vector;
    l->plain = l->plain && a.jit != nullptr && a.general_regs && !a.reads_probe;
  }
  return l;
}

// Waits until every thread that was running programs when it was called has
// left them. Returns false if one did not within a second (then the caller
// must not free what that thread may read).
bool grace_period() {
  if (g_reader_fence)
    std::atomic_thread_fence(std::memory_order_seq_cst);
  else
    raw(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0);
  Slot *self = tls_slot;
  uint64_t waited_ns = 0;
  for (Slot &s : g_slots) {
    if (&s == self || s.owner.load(std::memory_order_relaxed) == 0) continue;
    const uint64_t c = s.ctr.load(std::memory_order_acquire);
    if (!(c & 1)) continue;
    for (unsigned spins = 0; s.ctr.load(std::memory_order_acquire) == c; spins++) {
      if (spins < 64) {
        __builtin_ia32_pause();
      } else if (spins < 2000) {
        raw(SYS_sched_yield);
      } else {
        if (thread_gone(s.owner.load(std::memory_order_relaxed))) break;
        struct timespec ts = {0, 100000};
        raw(SYS_nanosleep, reinterpret_cast<long>(&ts), 0);
        waited_ns += 100000;
        if (waited_ns >= 1000000000ull) {
          g_grace_timeouts.fetch_add(1, std::memory_order_relaxed);
          return false;
        }
      }
    }
  }
  return true;
}

}  // namespace

void set_probe_api(const bh_probe_api *probe) { g_probe = probe; }

int add(const Attachment &a, const bh_sc_private_data &pd, void *owner, std::string *err) {
  std::call_once(g_once, init_once);
  if (pd.direction > BH_SC_EXIT) {
    *err = "direction " + std::to_string(pd.direction) + " is neither enter (0) nor exit (1)";
    return -EINVAL;
  }
  if (!(pd.flags & BH_SC_F_ALL) && pd.nr >= BH_SC_MAX_NR) {
    *err = "syscall number " + std::to_string(pd.nr) + " is not below " + std::to_string(BH_SC_MAX_NR);
    return -EINVAL;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  Record r{a, pd, owner};
  r.a.id = g_next_id++;
  g_records.push_back(r);
  const List *l = build(pd);
  if (l == nullptr) {
    g_records.pop_back();
    *err = "out of memory for the attachment list";
    return -ENOMEM;
  }
  const List *old = slot_of(pd).exchange(l, std::memory_order_acq_rel);
  if (old != nullptr) {
    if (grace_period()) free(const_cast<List *>(old));
  }
  return r.a.id;
}

int remove(int id, void *owner, bool *now_empty) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto it = g_records.begin(); it != g_records.end(); ++it) {
    if (it->a.id != id || it->owner != owner) continue;
    const bh_sc_private_data pd = it->pd;
    g_records.erase(it);
    // NULL when empty, or (rarely) out of memory: then the list stays empty
    // until its next change (a program missing is safer than one detached
    // and still running).
    const List *l = build(pd);
    const List *old = slot_of(pd).exchange(l, std::memory_order_acq_rel);
    const bool passed = grace_period();
    if (old != nullptr && passed) free(const_cast<List *>(old));
    *now_empty = g_records.empty();
    return 0;
  }
  return -ENOENT;
}

void interest(uint32_t *nrs, size_t *n, bool *all) {
  *n = 0;
  *all = g_all[0].load() != nullptr || g_all[1].load() != nullptr;
  for (uint32_t i = 0; i < BH_SC_MAX_NR; i++)
    if (g_nr[0][i].load() != nullptr || g_nr[1][i].load() != nullptr) nrs[(*n)++] = i;
}

void exit_interest(uint32_t *nrs, size_t *n, bool *all) {
  *n = 0;
  *all = g_all[BH_SC_EXIT].load() != nullptr;
  for (uint32_t i = 0; i < BH_SC_MAX_NR; i++)
    if (g_nr[BH_SC_EXIT][i].load() != nullptr) nrs[(*n)++] = i;
}

int remove_all(void *owner, bool *now_empty) {
  std::vector<int> ids;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const Record &r : g_records)
      if (r.owner == owner) ids.push_back(r.a.id);
    *now_empty = g_records.empty();
  }
  for (int id : ids) remove(id, owner, now_empty);
  return int(ids.size());
}

int count(void *owner) {
  std::lock_guard<std::mutex> lock(g_mu);
  int n = 0;
  for (const Record &r : g_records) n += r.owner == owner;
  return n;
}

Stats stats() {
  uint64_t threads = 0;
  for (const Slot &s : g_slots) threads += s.owner.load(std::memory_order_relaxed) != 0;
  uint64_t guarded = 0;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const Record &r : g_records) guarded += !r.a.no_vector;
  }
  return Stats{g_missed.load(), g_grace_timeouts.load(), threads, guarded};
}

}  // namespace sc
