// Pausing every other thread of the process while code is patched.
//
// Why: a patch overwrites several instructions.  A thread that was preempted
// after the first of them (its rip strictly inside the patched range) would
// resume in the middle of the new jump and run garbage, however atomic the
// store is.  So for a multi-instruction patch every other thread is sent a
// signal and parks in the handler; the patcher writes; each parked thread
// whose interrupted rip lies on an instruction boundary inside the range is
// moved to the same instruction in the relocated copy (like Detours does
// with suspended threads); then all are released.
//
// A thread that blocks the signal cannot park.  If /proc shows it asleep in
// a system call with its pc outside the range, it cannot reach the range
// without first executing the function's first instruction, so the patch is
// written with a gate (an atomic `jmp $` at byte 0 first, the rest, then the
// real first bytes), and its context-switch counters are compared before and
// after: unchanged means it never ran during the write.  A thread that stays
// runnable with the signal blocked makes the operation fail (-EAGAIN).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bh {

struct Fixup {
  uint64_t from, to;
};
struct Range {
  uint64_t lo, hi;  // [lo, hi)
};

struct QuiesceOp {
  // Bytes about to be patched (install): a paused thread with
  // lo < rip < hi must be at a fixup's `from` (it is moved to `to`); an
  // unpausable sleeping thread there fails the op.  Any number of ranges
  // and fixups: one op patches a whole transaction.
  std::vector<Range> patched;
  std::vector<Fixup> fixups;
  // Trampolines to prove unused: each thread whose rip, or a word of the
  // top kScanBytes of its stack, lies in one of these counts as busy.
  std::vector<Range> watch;
  // Where the stack scan stops: the trampolines' memory.
  std::vector<Range> code;
  // Runs while the other threads are paused: must not allocate, lock or
  // call libc.  `gate` is true if some threads could not be paused.
  int (*write)(void *ctx, bool gate) = nullptr;
  void *ctx = nullptr;
  // Runs after a successful write, still paused, same rules: true if some
  // thread is busy in a watched trampoline by a measure of the caller's.
  bool (*also)(void *ctx) = nullptr;
  void *also_ctx = nullptr;
  // A pause that only checks `watch` (counted apart from patching pauses).
  bool check_only = false;
};

// Bytes of stack above a paused thread's rsp searched for return addresses
// into watched trampolines: the stub's call to the shared entry, that
// entry's frame and bh_on_enter's (XSAVE area, first-hit thread set-up)
// before the thread's counter goes odd are well inside it.
constexpr uint64_t kScanBytes = 16384;

struct QuiesceStats {
  uint64_t pauses, threads_paused, threads_moved, threads_unpausable, checks;
};
QuiesceStats quiesce_stats();

// Installs the handler for `sig` (once per process).
int quiesce_install(int sig, std::string *err);
int quiesce_signal();
// 0, or -EAGAIN / -EBUSY / the write's error, with a message in *err;
// *warn gets a note if an unpaused thread ran during the write.  *busy (if
// given) gets the number of threads seen in a watched range.
int quiesce_run(const QuiesceOp &op, uint32_t timeout_ms, std::string *err, std::string *warn,
                uint32_t *busy = nullptr);

}  // namespace bh
