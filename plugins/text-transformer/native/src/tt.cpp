// The text transformer (see include/bpfhook/text_transformer.h for the
// contract and README.md for the mechanisms, their costs and limits).
//
// Install: scan every readable executable mapping with Zydis (linear sweep,
// one byte skipped and decoding resumed on an undecodable byte), collect the
// `syscall` instructions found at instruction starts and every direct branch
// target, then give each site a mechanism:
//   REL32  `mov $NR,%eax; syscall` whose `syscall` is no branch target: the
//          5-byte mov becomes `jmp rel32` to a per-site stub near the module;
//          the `syscall` bytes stay (the stub returns past them). Other
//          sites: 1 to 4 instructions before the `syscall`, or the one
//          after, are relocated into a dynamic stub (RIP-relative disp32
//          and jcc fixed up), trying each placement in turn.
//   PAGE0  any other site, when page 0 could be mapped: `syscall` becomes
//          `call *%rax` into the slide at address 0.
//   SUD    the rest: left as they are and caught by Syscall User Dispatch,
//          which is turned on only when such a site exists and is wanted.
// Stubs and the page-0 handler save every register, build a bh_tt_call on the
// stack, run the hooks (tramp.S + bh_tt_c_enter/bh_tt_c_exit below) and
// execute the real `syscall` with the program's own rsp.
#include <cpuid.h>
#include <dirent.h>
#include <dlfcn.h>
#include <linux/membarrier.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <ucontext.h>
#include <unistd.h>
#include <Zydis/Zydis.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bpfhook/text_transformer.h"
#include "code_arena.h"
#include "internal.h"
#include "vec_guard.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif
#ifndef CLONE_VM
#define CLONE_VM 0x100
#endif

using bh_tt::Frame;

// Per-thread selector byte of Syscall User Dispatch (0 allow, 1 block) and
// the vfork word (see tramp.S). Initial-exec: stubs address the selector as
// %fs:offset, the same for every thread.
__thread __attribute__((tls_model("initial-exec"))) volatile uint8_t bh_tt_sel;
__thread __attribute__((tls_model("initial-exec"))) uint64_t bh_tt_vfork_word;
// Numbers of the calls in flight on this thread through relocated stubs
// (whose number is not known at the site): pushed by enter, popped by exit.
// Nested calls (signal handlers) are LIFO; a ring, so a call that never
// pops (a handler left by longjmp) only wastes a slot.
__thread __attribute__((tls_model("initial-exec"))) uint16_t bh_tt_nr_ring[32];
__thread __attribute__((tls_model("initial-exec"))) uint32_t bh_tt_nr_depth;
uint64_t bh_tt_simple[BH_TT_MAX_NR / 64];
uint64_t bh_tt_simple_exit[BH_TT_MAX_NR / 64];
const bh_tt_hooks *bh_tt_fast_hooks;
void *bh_tt_fast_user;

