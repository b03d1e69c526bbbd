#include "quiesce.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <ucontext.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "sys.h"
#include "util.h"

namespace bh {
namespace {

// si_errno of our own signals, to tell them from anybody else's.
constexpr int kMagic = 0x62687175;  // "bhqu"

enum : uint32_t { kSent = 1, kArrived = 2, kLeft = 3, kCancelled = 4 };

// One slot per signalled thread: (generation << 32) | state.  A handler only
// acts if it can move its own slot from (its gen, kSent) to kArrived, so a
// signal that arrives late, after its operation ended, does nothing.  An
// operation ends once none of its slots is kSent (it cancels the rest).
struct Slots {
    Slots *older;  // superseded arrays stay allocated (and reachable)
    uint32_t cap;
    std::atomic<uint64_t> s[1];
};

struct Park {
    std::atomic<uint32_t> release{0};  // futex word: the last generation released
    std::atomic<Slots *> slots{nullptr};
    Fixup fixups[kMaxFixups];
    unsigned n_fixups = 0;
    int sig = 0;
    struct sigaction old {};
};

Park g_park;
std::mutex g_op_mu;
std::atomic<uint64_t> g_pauses{0}, g_paused{0}, g_moved{0}, g_unpausable{0};
uint32_t g_gen = 0;

inline uint64_t slot_val(uint32_t gen, uint32_t st) { return (uint64_t(gen) << 32) | st; }

void chain(int sig, siginfo_t *si, void *uc) {
    const struct sigaction &o = g_park.old;
    if (o.sa_flags & SA_SIGINFO) {
        if (o.sa_sigaction) o.sa_sigaction(sig, si, uc);
    } else if (o.sa_handler != SIG_DFL && o.sa_handler != SIG_IGN && o.sa_handler) {
        o.sa_handler(sig);
    }
}

void park_handler(int sig, siginfo_t *si, void *ucv) {
    if (si->si_code != SI_QUEUE || si->si_errno != kMagic || si->si_pid != sys::getpid()) {
        chain(sig, si, ucv);
        return;
    }
    // Only raw system calls below: errno is untouched, no libc is called.
    const uint64_t v = reinterpret_cast<uint64_t>(si->si_value.sival_ptr);
    const uint32_t gen = uint32_t(v >> 32), idx = uint32_t(v);
    Slots *sl = g_park.slots.load(std::memory_order_acquire);
    if (!sl || idx >= sl->cap) return;
    // Copy the fixups first.  If the slot is still (gen, sent) when we
    // announce arrival, the operation was running all along (it ends only
    // once no slot of it is `sent`), so the copy is of its fixups.
    Fixup fx[kMaxFixups];
    const unsigned n = g_park.n_fixups;
    for (unsigned i = 0; i < n && i < kMaxFixups; i++) fx[i] = g_park.fixups[i];
    uint64_t expect = slot_val(gen, kSent);
    if (!sl->s[idx].compare_exchange_strong(expect, slot_val(gen, kArrived),
                                            std::memory_order_acq_rel))
        return;  // late: that operation is over
    for (;;) {
        // Generations only grow: a later release also releases us.
        const uint32_t r = g_park.release.load(std::memory_order_acquire);
        if (int32_t(r - gen) >= 0) break;
        sys::futex(&g_park.release, FUTEX_WAIT_PRIVATE, r);
    }
    auto *uc = static_cast<ucontext_t *>(ucv);
    greg_t &rip = uc->uc_mcontext.gregs[REG_RIP];
    for (unsigned i = 0; i < n && i < kMaxFixups; i++)
        if (uint64_t(rip) == fx[i].from) {
            rip = greg_t(fx[i].to);
            g_moved.fetch_add(1, std::memory_order_relaxed);
            break;
        }
    // The patcher does not wait for this: it may already have reused the
    // slot for a later operation, which the CAS leaves alone.
    expect = slot_val(gen, kArrived);
    sl->s[idx].compare_exchange_strong(expect, slot_val(gen, kLeft), std::memory_order_release);
}

// --- /proc readers that use no libc (they run while threads are paused, and
// the user may have hooked strlen, memcpy, ...; the build also passes
// -fno-tree-loop-distribute-patterns so loops do not become memcpy calls) ---

char *put_uint(char *p, unsigned long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = char('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

void task_path(char *buf, int tid, const char *leaf) {
    static const char pre[] = "/proc/self/task/";
    char *p = buf;
    for (const char *s = pre; *s; s++) *p++ = *s;
    p = put_uint(p, unsigned(tid));
    *p++ = '/';
    for (const char *s = leaf; *s; s++) *p++ = *s;
    *p = 0;
}

// Thread state letter from /proc/self/task/TID/stat, 0 if the thread is gone.
char task_state(int tid) {
    char path[64], buf[512];
    task_path(path, tid, "stat");
    const long n = sys::read_file(path, buf, sizeof buf);
    if (n <= 0) return 0;
    const char *close = nullptr;
    for (long i = 0; i < n; i++)
        if (buf[i] == ')') close = buf + i;
    if (!close || close + 2 >= buf + n) return 0;
    return close[2];
}

// The user pc of a thread blocked in the kernel (last field of
// /proc/self/task/TID/syscall), or false if it is running.
bool task_blocked_pc(int tid, uint64_t *pc) {
    char path[64], buf[256];
    task_path(path, tid, "syscall");
    const long n = sys::read_file(path, buf, sizeof buf);
    if (n <= 0 || buf[0] == 'r') return false;  // "running"
    long end = n;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == ' ')) end--;
    long start = end;
    while (start > 0 && buf[start - 1] != ' ') start--;
    uint64_t v = 0;
    long i = start;
    if (end - i > 2 && buf[i] == '0' && buf[i + 1] == 'x') i += 2;
    for (; i < end; i++) {
        const char c = buf[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + unsigned(d);
    }
    *pc = v;
    return true;
}

bool starts_with(const char *s, const char *prefix, long avail) {
    long i = 0;
    for (; prefix[i]; i++)
        if (i >= avail || s[i] != prefix[i]) return false;
    return true;
}

long length(const char *s) {
    long n = 0;
    while (s[n]) n++;
    return n;
}

uint64_t field_after(const char *buf, long n, const char *key) {
    const long kl = length(key);
    for (long i = 0; i + kl < n; i++) {
        if ((i == 0 || buf[i - 1] == '\n') && starts_with(buf + i, key, n - i)) {
            uint64_t v = 0;
            for (long j = i + kl; j < n; j++) {
                if (buf[j] >= '0' && buf[j] <= '9')
                    v = v * 10 + unsigned(buf[j] - '0');
                else if (buf[j] != ' ' && buf[j] != '\t')
                    break;
            }
            return v;
        }
    }
    return ~0ull;
}

// Voluntary + involuntary context switches: unchanged means it did not run.
uint64_t task_switches(int tid) {
    char path[64], buf[2048];
    task_path(path, tid, "status");
    const long n = sys::read_file(path, buf, sizeof buf - 1);
    if (n <= 0) return ~0ull;
    return field_after(buf, n, "voluntary_ctxt_switches:") +
           field_after(buf, n, "nonvoluntary_ctxt_switches:");
}

// Calls fn(tid) for every thread of the process; raw getdents64.
template <class F>
bool for_each_tid(F fn) {
    const int fd = sys::openat(AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    alignas(8) char buf[4096];
    for (;;) {
        const long n = sys::getdents64(fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            auto *d = reinterpret_cast<struct dirent64 *>(buf + off);
            off += d->d_reclen;
            int tid = 0;
            const char *s = d->d_name;
            if (*s < '0' || *s > '9') continue;
            for (; *s >= '0' && *s <= '9'; s++) tid = tid * 10 + (*s - '0');
            fn(tid);
        }
    }
    sys::close(fd);
    return true;
}

struct Asleep {
    uint32_t idx;
    uint64_t switches;
};

}  // namespace

long sys::read_file(const char *path, char *buf, size_t cap) {
    const int fd = sys::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fd;
    long total = 0;
    while (size_t(total) + 1 < cap) {
        const long n = sys::read(fd, buf + total, cap - 1 - size_t(total));
        if (n <= 0) break;
        total += n;
    }
    sys::close(fd);
    buf[total] = 0;
    return total;
}

int quiesce_install(int sig, std::string *err) {
    if (g_park.sig) return 0;
    struct sigaction sa {};
    sa.sa_sigaction = park_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &g_park.old) != 0) {
        *err = strf("cannot install the handler for signal %d: %s", sig, strerror(errno));
        return -errno;
    }
    g_park.sig = sig;
    return 0;
}

int quiesce_signal() { return g_park.sig; }

QuiesceStats quiesce_stats() {
    return QuiesceStats{g_pauses.load(), g_paused.load(), g_moved.load(), g_unpausable.load()};
}

int quiesce_run(const QuiesceOp &op, uint32_t timeout_ms, std::string *err, std::string *warn) {
    std::lock_guard<std::mutex> lk(g_op_mu);
    const int sig = g_park.sig;
    if (!sig) {
        *err = "thread pausing is not set up";
        return -EINVAL;
    }
    const int pid = sys::getpid(), self = sys::gettid();

    // Everything that allocates happens before the first signal.
    std::vector<int> tids;
    if (!for_each_tid([&](int t) { tids.push_back(t); })) {
        *err = "cannot list /proc/self/task";
        return -ENOENT;
    }
    const uint32_t cap = uint32_t(tids.size() * 2 + 64);
    Slots *sl = g_park.slots.load(std::memory_order_relaxed);
    if (!sl || sl->cap < cap) {
        // Old arrays are never freed: a late handler may still look at one.
        void *mem = ::operator new(sizeof(Slots) + sizeof(std::atomic<uint64_t>) * cap);
        Slots *older = sl;
        sl = static_cast<Slots *>(mem);
        sl->older = older;
        sl->cap = cap;
        for (uint32_t i = 0; i < cap; i++) new (&sl->s[i]) std::atomic<uint64_t>(0);
        g_park.slots.store(sl, std::memory_order_release);
    }
    std::vector<int> sent(cap, 0);
    std::vector<uint8_t> asleep_flag(cap, 0);
    std::vector<Asleep> asleep(cap);  // sized now: nothing allocates once threads pause
    uint32_t n_asleep = 0;

    uint32_t gen = ++g_gen;
    if (gen == 0) gen = ++g_gen;
    for (unsigned i = 0; i < op.n_fixups; i++) g_park.fixups[i] = op.fixups[i];
    g_park.n_fixups = op.n_fixups;

    uint32_t n_sent = 0;
    int rc = 0;
    bool too_many = false;
    auto send = [&](int tid) {
        if (tid == self) return;
        for (uint32_t i = 0; i < n_sent; i++)
            if (sent[i] == tid) return;
        if (n_sent == cap) {
            too_many = true;
            return;
        }
        const uint32_t idx = n_sent;
        sl->s[idx].store(slot_val(gen, kSent), std::memory_order_release);
        siginfo_t si;
        volatile char *z = reinterpret_cast<volatile char *>(&si);  // no memset call
        for (size_t k = 0; k < sizeof si; k++) z[k] = 0;
        si.si_signo = sig;
        si.si_code = SI_QUEUE;
        si.si_errno = kMagic;
        si.si_pid = pid;
        si.si_value.sival_ptr = reinterpret_cast<void *>((uint64_t(gen) << 32) | idx);
        const long r = sys::rt_tgsigqueueinfo(pid, tid, sig, &si);
        sent[idx] = tid;
        n_sent++;
        if (r != 0) sl->s[idx].store(slot_val(gen, kCancelled), std::memory_order_relaxed);
    };

    const uint64_t lo = op.lo, hi = op.hi;
    auto in_range = [&](uint64_t pc) { return pc > lo && pc < hi; };
    const long step_ns = 100000;
    const long max_steps = long(timeout_ms) * 1000000L / step_ns;
    int stuck_tid = 0;
    // Messages are formatted after the threads are released (no malloc now).
    enum { kNone, kTooMany, kInside, kStuck } why = kNone;
    int bad_tid = 0;
    uint64_t bad_pc = 0;

    for (int round = 0; round < 16 && !rc; round++) {
        const uint32_t before = n_sent;
        if (round == 0) {
            for (int t : tids) send(t);
        } else {
            for_each_tid(send);  // threads created since the last look
            if (n_sent == before) break;
        }
        if (too_many) {
            rc = -EAGAIN;
            why = kTooMany;
            break;
        }
        // Wait until each signalled thread has arrived, is gone, or is
        // asleep with the signal blocked outside the range.
        for (long step = 0;; step++) {
            bool pending = false;
            for (uint32_t i = before; i < n_sent && !rc; i++) {
                const uint32_t st = uint32_t(sl->s[i].load(std::memory_order_acquire));
                if (st != kSent || asleep_flag[i]) continue;
                if (step < 20) {  // a few yields to take the signal first
                    pending = true;
                    continue;
                }
                // Counters first: if they are unchanged after the write, the
                // thread has not run since before we saw where it sleeps.
                const uint64_t switches = task_switches(sent[i]);
                const char state = task_state(sent[i]);
                if (state == 0 || state == 'Z' || state == 'X') {
                    uint64_t e = slot_val(gen, kSent);
                    sl->s[i].compare_exchange_strong(e, slot_val(gen, kCancelled));
                    continue;
                }
                uint64_t pc;
                if (state != 'R' && task_blocked_pc(sent[i], &pc)) {
                    if (in_range(pc)) {
                        rc = -EBUSY;
                        why = kInside;
                        bad_tid = sent[i];
                        bad_pc = pc;
                        break;
                    }
                    asleep_flag[i] = 1;
                    asleep[n_asleep++] = Asleep{i, switches};
                    continue;
                }
                pending = true;
                stuck_tid = sent[i];
            }
            if (rc || !pending) break;
            if (step >= max_steps) {
                rc = -EAGAIN;
                why = kStuck;
                bad_tid = stuck_tid;
                break;
            }
            if (step < 20)
                sys::sched_yield();
            else
                sys::nanosleep_ns(step_ns);
        }
    }

    if (!rc) rc = op.write(op.ctx, n_asleep > 0);
    g_pauses.fetch_add(1, std::memory_order_relaxed);
    g_unpausable.fetch_add(n_asleep, std::memory_order_relaxed);
    for (uint32_t i = 0; i < n_sent; i++)
        if (uint32_t(sl->s[i].load(std::memory_order_relaxed)) == kArrived)
            g_paused.fetch_add(1, std::memory_order_relaxed);

    bool ran = false;
    int ran_tid = 0;
    if (!rc) {
        for (uint32_t k = 0; k < n_asleep; k++) {
            const Asleep &a = asleep[k];
            if (uint32_t(sl->s[a.idx].load(std::memory_order_acquire)) != kSent) continue;
            if (task_switches(sent[a.idx]) != a.switches) {
                ran = true;
                ran_tid = sent[a.idx];
            }
        }
    }

    // Release everybody.  Parked threads copied the fixups before arriving,
    // so nothing here waits for them to be scheduled again.
    g_park.release.store(gen, std::memory_order_release);
    sys::futex(&g_park.release, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (uint32_t i = 0; i < n_sent; i++) {
        uint64_t e = slot_val(gen, kSent);
        sl->s[i].compare_exchange_strong(e, slot_val(gen, kCancelled));
    }
    if (why == kTooMany)
        *err = "threads are being created faster than they can be paused";
    else if (why == kInside)
        *err = strf("thread %d is stopped at 0x%llx, inside the bytes to patch, and cannot be "
                    "paused",
                    bad_tid, static_cast<unsigned long long>(bad_pc));
    else if (why == kStuck)
        *err = strf("thread %d did not pause within %u ms (signal %d blocked while it runs?)",
                    bad_tid, timeout_ms, sig);
    else if (rc)
        *err = strf("writing the code failed: %s", strerror(-rc));
    if (ran && warn)
        *warn = strf("thread %d, which blocks signal %d, ran while code was patched; it was "
                     "outside the patched bytes when last seen",
                     ran_tid, sig);
    return rc;
}

}  // namespace bh
