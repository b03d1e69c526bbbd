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

namespace bh {

struct Fixup {
    uint64_t from, to;
};
constexpr unsigned kMaxFixups = 16;

struct QuiesceOp {
    // A paused thread with lo < rip < hi must be at a fixup's `from` (it is
    // moved to `to`); an unpausable sleeping thread there fails the op.
    uint64_t lo = 0, hi = 0;
    Fixup fixups[kMaxFixups];
    unsigned n_fixups = 0;
    // Runs while the other threads are paused: must not allocate, lock or
    // call libc.  `gate` is true if some threads could not be paused.
    int (*write)(void *ctx, bool gate) = nullptr;
    void *ctx = nullptr;
};

struct QuiesceStats {
    uint64_t pauses, threads_paused, threads_moved, threads_unpausable;
};
QuiesceStats quiesce_stats();

// Installs the handler for `sig` (once per process).
int quiesce_install(int sig, std::string *err);
int quiesce_signal();
// 0, or -EAGAIN / -EBUSY / the write's error, with a message in *err;
// *warn gets a note if an unpaused thread ran during the write.
int quiesce_run(const QuiesceOp &op, uint32_t timeout_ms, std::string *err, std::string *warn);

}  // namespace bh