namespace {

constexpr uint8_t kSelAllow = 0, kSelBlock = 1;
constexpr size_t kStubSize = 224;
constexpr size_t kBareAt = 176;  // the bare path: the call with no hooks
constexpr size_t kDynStubSize = 512;
constexpr uint32_t kMaxNr = 512;  // page 0's slide covers numbers below this

// A dynamic placement of the jump (see Site).
struct Plan {
  uint8_t reloc_len, pun_at, next_len;
};

struct Site {
  uint64_t addr = 0;  // the `syscall` instruction
  int32_t nr = -1;    // known at the site (REL32 shape), else -1
  int prot = 0;       // of its mapping (restored after each write)
  uint32_t mech = BH_TT_MECH_NONE;
  bool rel32_shape = false;
  uint8_t mov_len = 0;    // 5: b8 imm32, 7: 48 c7 c0 imm32
  uint8_t reloc_len = 0;  // else: bytes of the 1 to 4 instructions before, relocated into a dynamic stub
  uint8_t pun_at = 5;     // first byte of the patch that is an instruction start: it and the rest keep their value
  uint8_t next_len = 0;   // else: the instruction after, relocated (the jump replaces the `syscall` itself)
  // The dynamic placements still to try (reloc_len, pun_at, next_len),
  // best first: a placement whose window is taken or whose jump would
  // cross a cache line at a 2-byte boundary falls through to the next.
  Plan plans[6] = {};
  uint8_t nplans = 0;
  bool rel32_failed = false;  // no placement worked: PAGE0 or SUD (not retried)
  uint8_t *entry = nullptr;   // where the jump goes when not the stub: a hop (`jmp` to it) in the window
  bool bare = false;          // REL32 to the stub's bare path (number not wanted, SUD on)
  uint8_t orig[8] = {};
  uint8_t *stub = nullptr;  // REL32 stub (kept once made)
  uint64_t stub_skip = 0;   // the stub's skip path
  uint32_t module = 0;      // index into State::module_names
  // Dynamic stub: where its clone / clone3 / vfork / skip paths start.
  uint64_t dyn_clone = 0, dyn_clone3 = 0, dyn_vfork = 0;
  // Where the enter call returns by default: the call without the exit hook
  // (most traced calls want enter only). run_exit: the call with it, which
  // enter chooses by changing the return address (a return-stack
  // misprediction, paid only by calls that also pay the exit round trip).
  uint64_t run_noexit = 0, run_exit = 0;
  // The code the stub was made from ([patch_at(), addr + 2 + next_len)) and
  // whether it toggles the SUD selector: a later install reuses the stub
  // (parked at uninstall) only for the same code (see adopt_parked).
  uint8_t code[40] = {};
  uint8_t code_len = 0;
  bool stub_toggle = false;
  const char *fail = nullptr;  // why REL32 failed (debug log)
  // First byte the patch writes.
  uint64_t patch_at() const { return next_len ? addr : addr - (mov_len ? mov_len : reloc_len); }
};
static_assert(offsetof(Site, addr) == BH_TT_SITE_ADDR && offsetof(Site, stub_skip) == BH_TT_SITE_STUB_SKIP &&
                  offsetof(Site, nr) == BH_TT_SITE_NR && sizeof(Site::nr) == 4 &&
                  offsetof(Site, run_exit) == BH_TT_SITE_RUN_EXIT,
              "tramp.S's Site offsets (internal.h)");
static_assert(kMaxNr == BH_TT_MAX_NR && offsetof(bh_tt_hooks, enter) == BH_TT_HOOKS_ENTER &&
                  offsetof(bh_tt_hooks, exit) == BH_TT_HOOKS_EXIT,
              "tramp.S's constants");
static_assert(alignof(Site) >= 8, "the low 3 bits of a Site pointer carry the stub path");

// What a stub pushes: a Site pointer, its low bits the path (see tramp.S).
enum Path : uint64_t { kStatic = 0, kDynGeneric = 1, kDynClone = 2, kDynClone3 = 3, kDynVfork = 4 };
constexpr uint64_t kPathMask = 7;
inline const Site *info_site(uint64_t info) { return reinterpret_cast<const Site *>(info & ~kPathMask); }
inline Path info_path(uint64_t info) { return Path(info & kPathMask); }

struct PunRegion {
  uint8_t *base;
  size_t size;
  std::vector<std::pair<uint64_t, uint64_t>> blocks;  // [start, end) handed out
};

struct State {
  std::mutex mu;
  bool installed = false;
  bh_tt_hooks hooks{};
  void *user = nullptr;
  uint32_t allowed = 0;
  bool page0 = false;
  bool watch = false;
  bool all = true;
  std::deque<Site> sites;  // stable addresses: stubs point at their Site
  std::unordered_set<uint64_t> known;
  // Sites of earlier installs that have a stub, by address (their stubs and
  // Site objects are never freed: see bh_tt_uninstall).
  std::unordered_map<uint64_t, const Site *> parked;
  bh::CodeArena arena;
  std::vector<std::string> module_names;
  std::vector<PunRegion> pun;
  uint64_t undecodable = 0;
  void (*log)(void *, int, const char *) = nullptr;
  void *log_ctx = nullptr;
  bool sigsys_installed = false;
  uint64_t old_sigsys[4] = {};  // kernel sigaction: handler, flags, restorer, mask
};

// Initialized before any default-priority constructor (a library's
// __attribute__((constructor)) may install the transformer).
State g __attribute__((init_priority(101)));
std::atomic<const bh_tt_hooks *> g_hooks{nullptr};
std::atomic<void *> g_user{nullptr};
std::atomic<uint64_t> g_interest[kMaxNr / 64];
std::atomic<bool> g_all{true};
std::atomic<uint64_t> g_exit_interest[kMaxNr / 64];
std::atomic<bool> g_exit_all{true};
std::atomic<bool> g_sud_on{false};
std::atomic<bool> g_watch{false};
// Numbers whose calls through a stub need nothing but the enter hook: wanted,
// no exit hook wanted, nothing of ours to do after them (new code to scan,
// dispatch for a new task) nor instead of them (emulate); and, in
// bh_tt_simple_exit, those that want the exit hook too and nothing of ours.
// Derived from the switches above by refresh_simple, whenever one changes;
// tramp.S reads one word of them and, for these, skips everything else.
// tramp.S reads it (bh_tt_simple), with bh_tt_fast_hooks (the hooks when
// they keep the vector registers, else null) and bh_tt_fast_user, to call
// enter without saving any vector register and without C of ours around it.
uint64_t *const g_simple = bh_tt_simple;
std::atomic<uint32_t> g_ack{0};
int32_t g_sel_off = 0;

// Ranges of our own code (stub regions), read lock-free by the SIGSYS handler.
constexpr int kMaxRegions = 256;
std::atomic<uint64_t> g_region_lo[kMaxRegions], g_region_hi[kMaxRegions];
std::atomic<int> g_nregions{0};

// Executable ranges mapped while the lock was held elsewhere: scanned by
// whoever holds it next.
constexpr int kMaxPending = 64;
std::atomic<uint64_t> g_pend_lo[kMaxPending], g_pend_hi[kMaxPending];
std::atomic<uint32_t> g_npend{0};

inline int64_t raw(uint64_t nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                   uint64_t a5 = 0) {
  return bh_tt_raw_syscall(nr, a0, a1, a2, a3, a4, a5);
}

void logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void logf(int level, const char *fmt, ...) {
  if (!g.log) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g.log(g.log_ctx, level, buf);
}

void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void set_err(char *err, size_t len, const char *fmt, ...) {
  if (!err || !len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
}

inline bool interested(uint64_t nr) {
  if (g_all.load(std::memory_order_relaxed)) return true;
  return nr < kMaxNr && (g_interest[nr / 64].load(std::memory_order_relaxed) >> (nr % 64)) & 1;
}
// The exit hook is wanted for nr (bh_tt_set_exit_interest).
inline bool exit_wanted(uint64_t nr) {
  if (!interested(nr)) return false;
  if (g_exit_all.load(std::memory_order_relaxed)) return true;
  return nr < kMaxNr && (g_exit_interest[nr / 64].load(std::memory_order_relaxed) >> (nr % 64)) & 1;
}
void refresh_simple() {
  static std::mutex mu;  // two refreshes must not store out of order
  std::lock_guard<std::mutex> lk(mu);
  const bh_tt_hooks *h = g_hooks.load();
  const bool watch = g_watch.load(), sud = g_sud_on.load();
  for (uint32_t w = 0; w < kMaxNr / 64; w++) {
    uint64_t bits = 0, with_exit = 0;
    for (uint32_t b = 0; b < 64; b++) {
      const uint64_t nr = w * 64 + b;
      const bool ours =
          (watch && nr == SYS_mmap) || (sud && (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork ||
                                                nr == SYS_vfork || nr == SYS_rt_sigprocmask || nr == SYS_rt_sigaction));
      if (h == nullptr || !interested(nr) || ours) continue;
      if (h->exit != nullptr && exit_wanted(nr))
        with_exit |= 1ull << b;
      else
        bits |= 1ull << b;
    }
    __atomic_store_n(&g_simple[w], bits, __ATOMIC_SEQ_CST);
    __atomic_store_n(&bh_tt_simple_exit[w], with_exit, __ATOMIC_SEQ_CST);
  }
  __atomic_store_n(&bh_tt_fast_user, g_user.load(), __ATOMIC_RELAXED);
  __atomic_store_n(&bh_tt_fast_hooks, h != nullptr && (h->flags & BH_TT_HOOKS_F_KEEP_VECTORS) ? h : nullptr,
                   __ATOMIC_RELEASE);
}

// A site is patched if the hooks want its number, or we do (new code).
inline bool wanted_at_site(int32_t nr) {
  if (nr < 0) return true;
  if (interested(uint64_t(nr))) return true;
  return g.watch && nr == SYS_mmap;
}

bool in_regions(uint64_t a) {
  const int n = g_nregions.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++)
    if (a >= g_region_lo[i].load(std::memory_order_relaxed) && a < g_region_hi[i].load(std::memory_order_relaxed))
      return true;
  return false;
}

void sync_regions() {
  struct R {
    uint64_t lo, hi;
  };
  std::vector<R> rs;
  g.arena.regions(rs);
  for (const PunRegion &p : g.pun) rs.push_back(R{uint64_t(p.base), uint64_t(p.base) + p.size});
  int n = 0;
  for (const R &r : rs) {
    if (n == kMaxRegions) break;
    g_region_lo[n].store(r.lo, std::memory_order_relaxed);
    g_region_hi[n].store(r.hi, std::memory_order_relaxed);
    n++;
  }
  g_nregions.store(n, std::memory_order_release);
}

// ---- SUD ----------------------------------------------------------------

bool sud_enable_self() {
  bh_tt_sel = kSelAllow;
  const int64_t rc = raw(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, uint64_t(bh_tt_text_begin),
                         uint64_t(bh_tt_text_end - bh_tt_text_begin), uint64_t(&bh_tt_sel));
  if (rc == 0) bh_tt_sel = kSelBlock;
  return rc == 0;
}
void sud_disable_self() {
  bh_tt_sel = kSelAllow;
  raw(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
}

// A child of fork/vfork/clone starts without dispatch, or with the parent's
// selector address: give it its own.
inline void child_started(uint64_t nr, int64_t ret) {
  if (ret == 0 && g_sud_on.load(std::memory_order_relaxed) &&
      (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork))
    sud_enable_self();
}

void scan_new_code(uint64_t lo, uint64_t hi);

// New code: a file mapped executable (dlopen maps a library's text so).
// Anonymous executable memory (JIT code, which V8 re-protects all the time)
// and mprotect are not watched: scanning costs a read of /proc/self/maps.
// The scan reaches libc, Zydis and malloc, whose string functions use AVX
// and AVX-512: that state is kept around it (the trampoline saved xmm0-15).
inline void after_call(uint64_t nr, const uint64_t *args, int64_t ret) {
  if (ret < 0 || nr != SYS_mmap || !g_watch.load(std::memory_order_relaxed)) return;
  if ((args[2] & PROT_EXEC) && !(args[3] & MAP_ANONYMOUS) && int(args[4]) >= 0) {
    bh_tt::VecGuard keep(true);
    scan_new_code(uint64_t(ret), uint64_t(ret) + args[1]);
  }
}

// Calls that must not be executed from the signal handler: they create a
// task on another stack or on ours, or return to another context.
inline bool shares_stack(uint64_t nr, const uint64_t *a) {
  if (nr == SYS_vfork) return true;
  if (nr == SYS_clone) return (a[0] & CLONE_VM) && a[1] == 0;
  if (nr == SYS_clone3 && a[0]) {
    const uint64_t *ca = reinterpret_cast<const uint64_t *>(a[0]);
    return (ca[0] & CLONE_VM) && ca[5] == 0;
  }
  return false;
}
// Writes the word where the call's return path reads it: at orig-8 and, for
// a new stack, at the child's stack top - 8.
inline void place_word(uint64_t nr, const uint64_t *a, uint64_t rsp, uint64_t word) {
  *reinterpret_cast<uint64_t *>(rsp - 8) = word;
  if (nr == SYS_clone && a[1]) *reinterpret_cast<uint64_t *>(a[1] - 8) = word;
  if (nr == SYS_clone3 && a[0]) {
    const uint64_t *ca = reinterpret_cast<const uint64_t *>(a[0]);
    if (ca[5]) *reinterpret_cast<uint64_t *>(ca[5] + ca[6] - 8) = word;
  }
}

// While dispatch is on, SIGSYS must never be blocked: a trap with SIGSYS
// blocked makes the kernel kill the process (glibc blocks every signal in
// pthread_create, posix_spawn, ...; handlers often have a full sa_mask).
// So the masks the program sets lose SIGSYS, and the program's own SIGSYS
// handler is recorded for chaining instead of installed. Returns true if the
// call was done here (result in *ret).
constexpr uint64_t kSigsysBit = 1ull << (SIGSYS - 1);
bool emulate(uint64_t nr, const uint64_t *a, int64_t *ret) {
  if (!g_sud_on.load(std::memory_order_relaxed)) return false;
  if (nr == SYS_rt_sigprocmask && a[1] && a[3] == 8 && a[0] != SIG_UNBLOCK) {
    const uint64_t set = *reinterpret_cast<const uint64_t *>(a[1]);
    if (!(set & kSigsysBit)) return false;
    const uint64_t copy = set & ~kSigsysBit;
    *ret = raw(nr, a[0], uint64_t(&copy), a[2], 8);
    return true;
  }
  if (nr == SYS_rt_sigaction && a[3] == 8) {
    if (a[0] == SIGSYS && g.sigsys_installed) {
      uint64_t prev[4];
      memcpy(prev, g.old_sigsys, sizeof prev);
      if (a[1]) memcpy(g.old_sigsys, reinterpret_cast<const void *>(a[1]), sizeof g.old_sigsys);
      if (a[2]) memcpy(reinterpret_cast<void *>(a[2]), prev, sizeof prev);
      *ret = 0;
      return true;
    }
    if (a[1] && (reinterpret_cast<const uint64_t *>(a[1])[3] & kSigsysBit)) {
      uint64_t act[4];
      memcpy(act, reinterpret_cast<const void *>(a[1]), sizeof act);
      act[3] &= ~kSigsysBit;
      *ret = raw(nr, a[0], uint64_t(act), a[2], 8);
      return true;
    }
  }
  return false;
}

void sigsys_chain(int sig, siginfo_t *si, void *ctx) {
  const uint64_t h = g.old_sigsys[0], flags = g.old_sigsys[1];
  if (h == uint64_t(SIG_IGN)) return;
  if (h == uint64_t(SIG_DFL)) {
    // Default action (core dump): restore it and re-raise (SA_NODEFER: it
    // is delivered at once, with the default action).
    uint64_t dfl[4] = {uint64_t(SIG_DFL), 0, 0, 0};
    raw(SYS_rt_sigaction, SIGSYS, uint64_t(dfl), 0, 8);
    raw(SYS_tgkill, uint64_t(raw(SYS_getpid)), uint64_t(raw(SYS_gettid)), SIGSYS);
    return;
  }
  if (flags & SA_SIGINFO)
    reinterpret_cast<void (*)(int, siginfo_t *, void *)>(h)(sig, si, ctx);
  else
    reinterpret_cast<void (*)(int)>(h)(sig);
}

// Runs with the selector as it was (block): its own system calls are raw
// ones from bh_tt_text, which dispatch always allows, and a signal handler
// that runs nested inside a hook still has its calls traced (SA_NODEFER
// lets SIGSYS nest).
void sigsys_handler(int sig, siginfo_t *si, void *ctx) {
  if (si->si_code != SYS_USER_DISPATCH) {
    sigsys_chain(sig, si, ctx);
    return;
  }
  auto *uc = static_cast<ucontext_t *>(ctx);
  greg_t *gr = uc->uc_mcontext.gregs;
  const uint64_t rip = uint64_t(gr[REG_RIP]);
  // A stub's own `syscall` that ran while the selector said block (a signal
  // handler's stub reset it): run it again, allowed, without the hooks.
  if (in_regions(rip - 2)) {
    gr[REG_RIP] = greg_t(rip - 2);
    bh_tt_sel = kSelAllow;
    return;  // the stub sets the selector back after its call
  }
  bh_tt_call_frame cf{};
  bh_tt_call &call = cf.call;
  call.nr = uint64_t(gr[REG_RAX]);
  call.args[0] = uint64_t(gr[REG_RDI]);
  call.args[1] = uint64_t(gr[REG_RSI]);
  call.args[2] = uint64_t(gr[REG_RDX]);
  call.args[3] = uint64_t(gr[REG_R10]);
  call.args[4] = uint64_t(gr[REG_R8]);
  call.args[5] = uint64_t(gr[REG_R9]);
  call.site = rip - 2;
  call.mechanism = BH_TT_MECH_SUD;
  const bh_tt_hooks *h = g_hooks.load(std::memory_order_acquire);
  void *user = g_user.load(std::memory_order_relaxed);
  const bool want = h && interested(call.nr);
  int64_t ret = -ENOSYS;
  if (want && h->enter(user, &call, &ret) == BH_TT_SKIP) {
    if (h->exit && exit_wanted(call.nr)) h->exit(user, &call, &ret);
    gr[REG_RAX] = greg_t(ret);
    return;
  }
  const uint64_t nr = call.nr;
  const uint64_t rsp = uint64_t(gr[REG_RSP]);
  if (nr == SYS_rt_sigreturn) {
    // Must run with the program's rsp: re-issue it from our text.
    gr[REG_RIP] = greg_t(bh_tt_page0_run_syscall);
    return;
  }
  if (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_vfork) {
    // Re-issued from our text after this handler returns, so the child
    // starts on its own (or the shared) stack, not in this handler; the
    // exit hook runs on the tail (tramp.S). Costs 8 bytes of red zone.
    const uint64_t word = bh_tt::word_make(rip, nr, BH_TT_MECH_SUD);
    if (shares_stack(nr, call.args)) {
      bh_tt_vfork_word = word;
      gr[REG_RIP] = greg_t(bh_tt_page0_vfork_syscall);
    } else {
      place_word(nr, call.args, rsp, word);
      gr[REG_RIP] = greg_t(bh_tt_page0_run_syscall);
    }
    return;
  }
  if (nr == SYS_rt_sigprocmask) {
    // The mask that matters is the one sigreturn restores.
    auto *mask = reinterpret_cast<uint64_t *>(&uc->uc_sigmask);
    const uint64_t cur = *mask;
    const uint64_t how = call.args[0], set = call.args[1], old = call.args[2];
    ret = 0;
    if (call.args[3] != 8) {
      ret = -EINVAL;
    } else {
      uint64_t nm = cur;
      if (set) {
        const uint64_t v = *reinterpret_cast<const uint64_t *>(set);
        if (how == SIG_BLOCK)
          nm = cur | v;
        else if (how == SIG_UNBLOCK)
          nm = cur & ~v;
        else if (how == SIG_SETMASK)
          nm = v;
        else
          ret = -EINVAL;
      }
      if (ret == 0) {
        nm &= ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)) | kSigsysBit);
        if (old) *reinterpret_cast<uint64_t *>(old) = cur;
        *mask = nm;
      }
    }
  } else if (!emulate(nr, call.args, &ret)) {
    ret = raw(nr, call.args[0], call.args[1], call.args[2], call.args[3], call.args[4], call.args[5]);
    child_started(nr, ret);
  }
  if (want && h->exit && exit_wanted(nr)) h->exit(user, &call, &ret);
  after_call(nr, call.args, ret);
  gr[REG_RAX] = greg_t(ret);
}

