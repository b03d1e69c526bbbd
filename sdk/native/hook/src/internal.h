// Types shared by the trampolines, the dispatch hot path and the control plane.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "bpfhook/hook.h"

namespace bh {

// ---------------------------------------------------------------------------
// The register frame the trampolines build on the stack.  pt_regs comes
// first so a Frame* is a pt_regs*.  Entry frames are kEntryFrame bytes (so
// that rsp is 16-byte aligned when the caller's was) placed kRedZone bytes
// below the probed code's rsp: a probe inside a leaf function must not
// overwrite locals it keeps in the 128-byte red zone.  Return frames are
// kReturnFrame bytes right below the caller's rsp (at a return nothing
// lives below it) and use `jump`.  No vector state is in the frame: when a
// listener may touch it, dispatch.cpp saves all of it with XSAVE.
// ---------------------------------------------------------------------------
struct Frame {
  struct pt_regs regs;  // 0
  uint64_t pad0;        // 168
  uint64_t jump;        // 176: return frames: the caller's return-address
                        // slot; the trampoline `ret`s through it
};
constexpr int kEntryFrame = 184;
constexpr int kReturnFrame = 184;
constexpr int kJumpOff = 176;
constexpr int kRedZone = 128;
static_assert(sizeof(struct pt_regs) == 168, "kernel pt_regs layout");
static_assert(offsetof(Frame, jump) == kJumpOff, "frame layout");
static_assert(sizeof(Frame) == kReturnFrame, "frame layout");
static_assert(kEntryFrame % 16 == 8, "entry frame keeps the caller's 16-byte alignment");

// ---------------------------------------------------------------------------
// Listeners.  A function's listeners live in an immutable ListenerSet that is
// replaced as a whole (RCU-style) on every attach/detach; the hot path reads
// it with one acquire load and never takes a lock.
// ---------------------------------------------------------------------------
struct Listener {
  bh_hook_fn fn;
  void *user;
  uint64_t cookie;
  uint32_t replace;  // BH_HOOK_REPLACE: the value it returns is the result
  uint32_t _pad;
};

enum : uint32_t { kSaveNone = 0, kSaveAll = 1, kSaveSse = 2 };

struct ListenerSet {
  uint32_t n_entry;   // ENTRY and REPLACE listeners, attach order
  uint32_t n_return;  // RETURN listeners, attach order (after the entries)
  uint32_t save_vec;  // kSaveNone, kSaveSse (xmm only: every listener that
                      // may touch vector state is SSE_ONLY) or kSaveAll
  uint32_t _pad;
  Listener items[];  // n_entry + n_return
};

// The part of a hooked function the trampolines and the hot path touch.
// The common entry code reads `addr` at offset 8.  Freed with its
// trampoline once no thread can be in either (README.md, "Freeing
// trampolines").
struct HookCore {
  std::atomic<const ListenerSet *> set{nullptr};  // 0
  uint64_t addr = 0;                              // 8
  std::atomic<uint64_t> missed{0};                // 16
  // Where the function returns to when its stub called it for a return
  // probe: that return address sits in the caller's slot meanwhile.
  uint64_t after = 0;  // 24
  // bh_hook_call.flags a probe starts with: BH_HOOK_CALL_MIDFUNC for a
  // probe inside a function (no override possible there).
  uint32_t call_flags = 0;  // 32
};
static_assert(offsetof(HookCore, addr) == 8, "read by the trampoline");

// ---------------------------------------------------------------------------
// Per-thread state.
// ---------------------------------------------------------------------------
struct ShadowEntry {
  uint64_t ret;  // the caller's real return address
  HookCore *hook;
  uint64_t rsp;      // rsp at entry: where the return address lives
  uint64_t args[6];  // rdi, rsi, rdx, rcx, r8, r9 at entry
  uint64_t _pad;
};
static_assert(sizeof(ShadowEntry) == 80, "shadow entry size");

struct ThreadState {
  // Odd while the thread is inside a probe (listeners or shadow-stack
  // work).  It is both the read-side marker for grace periods and the
  // recursion guard: a probe that fires while it is odd skips listeners.
  std::atomic<uint64_t> ctr{0};
  bh_hook_call *current = nullptr;  // innermost running probe
  uint32_t top = 0;                 // shadow stack depth
  uint32_t cap = 0;
  ShadowEntry *stack = nullptr;
  ThreadState *next = nullptr;  // registry: append-only list
  std::atomic<bool> in_use{false};
  int tid = 0;
};

// The calling thread's state: nullptr before its first probe, a real state
// afterwards, &g_sentinel while it is being set up and after the thread's
// destructors ran.  initial-exec TLS: one %fs-relative load on the hot path.
#define BH_HIDDEN __attribute__((visibility("hidden")))
extern __thread ThreadState *tls_state __attribute__((tls_model("initial-exec"))) BH_HIDDEN;
extern ThreadState g_sentinel BH_HIDDEN;  // ctr is odd forever: probes are skipped

ThreadState *thread_state_init();  // slow path of the first probe on a thread
void threads_init();               // once, before any trampoline exists
// Waits until every thread that was inside a probe when it was called has
// left it (the caller's own thread excepted).
void grace_period();
// grace_passed(grace_ticket() taken at T): a grace period that started
// after T has completed, so every thread inside a probe at T has left it.
uint64_t grace_ticket();
bool grace_passed(uint64_t ticket);
// True if some thread's shadow stack holds an entry (a pending return) of a
// hook `pred` accepts.  No libc, no lock: callable while threads are paused.
bool shadow_refers(bool (*pred)(const HookCore *, void *), void *ctx);
// True if the calling thread is inside a probe (so grace_period cannot wait
// for it).
bool in_probe();
// With membarrier unavailable readers pay a full fence instead.
extern bool g_reader_fence BH_HIDDEN;

// Vector/x87/mask state (dispatch.cpp): how it is saved on this CPU.
struct VecInfo {
  uint32_t mode;   // 0 fxsave64, 1 xsave64, 2 xsavec64
  uint32_t size;   // bytes of the save area (64-byte aligned start)
  uint64_t mask;   // XCR0 & the components a listener could change
  uint32_t width;  // bytes of an argument vector register: 16, 32, 64
};
extern VecInfo g_vec BH_HIDDEN;
void vec_init();  // once, from the engine's init (CPUID leaf 0xD, XGETBV)

// What bh_on_enter tells the stub to do (the common entry compares it with
// 1 and the stub branches on the flags).
enum : uint32_t {
  kRun = 0,         // jump to the relocated code
  kReturnNow = 1,   // ret: rax holds the override value
  kRunAndTrap = 2,  // drop the return address (it is in the shadow stack),
                    // call the relocated code, then the return trampoline
};

}  // namespace bh

// The trampolines call these (C ABI, hidden).
extern "C" uint32_t bh_on_enter(bh::HookCore *hook, bh::Frame *frame) BH_HIDDEN;
extern "C" uint64_t bh_on_return(bh::Frame *frame) BH_HIDDEN;