// Turning dispatch on or off in the other threads: each runs the prctl for
// itself (the selector is per thread) from this signal's handler.
inline int sud_signal() { return SIGRTMAX - 5; }
std::atomic<bool> g_sud_target{false};
void sud_signal_handler(int) {
  if (g_sud_target.load())
    sud_enable_self();
  else
    sud_disable_self();
  g_ack.fetch_add(1);
}

int broadcast_sud(bool on) {
  static bool handler_set = false;
  if (!handler_set) {
    struct sigaction sa {};
    sa.sa_handler = sud_signal_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sud_signal(), &sa, nullptr) != 0) return -errno;
    handler_set = true;
  }
  g_sud_target.store(on);
  const int64_t self = raw(SYS_gettid), pid = raw(SYS_getpid);
  DIR *d = opendir("/proc/self/task");
  if (!d) return -errno;
  uint32_t sent = 0;
  g_ack.store(0);
  while (dirent *e = readdir(d)) {
    const long tid = atol(e->d_name);
    if (tid <= 0 || tid == self) continue;
    if (raw(SYS_tgkill, uint64_t(pid), uint64_t(tid), uint64_t(sud_signal())) == 0) sent++;
  }
  closedir(d);
  const struct timespec ms { 0, 1000000 };
  for (int i = 0; i < 2000 && g_ack.load() < sent; i++) raw(SYS_nanosleep, uint64_t(&ms), 0);
  if (g_ack.load() < sent) logf(BH_TT_LOG_WARN, "syscall user dispatch: %u of %u threads answered", g_ack.load(), sent);
  return 0;
}

int sud_start(char *err, size_t len) {
  if (g_sud_on.load()) return 0;
  if (!g.sigsys_installed) {
    uint64_t sa[4] = {uint64_t(sigsys_handler), uint64_t(SA_SIGINFO | SA_NODEFER | 0x04000000 /* SA_RESTORER */),
                      uint64_t(bh_tt_restorer), 0};
    const int64_t rc = raw(SYS_rt_sigaction, SIGSYS, uint64_t(sa), uint64_t(g.old_sigsys), 8);
    if (rc < 0) {
      set_err(err, len, "rt_sigaction(SIGSYS) for syscall user dispatch: %s", strerror(int(-rc)));
      return int(rc);
    }
    g.sigsys_installed = true;
  }
  if (!sud_enable_self()) {
    set_err(err, len, "prctl(PR_SET_SYSCALL_USER_DISPATCH) failed: the kernel lacks syscall user dispatch");
    return -ENOSYS;
  }
  g_sud_on.store(true);
  refresh_simple();
  broadcast_sud(true);
  logf(BH_TT_LOG_INFO, "syscall user dispatch on");
  return 0;
}

void sud_stop() {
  if (!g_sud_on.load()) return;
  g_sud_on.store(false);
  refresh_simple();
  sud_disable_self();
  broadcast_sud(false);
  if (g.sigsys_installed) {
    raw(SYS_rt_sigaction, SIGSYS, uint64_t(g.old_sigsys), 0, 8);
    g.sigsys_installed = false;
  }
}

// ---- scanning -----------------------------------------------------------

struct Cand {
  uint64_t addr;
  int32_t nr;
  bool shape;
  uint8_t mov_len;
  uint64_t before[4];  // starts of the relocatable instructions right before it, nearest first (0: none)
  uint8_t next_len;    // the instruction after, if relocatable and of 2+ bytes
  uint64_t room;       // bytes readable from addr on (a jump must fit)
  Plan plans[6];
  uint8_t nplans;
};

// Not a branch, call, return, syscall or privileged instruction.
bool plain_category(const ZydisDecodedInstruction &in) {
  switch (in.meta.category) {
    case ZYDIS_CATEGORY_COND_BR:
    case ZYDIS_CATEGORY_UNCOND_BR:
    case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_RET:
    case ZYDIS_CATEGORY_SYSCALL:
    case ZYDIS_CATEGORY_INTERRUPT:
    case ZYDIS_CATEGORY_SYSTEM: return false;
    default: return in.mnemonic != ZYDIS_MNEMONIC_SYSCALL && in.mnemonic != ZYDIS_MNEMONIC_SYSENTER;
  }
}

// Runs the same at any address: no RIP-relative operand, no branch.
bool position_independent(const ZydisDecodedInstruction &in) {
  return !(in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && plain_category(in);
}

// A plain instruction whose one address dependence is a RIP-relative
// memory operand (modrm mod 00, rm 101: disp32 from the next instruction):
// relocated by fixing the disp32 (Emit::reloc).
bool rip_relative(const ZydisDecodedInstruction &in) {
  return (in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && (in.attributes & ZYDIS_ATTRIB_HAS_MODRM) &&
         in.raw.modrm.mod == 0 && in.raw.modrm.rm == 5 && in.raw.disp.size == 32 && !in.raw.imm[0].is_relative &&
         !in.raw.imm[1].is_relative && plain_category(in);
}

// jcc rel8 (7x) or rel32 (0f 8x) with no prefix: relocated as jcc rel32 to
// the same target (jrcxz/loop have no rel32 form and are not taken).
bool plain_jcc(const ZydisDecodedInstruction &in, const uint8_t *p) {
  if (in.meta.category != ZYDIS_CATEGORY_COND_BR || !in.raw.imm[0].is_relative) return false;
  return (in.length == 2 && p[0] >= 0x70 && p[0] <= 0x7f) ||
         (in.length == 6 && p[0] == 0x0f && p[1] >= 0x80 && p[1] <= 0x8f);
}

bool relocatable(const ZydisDecodedInstruction &in, const uint8_t *p) {
  return position_independent(in) || rip_relative(in) || plain_jcc(in, p);
}

const ZydisDecoder &decoder() {
  static const ZydisDecoder dec = [] {
    ZydisDecoder d;
    ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return d;
  }();
  return dec;
}

// Linear sweep of [lo, hi): on an undecodable byte, skip it and resync.
// Direct branch targets mark sites whose `syscall` can be reached with an
// unknown rax (not REL32, which only covers the mov before it), and
// instructions that a relocation must not cover except as its first.
void scan_range(uint64_t lo, uint64_t hi, std::vector<Cand> &out) {
  std::vector<uint64_t> targets;
  std::vector<Cand> found;
  const auto *base = reinterpret_cast<const uint8_t *>(lo);
  const size_t n = size_t(hi - lo);
  size_t off = 0, prev_off = SIZE_MAX;
  // The 4 instructions before (nearest first): start, or 0 if unknown or
  // not relocatable (a chain of relocatable ones ends at the first 0).
  uint64_t hist[4] = {};
  ZydisDecodedInstruction in;
  while (off < n) {
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder(), nullptr, base + off, n - off, &in))) {
      g.undecodable++;
      off++;
      prev_off = SIZE_MAX;
      memset(hist, 0, sizeof hist);
      continue;
    }
    if (in.mnemonic == ZYDIS_MNEMONIC_SYSCALL) {
      Cand c{};
      c.addr = lo + off;
      c.nr = -1;
      c.room = n - off;
      memcpy(c.before, hist, sizeof hist);
      // Or the instruction after (e.g. `cmp $-4095,%rax`): the jump then
      // replaces the `syscall`, and its last 3 bytes must equal the ones
      // after it (a call that was blocked returns there).
      ZydisDecodedInstruction nx;
      if (off + 2 < n &&
          ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder(), nullptr, base + off + 2, n - off - 2, &nx)) &&
          nx.length >= 2 && relocatable(nx, base + off + 2))
        c.next_len = nx.length;
      // mov $NR,%eax (b8 imm32) or mov $NR,%rax (48 c7 c0 imm32, as in
      // glibc's __restore_rt) right before it.
      uint8_t ml = 0;
      if (prev_off != SIZE_MAX && prev_off + 5 == off && base[prev_off] == 0xb8) ml = 5;
      if (prev_off != SIZE_MAX && prev_off + 7 == off && base[prev_off] == 0x48 && base[prev_off + 1] == 0xc7 &&
          base[prev_off + 2] == 0xc0)
        ml = 7;
      if (ml) {
        int32_t imm;
        memcpy(&imm, base + off - 4, 4);
        if (imm >= 0 && uint32_t(imm) < kMaxNr) {
          c.nr = imm;
          c.shape = true;
          c.mov_len = ml;
        }
      }
      found.push_back(c);
    }
    if (in.raw.imm[0].is_relative) targets.push_back(lo + off + in.length + uint64_t(in.raw.imm[0].value.s));
    memmove(hist + 1, hist, 3 * sizeof hist[0]);
    hist[0] = relocatable(in, base + off) ? lo + off : 0;
    prev_off = off;
    off += in.length;
  }
  std::sort(targets.begin(), targets.end());
  auto is_target = [&](uint64_t a) { return std::binary_search(targets.begin(), targets.end(), a); };
  for (Cand &c : found) {
    const bool syscall_target = is_target(c.addr);
    if (syscall_target) {
      c.shape = false;  // reachable with another rax: the number is not known
      c.nr = -1;
    }
    // Dynamic placements: the jump at the k-th instruction before the
    // `syscall` (k = 1..4), relocating all k. Every instruction start the
    // jump covers after its first (the inner ones, the `syscall`, the one
    // after) keeps its bytes; none before the `syscall` may be a branch
    // target (a branch there would run the original code untraced), nor
    // may the `syscall` itself.
    for (int k = 1; k <= 4 && !syscall_target; k++) {
      const uint64_t j = c.before[k - 1];
      if (!j || (k >= 2 && is_target(c.before[k - 2]))) break;
      const uint64_t reloc = c.addr - j, first = (k == 1 ? c.addr : c.before[k - 2]) - j;
      if (reloc > 24 || j + 5 > c.addr + c.room) break;
      if (first < 2) continue;  // a 1-byte first instruction: no window left
      const uint8_t pun = uint8_t(std::min<uint64_t>(first, 5));
      c.plans[c.nplans++] = Plan{uint8_t(reloc), pun, 0};
    }
    // A branch to the instruction after lands on bytes the jump keeps.
    if (c.next_len && c.room >= 5 && c.nplans < 6) c.plans[c.nplans++] = Plan{0, 2, c.next_len};
    // Widest window first (pun 5: anywhere within 2 GB; 4: 16 MiB; 3: 64 KiB;
    // 2: 256 bytes); among equals the nearer relocation (stable sort).
    std::stable_sort(c.plans, c.plans + c.nplans, [](const Plan &x, const Plan &y) { return x.pun_at > y.pun_at; });
    out.push_back(c);
  }
}

struct Map {
  uint64_t lo, hi;
  int prot;
  char name[256];
};

// Read with the raw syscall, not stdio: a rescan runs after a program's own
// mmap, and its open/read/close through libc's patched sites would reach the
// hooks as calls of the program (opensnoop would see them).
std::vector<Map> read_exec_maps() {
  std::vector<Map> out;
  const int64_t fd = raw(SYS_openat, uint64_t(AT_FDCWD), uint64_t("/proc/self/maps"), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  std::string text;
  char buf[4096];
  for (;;) {
    const int64_t n = raw(SYS_read, uint64_t(fd), uint64_t(buf), sizeof buf);
    if (n == -EINTR) continue;
    if (n <= 0) break;
    text.append(buf, size_t(n));
  }
  raw(SYS_close, uint64_t(fd));
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    Map m{};
    char perms[8] = {};
    int at = 0;
    if (sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %*s %n", &m.lo, &m.hi, perms, &at) < 3) continue;
    if (perms[0] != 'r' || perms[2] != 'x') continue;
    m.prot = PROT_READ | PROT_EXEC | (perms[1] == 'w' ? PROT_WRITE : 0);
    snprintf(m.name, sizeof m.name, "%s", line.c_str() + at);
    // One range per run of adjacent mappings of the same file and
    // protection: patching splits a text mapping (each write's mprotect),
    // and a linear sweep restarted at such a split loses its instruction
    // boundaries there (a later install would miss or misplace sites).
    if (!out.empty() && out.back().hi == m.lo && out.back().prot == m.prot && !strcmp(out.back().name, m.name) &&
        m.name[0] == '/') {
      out.back().hi = m.hi;
      continue;
    }
    out.push_back(m);
  }
  return out;
}

bool skip_mapping(const Map &m) {
  if (m.prot & PROT_WRITE) return true;  // JIT code being written: SUD's (see README)
  // Anonymous executable memory is JIT code (V8's): it may hold data a
  // linear sweep would misread, and it has no syscall sites of its own.
  if (m.name[0] != '/') return true;
  if (!strcmp(m.name, "[vdso]") || !strcmp(m.name, "[vsyscall]") || !strcmp(m.name, "[vvar]")) return true;
  if (m.lo == 0) return true;  // page 0: our slide
  return in_regions(m.lo);
}

// Adds the sites of [lo, hi) not known yet (our own text cut out).
bool pokeable(uint64_t at, size_t n);
void adopt_parked(Site &s);

void add_sites(uint64_t lo, uint64_t hi, int prot, const char *name) {
  uint32_t mod = 0;
  while (mod < g.module_names.size() && g.module_names[mod] != name) mod++;
  if (mod == g.module_names.size()) g.module_names.push_back(name);
  std::vector<Cand> cands;
  const uint64_t tb = uint64_t(bh_tt_text_begin), te = uint64_t(bh_tt_text_end);
  if (tb < hi && te > lo) {
    if (tb > lo) scan_range(lo, tb, cands);
    if (te < hi) scan_range(te, hi, cands);
  } else {
    scan_range(lo, hi, cands);
  }
  for (const Cand &c : cands) {
    if (!g.known.insert(c.addr).second) continue;
    Site s;
    s.addr = c.addr;
    s.nr = c.nr;
    // The mov's jump must not cross a cache line at a 2-byte boundary (no
    // atomic gate); if it would, a dynamic placement is tried instead (the
    // number stays known: nothing jumps between the mov and the `syscall`).
    s.rel32_shape = c.shape && pokeable(c.addr - c.mov_len, 5);
    s.mov_len = s.rel32_shape ? c.mov_len : 0;
    std::copy(c.plans, c.plans + c.nplans, s.plans);
    s.nplans = c.nplans;
    s.module = mod;
    s.prot = prot;
    adopt_parked(s);
    g.sites.push_back(s);
  }
}

// ---- patching -----------------------------------------------------------

// Writing to code other threads may run. Everything here makes its system
// calls with bh_tt_raw_syscall: while a gate is up (below), the patching
// thread must not run the site it patches, and any libc wrapper might be
// that site. (Hence no use of the hook engine's textpoke.cpp, whose system
// calls are inline `syscall`s that the scan finds and patches.)
bool g_cx16 = false, g_sync_core = false;

void poke_init() {
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) g_cx16 = (c & bit_CMPXCHG16B) != 0;
  g_sync_core = raw(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) == 0;
  if (!g_sync_core) raw(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
}

// Serialises instruction fetch on every CPU that runs this process.
void sync_cores() {
  raw(SYS_membarrier, g_sync_core ? MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE : MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0,
      0);
}

bool atomic_span(uint64_t at, size_t n) { return (at & 7) + n <= 8 || (g_cx16 && (at & 15) + n <= 16); }

// Whether poke() can write n bytes at `at` so that no thread sees them torn.
bool pokeable(uint64_t at, size_t n) {
  if (atomic_span(at, n)) return true;
  return (at & 63) != 63;  // gate (n >= 3) or one unaligned 16-bit store (n == 2)
}

// One store of n bytes within an aligned 8- or 16-byte block.
void store_atomic(uint64_t at, const uint8_t *src, size_t n) {
  if ((at & 7) + n <= 8) {
    auto *q = reinterpret_cast<uint64_t *>(at & ~uint64_t(7));
    uint64_t v = __atomic_load_n(q, __ATOMIC_RELAXED);
    memcpy(reinterpret_cast<uint8_t *>(&v) + (at & 7), src, n);
    __atomic_store_n(q, v, __ATOMIC_RELEASE);
    return;
  }
  auto *blk = reinterpret_cast<uint64_t *>(at & ~uint64_t(15));
  uint64_t old[2] = {__atomic_load_n(&blk[0], __ATOMIC_RELAXED), __atomic_load_n(&blk[1], __ATOMIC_RELAXED)};
  for (;;) {
    uint64_t nv[2] = {old[0], old[1]};
    memcpy(reinterpret_cast<uint8_t *>(nv) + (at & 15), src, n);
    bool ok;
    __asm__ volatile("lock cmpxchg16b %1"
                     : "=@ccz"(ok), "+m"(*reinterpret_cast<volatile __int128 *>(blk)), "+a"(old[0]), "+d"(old[1])
                     : "b"(nv[0]), "c"(nv[1])
                     : "memory");
    if (ok) return;
  }
}

void store2(uint64_t at, const uint8_t *src) {
  if (atomic_span(at, 2))
    store_atomic(at, src, 2);
  else  // unaligned, inside one cache line: still one atomic store on x86
    __atomic_store_n(reinterpret_cast<uint16_t *>(at), uint16_t(src[0] | (src[1] << 8)), __ATOMIC_RELEASE);
}

int poke(uint64_t at, const uint8_t *b, size_t n, int prot) {
  if (!pokeable(at, n)) return -EAGAIN;
  const uint64_t pg = at & ~uint64_t(4095), len = ((at + n + 4095) & ~uint64_t(4095)) - pg;
  // The pages stay executable throughout (RWX, then their own protection).
  int64_t rc = raw(SYS_mprotect, pg, len, PROT_READ | PROT_WRITE | PROT_EXEC);
  if (rc < 0) return int(rc);
  if (atomic_span(at, n)) {
    store_atomic(at, b, n);
  } else if (n == 2) {
    store2(at, b);
  } else {
    // The gate: `jmp $` over the first two bytes, then the rest, then the
    // first two. Safe without pausing threads: the bytes replaced are one
    // instruction (a thread is at its start or not in it), and a thread
    // that arrives meanwhile spins until the patch is whole.
    static const uint8_t spin[2] = {0xeb, 0xfe};
    store2(at, spin);
    sync_cores();
    for (size_t k = 2; k < n; k++) reinterpret_cast<volatile uint8_t *>(at)[k] = b[k];
    sync_cores();
    store2(at, b);
  }
  rc = raw(SYS_mprotect, pg, len, uint64_t(prot));
  sync_cores();
  return rc < 0 ? int(rc) : 0;
}

void put32(uint8_t *p, int32_t v) { memcpy(p, &v, 4); }

// Machine code for stubs, into a local buffer that is then copied to `at`.
struct Emit {
  uint8_t b[kDynStubSize];
  size_t i = 0;
  uint64_t at;
  explicit Emit(uint64_t a) : at(a) { memset(b, 0xcc, sizeof b); }
  void bytes(const void *p, size_t n) {
    memcpy(b + i, p, n);
    i += n;
  }
  void lea_down() {  // lea -128(%rsp),%rsp: step over the red zone
    const uint8_t x[] = {0x48, 0x8d, 0x64, 0x24, 0x80};
    bytes(x, 5);
  }
  void lea_up() {  // lea 136(%rsp),%rsp: red zone and the pushed info
    const uint8_t x[] = {0x48, 0x8d, 0xa4, 0x24, 0x88, 0, 0, 0};
    bytes(x, 8);
  }
  void push_lit(size_t lit) {  // push lit(%rip)
    b[i] = 0xff, b[i + 1] = 0x35;
    put32(b + i + 2, int32_t(int64_t(lit) - int64_t(i + 6)));
    i += 6;
  }
  void call_lit(size_t lit) {  // call *lit(%rip)
    b[i] = 0xff, b[i + 1] = 0x15;
    put32(b + i + 2, int32_t(int64_t(lit) - int64_t(i + 6)));
    i += 6;
  }
  void sel(uint8_t v) {  // movb $v, %fs:off (the SUD selector)
    const uint8_t x[] = {0x64, 0xc6, 0x04, 0x25};
    bytes(x, 4);
    put32(b + i, g_sel_off);
    b[i + 4] = v;
    i += 5;
  }
  void syscall_insn() { b[i++] = 0x0f, b[i++] = 0x05; }
  void mov_eax(int32_t nr) {
    b[i++] = 0xb8;
    put32(b + i, nr);
    i += 4;
  }
  void jmp(uint64_t to) {
    b[i] = 0xe9;
    put32(b + i + 1, int32_t(int64_t(to) - int64_t(at + i + 5)));
    i += 5;
  }
  // Copies the instructions [src, src + len) here, fixing what depends on
  // their address: a RIP-relative operand's disp32 (same target), a jcc
  // (re-encoded as jcc rel32 to the same target). Clears `ok` if a
  // displacement does not fit (the stub is then not used).
  bool ok = true;
  void reloc(uint64_t src, size_t len) {
    size_t off = 0;
    while (off < len && ok) {
      ZydisDecodedInstruction in;
      const auto *p = reinterpret_cast<const uint8_t *>(src + off);
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder(), nullptr, p, len - off, &in)) ||
          i + in.length + 4 > sizeof b) {
        ok = false;
        break;
      }
      const uint64_t next = src + off + in.length, here = at + i;
      if (plain_jcc(in, p)) {
        const int64_t rel = int64_t(next + uint64_t(in.raw.imm[0].value.s)) - int64_t(here + 6);
        b[i] = 0x0f, b[i + 1] = uint8_t(0x80 | ((in.length == 2 ? p[0] : p[1]) & 0x0f));
        put32(b + i + 2, int32_t(rel));
        i += 6;
        ok = rel == int32_t(rel);
      } else if (rip_relative(in)) {
        const int64_t rel = int64_t(next + uint64_t(in.raw.disp.value)) - int64_t(here + in.length);
        bytes(p, in.length);
        put32(b + i - in.length + in.raw.disp.offset, int32_t(rel));
        ok = rel == int32_t(rel);
      } else {
        bytes(p, in.length);
      }
      off += in.length;
    }
  }
  // The instruction after the `syscall`, when it was relocated, before
  // each jump back.
  uint64_t tail = 0;
  size_t tail_len = 0;
  void back_to(uint64_t back) {
    if (tail_len) reloc(tail, tail_len);
    jmp(back);
  }
  // After enter returned RUN, when nothing needs the exit path.
  void run_noexit(bool toggle, uint64_t back) {
    lea_up();
    if (toggle) sel(kSelAllow);
    syscall_insn();
    if (toggle) sel(kSelBlock);
    back_to(back);
  }
  // After enter returned RUN: the call with the program's rsp, then exit
  // with `lit` (which names this path) and back to the program.
  void run_path(bool toggle, size_t lit_info, size_t lit_exit, uint64_t back) {
    lea_up();
    if (toggle) sel(kSelAllow);
    syscall_insn();
    if (toggle) sel(kSelBlock);
    lea_down();
    push_lit(lit_info);
    call_lit(lit_exit);
    lea_up();
    back_to(back);
  }
};

// Memory for stubs whose start must lie in [lo, hi] (a punned jump, see
// make_dyn_stub); regions of 64 KiB, never unmapped, blocks placed anywhere
// free in them (windows can be as small as 256 bytes).
uint8_t *alloc_window(uint64_t lo, uint64_t hi, size_t size) {
  auto fits = [&](const PunRegion &r, uint64_t p) {
    if (p < uint64_t(r.base) || p + size > uint64_t(r.base) + r.size) return false;
    for (const auto &blk : r.blocks)
      if (p < blk.second && blk.first < p + size) return false;
    return true;
  };
  for (PunRegion &r : g.pun) {
    uint64_t p = std::max((lo + 15) & ~uint64_t(15), (uint64_t(r.base) + 15) & ~uint64_t(15));
    for (; p <= hi && p < uint64_t(r.base) + r.size; p += 16)
      if (fits(r, p)) {
        r.blocks.emplace_back(p, p + size);
        return reinterpret_cast<uint8_t *>(p);
      }
  }
  int tries = 0;
  for (uint64_t a = lo & ~uint64_t(4095); a <= hi && a < 0x7ffffffe0000ull && tries < 64; a += 4096, tries++) {
    if (a < 0x10000) continue;
    // A whole region, else one page (the window may end just below another
    // mapping).
    for (const size_t rsize : {size_t(bh::kRegionSize), size_t(4096)}) {
      void *m = mmap(reinterpret_cast<void *>(a), rsize, PROT_READ | PROT_EXEC,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (m == MAP_FAILED) continue;
      if (uint64_t(m) != a) {
        munmap(m, rsize);
        continue;
      }
      g.pun.push_back(PunRegion{static_cast<uint8_t *>(m), rsize, {}});
      return alloc_window(lo, hi, size);
    }
  }
  return nullptr;
}

// The static REL32 stub (number known at the site): relocated mov, enter,
// the call with the program's rsp, exit, jump back past the `syscall`; at
// kBareAt the same call with no hooks.
bool make_static_stub(Site &s, bool toggle) {
  uint8_t *stub = g.arena.alloc(kStubSize, s.addr, bh::kNearDist);
  if (!stub) return false;
  Emit e{reinterpret_cast<uint64_t>(stub)};
  const size_t lit = 144;  // info, enter, exit
  e.mov_eax(s.nr);
  e.lea_down();
  e.push_lit(lit);
  e.call_lit(lit + 8);
  const size_t noexit = e.i;
  e.run_noexit(toggle, s.addr + 2);
  const size_t with_exit = e.i;
  e.run_path(toggle, lit, lit + 16, s.addr + 2);
  const size_t skip = e.i;
  e.lea_up();
  e.jmp(s.addr + 2);
  if (e.i > lit) abort();
  e.i = kBareAt;
  e.mov_eax(s.nr);
  if (toggle) e.sel(kSelAllow);
  e.syscall_insn();
  if (toggle) e.sel(kSelBlock);
  e.jmp(s.addr + 2);
  if (e.i > kStubSize) abort();
  const uint64_t lits[3] = {uint64_t(&s) | kStatic, uint64_t(bh_tt_enter_asm), uint64_t(bh_tt_exit_asm)};
  memcpy(e.b + lit, lits, sizeof lits);
  if (g.arena.write(stub, e.b, kStubSize) != 0) {
    g.arena.free(stub, kStubSize);
    return false;
  }
  s.stub = stub;
  s.stub_skip = uint64_t(stub) + skip;
  s.run_noexit = uint64_t(stub) + noexit;
  s.run_exit = uint64_t(stub) + with_exit;
  return true;
}

// The dynamic stub (number only in rax): the relocated instruction before
// the `syscall`, enter (which pushes the number on the thread's ring, or
// sends clone / clone3 / vfork to paths that know theirs), the call, exit.
// Where the 5-byte jump that replaces them reaches over an instruction
// start (the `syscall` after a 3- or 4-byte instruction, or the second of
// two), the stub is placed so that the jump's last bytes equal the bytes
// already there (the displacement ends in 0f 05, 0f, 31, ...): a thread that
// is about to run that instruction, or whose call restarts, runs the
// original code (untraced, but right).
bool make_dyn_stub(Site &s, bool toggle) {
  const uint64_t at = s.patch_at();
  uint8_t *stub;
  if (s.pun_at < 5) {
    const auto *o = reinterpret_cast<const uint8_t *>(at);
    uint32_t fixed = 0;
    for (unsigned k = s.pun_at; k < 5; k++) fixed |= uint32_t(o[k]) << (8 * (k - 1));
    const int64_t rel_lo = int32_t(fixed), span = int64_t(1) << (8 * (s.pun_at - 1));
    const int64_t lo = int64_t(at) + 5 + rel_lo;
    if (lo <= 0x10000) return false;
    // A 256-byte window holds no more than a hop (below): neighbouring
    // sites with the same bytes after the jump share it.
    stub = s.pun_at > 2 ? alloc_window(uint64_t(lo), uint64_t(lo + span - 1), kDynStubSize) : nullptr;
    if (!stub) {
      // No room for the whole stub: a hop, one `jmp rel32` to a stub
      // placed anywhere near (one more direct jump, ~1 ns).
      uint8_t *hop = alloc_window(uint64_t(lo), uint64_t(lo + span - 1), 16);
      if (!hop) return false;
      stub = g.arena.alloc(kDynStubSize, s.addr, bh::kNearDist);
      if (!stub) return false;
      Emit h{uint64_t(hop)};
      h.jmp(uint64_t(stub));
      const int64_t d = int64_t(stub) - int64_t(uint64_t(hop) + 5);
      if (d != int32_t(d) || g.arena.write(hop, h.b, 16) != 0) {
        g.arena.free(stub, kDynStubSize);
        return false;
      }
      s.entry = hop;
    }
  } else {
    stub = g.arena.alloc(kDynStubSize, s.addr, bh::kNearDist);
  }
  if (!stub) return false;
  Emit e{reinterpret_cast<uint64_t>(stub)};
  const size_t lit = 448;  // generic, clone, clone3, vfork, enter, exit
  const uint64_t back = s.addr + 2 + s.next_len;
  e.reloc(at, s.reloc_len);
  e.tail = s.addr + 2;
  e.tail_len = s.next_len;
  e.lea_down();
  e.push_lit(lit);
  e.call_lit(lit + 32);
  const size_t noexit = e.i;
  e.run_noexit(toggle, back);
  const size_t with_exit = e.i;
  e.run_path(toggle, lit, lit + 40, back);
  const size_t clone = e.i;
  e.run_path(toggle, lit + 8, lit + 40, back);
  const size_t clone3 = e.i;
  e.run_path(toggle, lit + 16, lit + 40, back);
  const size_t vfork = e.i;
  e.run_path(toggle, lit + 24, lit + 40, back);
  const size_t skip = e.i;
  e.lea_up();
  e.back_to(back);
  if (e.i > lit || !e.ok) {  // (the window's memory stays: rare)
    if (s.pun_at >= 5 || s.entry) g.arena.free(stub, kDynStubSize);
    s.entry = nullptr;
    return false;
  }
  const uint64_t lits[6] = {uint64_t(&s) | kDynGeneric, uint64_t(&s) | kDynClone,  uint64_t(&s) | kDynClone3,
                            uint64_t(&s) | kDynVfork,   uint64_t(bh_tt_enter_asm), uint64_t(bh_tt_exit_asm)};
  memcpy(e.b + lit, lits, sizeof lits);
  if (g.arena.write(stub, e.b, kDynStubSize) != 0) {  // its memory stays (rare)
    s.entry = nullptr;
    return false;
  }
  s.stub = stub;
  s.stub_skip = uint64_t(stub) + skip;
  s.dyn_clone = uint64_t(stub) + clone;
  s.dyn_clone3 = uint64_t(stub) + clone3;
  s.dyn_vfork = uint64_t(stub) + vfork;
  s.run_noexit = uint64_t(stub) + noexit;
  s.run_exit = uint64_t(stub) + with_exit;
  return true;
}

bool make_stub(Site &s, bool toggle) {
  if (s.stub) return true;
  const bool ok = s.mov_len ? make_static_stub(s, toggle) : make_dyn_stub(s, toggle);
  if (ok) {
    const uint64_t from = s.patch_at(), to = s.addr + 2 + s.next_len;
    s.code_len = to - from <= sizeof s.code ? uint8_t(to - from) : 0;  // 0: never reused
    memcpy(s.code, reinterpret_cast<const void *>(from), s.code_len);
    s.stub_toggle = toggle;
    sync_regions();
  }
  return ok;
}

// A site found again by a later install: the stub of its earlier install
// (still mapped, as is the Site its literals point at) serves it again if
// the code there is the code the stub was made from, byte for byte. Its
// window (a punned jump's) is taken by that very stub, so a new one could
// not be placed; and no stub memory is spent twice. Only the stub's fields
// are copied: they are what the trampolines read, through the parked Site.
void adopt_parked(Site &s) {
  const auto it = g.parked.find(s.addr);
  if (it == g.parked.end()) return;
  const Site &p = *it->second;
  if (p.code_len == 0 || memcmp(p.code, reinterpret_cast<const void *>(p.patch_at()), p.code_len) != 0) return;
  s.nr = p.nr;
  s.rel32_shape = p.rel32_shape;
  s.mov_len = p.mov_len;
  s.reloc_len = p.reloc_len;
  s.pun_at = p.pun_at;
  s.next_len = p.next_len;
  s.entry = p.entry;
  s.stub = p.stub;
  s.stub_skip = p.stub_skip;
  s.dyn_clone = p.dyn_clone, s.dyn_clone3 = p.dyn_clone3, s.dyn_vfork = p.dyn_vfork;
  s.run_noexit = p.run_noexit, s.run_exit = p.run_exit;
  memcpy(s.code, p.code, sizeof s.code);
  s.code_len = p.code_len;
  s.stub_toggle = p.stub_toggle;
}

// The first 5 bytes become `jmp rel32`. After a 7-byte mov, or a relocated
// instruction of 6+ bytes, the rest stays, never executed (no branch lands
// inside it); after a 3- or 4-byte one the jump's last bytes are the
// `syscall`'s own (make_dyn_stub).
int patch_rel32(Site &s, bool bare) {
  const uint64_t at = s.patch_at();
  if (s.mech != BH_TT_MECH_REL32) memcpy(s.orig, reinterpret_cast<const void *>(at), 5);
  uint8_t j[5] = {0xe9};
  const uint64_t to = bare ? uint64_t(s.stub) + kBareAt : s.entry ? uint64_t(s.entry) : uint64_t(s.stub);
  put32(j + 1, int32_t(int64_t(to) - int64_t(at + 5)));
  // Bytes of the patch from an inner instruction start on must not change.
  for (unsigned k = s.pun_at; k < 5; k++)
    if (j[k] != s.orig[k]) return -EINVAL;
  const int rc = poke(at, j, 5, s.prot);
  if (rc == 0) s.bare = bare;
  return rc;
}
int patch_page0(Site &s) {
  memcpy(s.orig, reinterpret_cast<const void *>(s.addr), 2);
  const uint8_t c[2] = {0xff, 0xd0};  // call *%rax
  return poke(s.addr, c, 2, s.prot);
}
int unpatch(Site &s) {
  int rc = 0;
  if (s.mech == BH_TT_MECH_REL32) rc = poke(s.patch_at(), s.orig, 5, s.prot);
  if (s.mech == BH_TT_MECH_PAGE0) rc = poke(s.addr, s.orig, 2, s.prot);
  if (rc == 0) s.mech = BH_TT_MECH_NONE;
  return rc;
}

// Makes the stub and writes the jump: the static placement, else each
// dynamic one in turn (a window taken, a jump across a cache line, a
// displacement out of range: the next). A site none fits is marked and not
// retried (PAGE0 or SUD).
bool place_rel32(Site &s, bool bare, bool toggle) {
  if (s.stub) return patch_rel32(s, bare && s.mov_len) == 0;
  if (s.rel32_shape) {
    if (make_stub(s, toggle) && patch_rel32(s, bare) == 0) return true;
    s.stub = nullptr;
    s.rel32_shape = false;
    s.mov_len = 0;
    s.fail = "no stub memory near it";
  }
  for (uint8_t k = 0; k < s.nplans; k++) {
    s.reloc_len = s.plans[k].reloc_len;
    s.pun_at = s.plans[k].pun_at;
    s.next_len = s.plans[k].next_len;
    if (!pokeable(s.patch_at(), 5)) {
      s.fail = "the jump would cross a cache line at a 2-byte boundary";
      continue;
    }
    if (!make_stub(s, toggle)) {
      s.fail = s.pun_at < 5 ? "no stub memory in its window" : "no stub memory near it, or a displacement out of range";
      continue;
    }
    if (patch_rel32(s, false) == 0) return true;
    s.fail = "patch refused";
    s.stub = nullptr;
    s.entry = nullptr;
  }
  s.reloc_len = 0;
  s.next_len = 0;
  s.pun_at = 5;
  s.rel32_failed = true;
  return false;
}

// What the site should be now. `sud`: dispatch is (or will be) on, so a
// site left as it is would trap.
uint32_t choose(const Site &s, bool sud, bool *bare) {
  *bare = false;
  if (g.allowed == BH_TT_MECH_SUD) return BH_TT_MECH_SUD;
  const bool rel32 = (g.allowed & BH_TT_MECH_REL32) && !s.rel32_failed && (s.rel32_shape || s.nplans);
  if (s.nr >= 0 && !wanted_at_site(s.nr)) {
    // Left as it is unless dispatch is on (it would trap): then the static
    // stub's bare path, or the whole dynamic stub (enter filters by number).
    if (!sud || !rel32) return BH_TT_MECH_NONE;
    *bare = s.rel32_shape;
    return BH_TT_MECH_REL32;
  }
  if (rel32) return BH_TT_MECH_REL32;
  if (g.page0 && pokeable(s.addr, 2)) return BH_TT_MECH_PAGE0;
  if (g.allowed & BH_TT_MECH_SUD) return BH_TT_MECH_SUD;
  return BH_TT_MECH_NONE;
}

// Brings every site to its choice; turns SUD on if a site needs it.
int apply(char *err, size_t len) {
  bool need_sud = false, bare;
  for (const Site &s : g.sites)
    if (choose(s, false, &bare) == BH_TT_MECH_SUD) need_sud = true;
  const bool toggle = (g.allowed & BH_TT_MECH_SUD) != 0;
  for (Site &s : g.sites) {
    uint32_t want = choose(s, need_sud, &bare);
    if (want == s.mech && (want != BH_TT_MECH_REL32 || bare == s.bare)) continue;
    if (want == BH_TT_MECH_REL32 && s.mech == BH_TT_MECH_REL32) {
      if (patch_rel32(s, bare) < 0) logf(BH_TT_LOG_WARN, "site %#" PRIx64 ": retargeting failed", s.addr);
      continue;
    }
    if (s.mech == BH_TT_MECH_REL32 || s.mech == BH_TT_MECH_PAGE0) {
      const int rc = unpatch(s);
      if (rc < 0) {
        logf(BH_TT_LOG_WARN, "site %#" PRIx64 ": restoring its bytes failed (%s)", s.addr, strerror(-rc));
        continue;
      }
    }
    s.mech = BH_TT_MECH_NONE;
    if (want == BH_TT_MECH_REL32) {
      if (place_rel32(s, bare, toggle)) {
        s.mech = BH_TT_MECH_REL32;
        continue;
      }
      logf(BH_TT_LOG_DEBUG, "site %#" PRIx64 ": no REL32 placement (%s)", s.addr, s.fail);
      want = g.page0 ? BH_TT_MECH_PAGE0 : (g.allowed & BH_TT_MECH_SUD) ? BH_TT_MECH_SUD : BH_TT_MECH_NONE;
    }
    if (want == BH_TT_MECH_PAGE0) {
      if (patch_page0(s) == 0) {
        s.mech = BH_TT_MECH_PAGE0;
        continue;
      }
      want = (g.allowed & BH_TT_MECH_SUD) ? BH_TT_MECH_SUD : BH_TT_MECH_NONE;
    }
    if (want == BH_TT_MECH_SUD) {
      s.mech = BH_TT_MECH_SUD;
      need_sud = true;
    }
  }
  if (need_sud) return sud_start(err, len);
  return 0;
}

// Debug: each wanted site no rewrite covers (SUD, or PAGE0 as a fallback),
// with its bytes and why, to see which shapes REL32 still misses.
void log_unpatched() {
  if (!(g.allowed & BH_TT_MECH_REL32)) return;  // SUD or PAGE0 forced: every site is
  for (const Site &s : g.sites) {
    if (s.mech != BH_TT_MECH_SUD && !(s.mech == BH_TT_MECH_PAGE0 && (g.allowed & BH_TT_MECH_REL32))) continue;
    const char *why = s.fail ? s.fail : "no relocatable neighbour";
    char hex[3 * 32 + 1] = "";
    const auto *b = reinterpret_cast<const uint8_t *>(s.addr - 16);
    for (int k = 0; k < 32; k++) snprintf(hex + 3 * k, 4, "%02x%s", b[k], k == 15 ? "|" : " ");
    Dl_info di{};
    const uint64_t off = dladdr(reinterpret_cast<void *>(s.addr), &di) ? s.addr - uint64_t(di.dli_fbase) : 0;
    logf(BH_TT_LOG_DEBUG, "site %#" PRIx64 " (%s+%#" PRIx64 ") left to %s: %s; bytes -16..+16: %s", s.addr,
         g.module_names[s.module].c_str(), off, s.mech == BH_TT_MECH_SUD ? "sud" : "page0", why, hex);
  }
}

void scan_locked(uint64_t lo, uint64_t hi) {
  for (const Map &m : read_exec_maps()) {
    const uint64_t a = std::max(lo, m.lo), b = std::min(hi, m.hi);
    if (a >= b || skip_mapping(m)) continue;
    add_sites(a, b, m.prot, m.name);
  }
}

void drain_pending() {
  uint32_t n;
  while ((n = g_npend.load()) != 0) {
    const uint32_t k = std::min<uint32_t>(n, kMaxPending);
    for (uint32_t i = 0; i < k; i++) scan_locked(g_pend_lo[i].load(), g_pend_hi[i].load());
    g_npend.fetch_sub(n);
  }
}

void scan_new_code(uint64_t lo, uint64_t hi) {
  std::unique_lock<std::mutex> lk(g.mu, std::try_to_lock);
  if (!lk.owns_lock()) {
    const uint32_t i = g_npend.fetch_add(1);
    if (i < kMaxPending) {
      g_pend_lo[i].store(lo);
      g_pend_hi[i].store(hi);
    }
    return;
  }
  if (!g.installed) return;
  scan_locked(lo, hi);
  drain_pending();
  apply(nullptr, 0);
}

int map_page0() {
  void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  // mmap(NULL, MAP_FIXED) maps at 0 where allowed (CAP_SYS_RAWIO or
  // vm.mmap_min_addr 0); elsewhere it fails with EPERM.
  if (p == MAP_FAILED) return -errno;
  if (p != nullptr) {
    munmap(p, 4096);
    return -EPERM;
  }
  // Address 0 is a valid address here; hide it from the optimizer, which
  // would treat stores through a null pointer as unreachable.
  uint8_t *b = static_cast<uint8_t *>(p);
  __asm__("" : "+r"(b));
  // The jump slide: at an even offset `eb 48` (jmp +72), at an odd one
  // `48 eb 48` (rex.w jmp +72): every entry point jumps ~74 bytes forward.
  // Offsets 436..511 are nops; 512 is `jmp *` to bh_tt_page0_entry. A
  // number >= 512 lands on int3 (SIGTRAP) instead of a syscall.
  const size_t pat = 436, end = 512;
  for (size_t k = 0; k < pat; k++) b[k] = (k % 2 == 0) ? 0xeb : 0x48;
  for (size_t k = pat; k < end; k++) b[k] = 0x90;
  b[end] = 0xff, b[end + 1] = 0x25;
  put32(b + end + 2, 0);
  const uint64_t target = uint64_t(bh_tt_page0_entry);
  memcpy(b + end + 6, &target, 8);
  for (size_t k = end + 14; k < 4096; k++) b[k] = 0xcc;
  mprotect(b, 4096, PROT_READ | PROT_EXEC);
  return 0;
}

}  // namespace

// ---- the trampolines' C side ---------------------------------------------

extern "C" __attribute__((visibility("hidden"))) void bh_tt_c_enter(Frame *f) {
  // nr and args are the registers tramp.S pushed; rax is replaced (below)
  // only once the hooks are done with the call.
  bh_tt_call &call = f->cf.call;
  uint64_t ret_addr = 0;
  const Site *s = nullptr;
  if (f->info == bh_tt::kTagPage0) {
    ret_addr = *reinterpret_cast<uint64_t *>(bh_tt::frame_orig_rsp(f) - 8);
    call.site = ret_addr - 2;
    call.mechanism = BH_TT_MECH_PAGE0;
  } else {
    s = info_site(f->info);
    call.site = s->addr;
    call.mechanism = BH_TT_MECH_REL32;
  }
  call.reserved = 0;
  const bh_tt_hooks *h = g_hooks.load(std::memory_order_acquire);
  const bool want = h && interested(call.nr);
  int64_t ret = -ENOSYS;
  bool done = want && h->enter(g_user.load(std::memory_order_relaxed), &call, &ret) == BH_TT_SKIP;
  if (!done && emulate(call.nr, call.args, &ret)) done = true;
  if (done) {
    if (want && h->exit && exit_wanted(call.nr)) h->exit(g_user.load(std::memory_order_relaxed), &call, &ret);
    bh_tt::frame_rax(f) = uint64_t(ret);
    if (s) {
      f->ret = s->stub_skip;
    } else {
      f->rcx = ret_addr;
      f->ret = uint64_t(bh_tt_page0_skip);
    }
    return;
  }
  if (s) {
    // Exit is needed by the hooks, or by us: new code to scan after mmap /
    // mprotect, dispatch to turn on in a new task.
    const uint64_t nr = call.nr;
    const bool need_exit = (want && h->exit && exit_wanted(nr)) ||
                           (g_watch.load(std::memory_order_relaxed) && nr == SYS_mmap) ||
                           (g_sud_on.load(std::memory_order_relaxed) &&
                            (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork));
    // Without exit the call returns where it was called from (run_noexit).
    if (need_exit && info_path(f->info) == kDynGeneric) {
      // Calls that create a task leave by a path that knows its number; the
      // rest keep theirs on the thread's ring until exit.
      if (nr == SYS_clone) {
        f->ret = s->dyn_clone;
      } else if (nr == SYS_clone3) {
        f->ret = s->dyn_clone3;
      } else if (nr == SYS_vfork) {
        f->ret = s->dyn_vfork;
      } else {
        if (nr != SYS_rt_sigreturn && nr != SYS_exit && nr != SYS_exit_group)
          bh_tt_nr_ring[bh_tt_nr_depth++ & 31] = uint16_t(nr);
        f->ret = s->run_exit;
      }
    } else if (need_exit) {
      f->ret = s->run_exit;
    }
  } else {
    const uint64_t word = bh_tt::word_make(ret_addr, call.nr, BH_TT_MECH_PAGE0);
    if (shares_stack(call.nr, call.args)) {
      bh_tt_vfork_word = word;
      f->ret = uint64_t(bh_tt_page0_vfork);
    } else {
      place_word(call.nr, call.args, bh_tt::frame_orig_rsp(f), word);
      f->rcx = 1;  // not 0: bh_tt_page0_entry then takes the path with exit (tramp.S)
    }
  }
}

extern "C" __attribute__((visibility("hidden"))) void bh_tt_c_exit(Frame *f) {
  // The frame's rax slot holds the result: the call's nr goes there while
  // the hook runs, the (possibly replaced) result after. The argument
  // registers are as they were at the call (the kernel keeps them).
  bh_tt_call &call = f->cf.call;
  int64_t ret = int64_t(bh_tt::frame_rax(f));
  if (f->info == bh_tt::kTagWord || f->info == bh_tt::kTagVfork) {
    const uint64_t w =
        f->info == bh_tt::kTagVfork ? bh_tt_vfork_word : *reinterpret_cast<uint64_t *>(bh_tt::frame_orig_rsp(f) - 8);
    call.nr = bh_tt::word_nr(w);
    call.mechanism = bh_tt::word_mech(w);
    call.site = bh_tt::word_ret(w) - 2;
    f->rcx = bh_tt::word_ret(w);
  } else {
    const Site *s = info_site(f->info);
    switch (info_path(f->info)) {
      case kStatic: call.nr = uint64_t(s->nr); break;
      case kDynGeneric: call.nr = bh_tt_nr_ring[--bh_tt_nr_depth & 31]; break;
      case kDynClone: call.nr = SYS_clone; break;
      case kDynClone3: call.nr = SYS_clone3; break;
      case kDynVfork: call.nr = SYS_vfork; break;
      default: call.nr = 0; break;
    }
    call.site = s->addr;
    call.mechanism = BH_TT_MECH_REL32;
  }
  call.reserved = 0;
  const uint64_t nr = call.nr;
  child_started(nr, ret);
  const bh_tt_hooks *h = g_hooks.load(std::memory_order_acquire);
  if (h && h->exit && exit_wanted(nr)) h->exit(g_user.load(std::memory_order_relaxed), &call, &ret);
  after_call(nr, call.args, ret);
  bh_tt::frame_rax(f) = uint64_t(ret);
}

// ---- the C API ------------------------------------------------------------

extern "C" {

int bh_tt_install(const struct bh_tt_opts *opts, const struct bh_tt_hooks *hooks, void *user, char *err,
                  size_t err_len) {
  if (!hooks || hooks->sz < offsetof(bh_tt_hooks, flags) || !hooks->enter) {
    set_err(err, err_len, "bh_tt_install: hooks missing, or hooks->sz/enter not set");
    return -EINVAL;
  }
  bh_tt::vec_init();  // the scan of new code keeps the AVX state (after_call)
  std::lock_guard<std::mutex> lk(g.mu);
  if (g.installed) {
    set_err(err, err_len, "bh_tt_install: the transformer is already installed in this process");
    return -EALREADY;
  }
  const uint32_t all = BH_TT_MECH_REL32 | BH_TT_MECH_PAGE0 | BH_TT_MECH_SUD;
  const uint32_t mechs = opts && opts->mechanisms ? opts->mechanisms : all;
  if (mechs & ~all) {
    set_err(err, err_len, "bh_tt_install: unknown mechanism bits %#x", mechs & ~all);
    return -EINVAL;
  }
  g.log = opts ? opts->log : nullptr;
  g.log_ctx = opts ? opts->log_ctx : nullptr;
  g.watch = opts && opts->watch_new_code;
  g.allowed = mechs;
  poke_init();
  uint64_t tp;
  __asm__("mov %%fs:0, %0" : "=r"(tp));
  g_sel_off = int32_t(int64_t(uint64_t(&bh_tt_sel)) - int64_t(tp));
  // Page 0 only helps where REL32 cannot patch (or when it is forced).
  g.page0 = false;
  if (mechs & BH_TT_MECH_PAGE0) {
    const int rc = map_page0();
    if (rc == 0) {
      g.page0 = true;
    } else if (mechs == BH_TT_MECH_PAGE0) {
      set_err(err, err_len, "bh_tt_install: page 0 cannot be mapped (%s; needs root or vm.mmap_min_addr=0)",
              strerror(-rc));
      return rc;
    }
  }
  if (mechs == BH_TT_MECH_PAGE0) g.allowed = BH_TT_MECH_PAGE0;
  g.hooks = bh_tt_hooks{};
  memcpy(&g.hooks, hooks, std::min(hooks->sz, sizeof g.hooks));
  g.hooks.sz = sizeof g.hooks;
  g.user = user;
  g_user.store(user);
  g_hooks.store(&g.hooks, std::memory_order_release);
  g_watch.store(g.watch);
  refresh_simple();
  g.undecodable = 0;  // this install's scan (the stats are of the install)
  for (const Map &m : read_exec_maps()) {
    if (skip_mapping(m)) continue;
    add_sites(m.lo, m.hi, m.prot, m.name);
  }
  g.installed = true;
  const int rc = apply(err, err_len);
  if (rc < 0) {
    for (Site &s : g.sites) unpatch(s);
    g_hooks.store(nullptr);
    refresh_simple();
    g.installed = false;
    return rc;
  }
  logf(BH_TT_LOG_INFO, "installed: %zu sites", g.sites.size());
  if (g.log) {
    log_unpatched();
    for (uint32_t mod = 0; mod < g.module_names.size(); mod++) {
      uint64_t n[5] = {};    // found, rel32, page0, sud, untouched
      uint64_t how[3] = {};  // REL32: static, relocated, of which through a hop
      for (const Site &s : g.sites) {
        if (s.module != mod) continue;
        n[0]++;
        n[s.mech == BH_TT_MECH_REL32 ? 1 : s.mech == BH_TT_MECH_PAGE0 ? 2 : s.mech == BH_TT_MECH_SUD ? 3 : 4]++;
        if (s.mech == BH_TT_MECH_REL32) how[s.mov_len ? 0 : 1]++, how[2] += s.entry != nullptr;
      }
      logf(BH_TT_LOG_DEBUG,
           "%s: %" PRIu64 " sites: rel32 %" PRIu64 " (static %" PRIu64 ", relocated %" PRIu64 ", hop %" PRIu64
           ") page0 %" PRIu64 " sud %" PRIu64 " untouched %" PRIu64,
           g.module_names[mod].c_str(), n[0], n[1], how[0], how[1], how[2], n[2], n[3], n[4]);
    }
  }
  return 0;
}

int bh_tt_set_interest(const uint32_t *nrs, size_t n, int all) {
  std::lock_guard<std::mutex> lk(g.mu);
  uint64_t bits[kMaxNr / 64] = {};
  for (size_t i = 0; !all && i < n; i++) {
    if (nrs[i] >= kMaxNr) return -EINVAL;
    bits[nrs[i] / 64] |= 1ull << (nrs[i] % 64);
  }
  for (uint32_t i = 0; i < kMaxNr / 64; i++) g_interest[i].store(bits[i]);
  g_all.store(all != 0);
  g.all = all != 0;
  refresh_simple();
  if (!g.installed) return 0;
  return apply(nullptr, 0);
}

int bh_tt_set_exit_interest(const uint32_t *nrs, size_t n, int all) {
  uint64_t bits[kMaxNr / 64] = {};
  for (size_t i = 0; !all && i < n; i++) {
    if (nrs[i] >= kMaxNr) return -EINVAL;
    bits[nrs[i] / 64] |= 1ull << (nrs[i] % 64);
  }
  // Read on every call without a lock: the bits first, then the switch.
  for (uint32_t i = 0; i < kMaxNr / 64; i++) g_exit_interest[i].store(bits[i]);
  g_exit_all.store(all != 0);
  refresh_simple();
  return 0;
}

int bh_tt_uninstall(void) {
  std::lock_guard<std::mutex> lk(g.mu);
  if (!g.installed) return -ENOENT;
  int rc = 0;
  for (Site &s : g.sites) {
    const int r = unpatch(s);
    if (r < 0) rc = r;
    if (s.mech == BH_TT_MECH_SUD) s.mech = BH_TT_MECH_NONE;
  }
  sud_stop();
  g_hooks.store(nullptr, std::memory_order_release);
  refresh_simple();
  g.installed = false;
  // Stubs and page 0 stay mapped: a thread may still be inside one (it
  // returns to the program normally), and so do the Sites the stubs point
  // at (moved aside, never freed: a call blocked in a stub's `syscall`
  // reads its Site when it returns). A new install scans afresh, and a site
  // whose code is unchanged gets its parked stub back (adopt_parked).
  static auto *retired = new std::vector<std::deque<Site>>();
  retired->push_back(std::move(g.sites));
  g.sites = std::deque<Site>();
  for (const Site &s : retired->back())
    if (s.stub != nullptr) g.parked[s.addr] = &s;
  g.known.clear();
  g.module_names.clear();
  return rc;
}

int bh_tt_get_stats(struct bh_tt_stats *out) {
  if (!out || out->sz < sizeof(bh_tt_stats)) return -EINVAL;
  std::lock_guard<std::mutex> lk(g.mu);
  bh_tt_stats st{};
  st.sz = sizeof st;
  st.modules_scanned = uint32_t(g.module_names.size());  // files, not their (split) mappings
  st.bytes_undecodable = g.undecodable;
  for (const Site &s : g.sites) {
    st.sites_found++;
    if (s.mech == BH_TT_MECH_REL32) st.sites_rel32++;
    if (s.mech == BH_TT_MECH_PAGE0) st.sites_page0++;
    if (s.mech == BH_TT_MECH_SUD) st.sites_sud++;
    if (s.mech == BH_TT_MECH_NONE) st.sites_untouched++;
    st.mechanisms_active |= s.mech;
  }
  if (g_sud_on.load()) st.mechanisms_active |= BH_TT_MECH_SUD;
  *out = st;
  return 0;
}

}  // extern "C"
