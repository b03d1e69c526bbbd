#include "quiesce.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <ucontext.h>

#include <algorithm>
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

// Our own signals carry this copy's g_park address in si_value, the
// generation in si_uid and the slot index in si_errno (the kernel passes a
// self-sent SI_QUEUE siginfo through as written).  The address, not a fixed
// magic number, tells them apart: every plugin links its own copy of this
// engine (static, symbols hidden), all install a handler on the same signal,
// and the last installed must pass the other copies' signals down the chain
// instead of taking them for its own (it used to swallow them, and the
// first copy's pauses then timed out: tests/hook_two_copies.cpp).

enum : uint32_t { kSent = 1, kArrived = 2, kLeft = 3, kCancelled = 4 };

// One slot per signalled thread: (generation << 32) | state.  A handler only
// acts if it can move its own slot from (its gen, kSent) to kArrived, so a
// signal that arrives late, after its operation ended, does nothing.  An
// operation ends once none of its slots is kSent (it cancels the rest).
// kBusy is or-ed into kArrived by a thread seen in a watched range.
struct Slots {
  Slots *older;  // superseded arrays stay allocated (and reachable)
  uint32_t cap;
  std::atomic<uint64_t> s[1];
};
constexpr uint32_t kBusy = 0x100;

// An array that a late signal handler may still read: it is never freed,
// and grows by leaking the smaller one (rare: it only grows).
template <class T>
struct Published {
  T *p = nullptr;
  size_t n = 0, cap = 0;
  void set(const std::vector<T> &v) {
    if (v.size() > cap) {
      const size_t c = std::max<size_t>(v.size(), 2 * cap);
      p = static_cast<T *>(::operator new(sizeof(T) * c));
      cap = c;
    }
    for (size_t i = 0; i < v.size(); i++) p[i] = v[i];
    n = v.size();
  }
};

struct Park {
  std::atomic<uint32_t> release{0};  // futex word: the last generation released
  std::atomic<Slots *> slots{nullptr};
  // The running operation's fixups and watched ranges.  Handlers read them
  // before they announce arrival, and act on what they read only if the
  // announcement succeeds (then the operation was running all along).
  Published<Fixup> fixups;
  Published<Range> watch;
  Published<Range> code;
  int sig = 0;
  struct sigaction old {};
};

Park g_park;
std::mutex g_op_mu;
std::atomic<uint64_t> g_pauses{0}, g_paused{0}, g_moved{0}, g_unpausable{0}, g_checks{0};
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

bool in_ranges(uint64_t v, const Range *r, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v >= r[i].lo && v < r[i].hi) return true;
  return false;
}

// True if `pc`, or a word of the kScanBytes of stack above `sp`, lies in a
// watched range of the running op.  Reads the stack with process_vm_readv
// on ourselves, which stops quietly at the end of a mapping instead of
// faulting, and stops before the trampolines' own memory (a stack mapped
// right below it would otherwise read their literals).
bool seen_in(uint64_t pc, uint64_t sp) {
  const Range *r = g_park.watch.p;
  const size_t n = g_park.watch.n;
  if (!n) return false;
  if (in_ranges(pc, r, n)) return true;
  uint64_t end = sp + kScanBytes;
  for (size_t i = 0; i < g_park.code.n; i++)
    if (g_park.code.p[i].lo > sp && g_park.code.p[i].lo < end) end = g_park.code.p[i].lo;
  for (uint64_t at = sp; at < end;) {
    uint64_t words[32];
    const uint64_t len = end - at < sizeof words ? end - at : sizeof words;
    const long got = sys::read_self(words, at, len);
    // The top of a stack is always mapped: failing there means the
    // system call is not allowed (seccomp), and nothing is proven.
    if (got <= 0 && at == sp) return true;
    if (got <= 0) break;
    for (long i = 0; i < got / 8; i++)
      if (in_ranges(words[i], r, n)) return true;
    at += uint64_t(got);
    if (uint64_t(got) < len) break;
  }
  return false;
}

void park_handler(int sig, siginfo_t *si, void *ucv) {
  if (si->si_code != SI_QUEUE || si->si_value.sival_ptr != static_cast<void *>(&g_park) ||
      si->si_pid != sys::getpid()) {
    chain(sig, si, ucv);
    return;
  }
  // Only raw system calls below: errno is untouched, no libc is called.
  const uint32_t gen = uint32_t(si->si_uid), idx = uint32_t(si->si_errno);
  Slots *sl = g_park.slots.load(std::memory_order_acquire);
  if (!sl || idx >= sl->cap) return;
  auto *uc = static_cast<ucontext_t *>(ucv);
  greg_t &rip = uc->uc_mcontext.gregs[REG_RIP];
  const uint64_t sp = uint64_t(uc->uc_mcontext.gregs[REG_RSP]);
  // Read the operation's data first.  If the slot is still (gen, sent)
  // when we announce arrival, the operation was running all along (it
  // ends only once no slot of it is `sent`), so what we read is its data.
  uint64_t to = 0;
  for (size_t i = 0; i < g_park.fixups.n; i++)
    if (uint64_t(rip) == g_park.fixups.p[i].from) {
      to = g_park.fixups.p[i].to;
      break;
    }
  const uint32_t busy = seen_in(uint64_t(rip), sp) ? kBusy : 0;
  uint64_t expect = slot_val(gen, kSent);
  if (!sl->s[idx].compare_exchange_strong(expect, slot_val(gen, kArrived | busy), std::memory_order_acq_rel))
    return;  // late: that operation is over
  // Moving to the relocated copy before the write is as good as after: the
  // copy runs the same instructions whether or not the patch goes in.
  if (to) {
    rip = greg_t(to);
    g_moved.fetch_add(1, std::memory_order_relaxed);
  }
  for (;;) {
    // Generations only grow: a later release also releases us.
    const uint32_t r = g_park.release.load(std::memory_order_acquire);
    if (int32_t(r - gen) >= 0) break;
    sys::futex(&g_park.release, FUTEX_WAIT_PRIVATE, r);
  }
  // The patcher does not wait for this: it may already have reused the
  // slot for a later operation, which the CAS leaves alone.
  expect = slot_val(gen, kArrived | busy);
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

// Parses the hex number that ends at buf[end) (optional 0x); false if none.
bool hex_before(const char *buf, long end, long *start_out, uint64_t *out) {
  long start = end;
  while (start > 0 && buf[start - 1] != ' ') start--;
  *start_out = start;
  uint64_t v = 0;
  long i = start;
  if (end - i > 2 && buf[i] == '0' && buf[i + 1] == 'x') i += 2;
  if (i == end) return false;
  for (; i < end; i++) {
    const char c = buf[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v * 16 + unsigned(d);
  }
  *out = v;
  return true;
}

// The user pc and sp of a thread blocked in the kernel (the last two fields
// of /proc/self/task/TID/syscall), or false if it is running.
bool task_blocked_at(int tid, uint64_t *pc, uint64_t *sp) {
  char path[64], buf[256];
  task_path(path, tid, "syscall");
  const long n = sys::read_file(path, buf, sizeof buf);
  if (n <= 0 || buf[0] == 'r') return false;  // "running"
  long end = n;
  while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == ' ')) end--;
  long start;
  if (!hex_before(buf, end, &start, pc)) return false;
  end = start;
  while (end > 0 && buf[end - 1] == ' ') end--;
  return hex_before(buf, end, &start, sp);
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
  return field_after(buf, n, "voluntary_ctxt_switches:") + field_after(buf, n, "nonvoluntary_ctxt_switches:");
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
  return QuiesceStats{g_pauses.load(), g_paused.load(), g_moved.load(), g_unpausable.load(), g_checks.load()};
}

namespace {

// One pause of every other thread, step by step in the order quiesce_run
// calls them: prepare (everything that allocates), pause_all, the write,
// check_asleep, release, then the message.  Between pause_all and release
// nothing allocates, locks or calls libc.
class Pause {
 public:
  Pause(const QuiesceOp &op, uint32_t timeout_ms) : op_(op), timeout_ms_(timeout_ms) {}

  // Lists the threads, sizes every array, publishes the op's data for the
  // handlers.  0 or -errno.
  int prepare() {
    sig_ = g_park.sig;
    if (!sig_) {
      why_ = kNotSetUp;
      return -EINVAL;
    }
    pid_ = sys::getpid();
    self_ = sys::gettid();
    if (!for_each_tid([&](int t) { tids_.push_back(t); })) {
      why_ = kNoTasks;
      return -ENOENT;
    }
    cap_ = uint32_t(tids_.size() * 2 + 64);
    sl_ = g_park.slots.load(std::memory_order_relaxed);
    if (!sl_ || sl_->cap < cap_) {
      // Old arrays are never freed: a late handler may still look at one.
      void *mem = ::operator new(sizeof(Slots) + sizeof(std::atomic<uint64_t>) * cap_);
      Slots *older = sl_;
      sl_ = static_cast<Slots *>(mem);
      sl_->older = older;
      sl_->cap = cap_;
      for (uint32_t i = 0; i < cap_; i++) new (&sl_->s[i]) std::atomic<uint64_t>(0);
      g_park.slots.store(sl_, std::memory_order_release);
    }
    sent_.assign(cap_, 0);
    asleep_flag_.assign(cap_, 0);
    asleep_.resize(cap_);
    gen_ = ++g_gen;
    if (gen_ == 0) gen_ = ++g_gen;
    g_park.fixups.set(op_.fixups);
    g_park.watch.set(op_.watch);
    g_park.code.set(op_.code);
    return 0;
  }

  // Signals every thread (again for threads created meanwhile, up to 16
  // rounds) and waits until each has parked, is gone, or sleeps with the
  // signal blocked outside the patched bytes.
  int pause_all() {
    int rc = 0;
    for (int round = 0; round < 16 && !rc; round++) {
      const uint32_t before = n_sent_;
      if (round == 0) {
        for (int t : tids_) send(t);
      } else {
        for_each_tid([&](int t) { send(t); });
        if (n_sent_ == before) break;
      }
      if (too_many_) {
        why_ = kTooMany;
        return -EAGAIN;
      }
      rc = wait_round(before);
    }
    return rc;
  }

  int write() {
    const int rc = op_.write ? op_.write(op_.ctx, n_asleep_ > 0) : 0;
    if (!rc && op_.also && op_.also(op_.also_ctx)) busy_++;
    return rc;
  }

  // Threads that could not be paused: in a watched range if their pc or
  // stack says so; after a write, whether they ran meanwhile.
  void check_asleep(bool wrote) {
    for (uint32_t k = 0; k < n_asleep_; k++) {
      const Asleep &a = asleep_[k];
      if (uint32_t(sl_->s[a.idx].load(std::memory_order_acquire)) != kSent) continue;
      if (seen_in(a.pc, a.sp)) busy_++;
      if (wrote && task_switches(sent_[a.idx]) != a.switches) {
        ran_ = true;
        ran_tid_ = sent_[a.idx];
      }
    }
  }

  void count() {
    (op_.check_only ? g_checks : g_pauses).fetch_add(1, std::memory_order_relaxed);
    g_unpausable.fetch_add(n_asleep_, std::memory_order_relaxed);
    for (uint32_t i = 0; i < n_sent_; i++) {
      const uint32_t st = uint32_t(sl_->s[i].load(std::memory_order_relaxed));
      if ((st & ~kBusy) != kArrived) continue;
      g_paused.fetch_add(1, std::memory_order_relaxed);
      if (st & kBusy) busy_++;
    }
  }

  // Releases everybody.  Parked threads read the op's data before
  // arriving, so nothing here waits for them to be scheduled again.
  void release() {
    g_park.release.store(gen_, std::memory_order_release);
    sys::futex(&g_park.release, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (uint32_t i = 0; i < n_sent_; i++) {
      uint64_t e = slot_val(gen_, kSent);
      sl_->s[i].compare_exchange_strong(e, slot_val(gen_, kCancelled));
    }
  }

  // Messages are formatted here, after the threads are released.
  void report(int rc, std::string *err, std::string *warn) const {
    switch (why_) {
      case kNotSetUp: *err = "thread pausing is not set up"; break;
      case kNoTasks: *err = "cannot list /proc/self/task"; break;
      case kTooMany: *err = "threads are being created faster than they can be paused"; break;
      case kInside:
        *err = strf("thread %d is stopped at 0x%llx, inside the bytes to patch, and cannot be paused", bad_tid_,
                    static_cast<unsigned long long>(bad_pc_));
        break;
      case kStuck:
        *err = strf("thread %d did not pause within %u ms (signal %d blocked while it runs?)", bad_tid_, timeout_ms_,
                    sig_);
        break;
      case kNone:
        if (rc) *err = strf("writing the code failed: %s", strerror(-rc));
        break;
    }
    if (ran_ && warn)
      *warn = strf(
          "thread %d, which blocks signal %d, ran while code was patched; it was "
          "outside the patched bytes when last seen",
          ran_tid_, sig_);
  }

  uint32_t busy() const { return busy_; }

 private:
  struct Asleep {
    uint32_t idx;
    uint64_t switches, pc, sp;
  };

  void send(int tid) {
    if (tid == self_) return;
    for (uint32_t i = 0; i < n_sent_; i++)
      if (sent_[i] == tid) return;
    if (n_sent_ == cap_) {
      too_many_ = true;
      return;
    }
    const uint32_t idx = n_sent_;
    sl_->s[idx].store(slot_val(gen_, kSent), std::memory_order_release);
    siginfo_t si;
    volatile char *z = reinterpret_cast<volatile char *>(&si);  // no memset call
    for (size_t k = 0; k < sizeof si; k++) z[k] = 0;
    si.si_signo = sig_;
    si.si_code = SI_QUEUE;
    si.si_errno = int(idx);
    si.si_pid = pid_;
    si.si_uid = uid_t(gen_);
    si.si_value.sival_ptr = static_cast<void *>(&g_park);
    const long r = sys::rt_tgsigqueueinfo(pid_, tid, sig_, &si);
    sent_[idx] = tid;
    n_sent_++;
    if (r != 0) sl_->s[idx].store(slot_val(gen_, kCancelled), std::memory_order_relaxed);
  }

  bool in_patched(uint64_t pc) const {
    for (const Range &r : op_.patched)
      if (pc > r.lo && pc < r.hi) return true;
    return false;
  }

  // One thread of this round not yet parked: 1 still pending, 0 settled
  // (gone, or asleep outside the patched bytes), -EBUSY asleep inside them.
  int look_at(uint32_t i) {
    // Counters first: if they are unchanged after the write, the thread
    // has not run since before we saw where it sleeps.
    const uint64_t switches = task_switches(sent_[i]);
    const char state = task_state(sent_[i]);
    if (state == 0 || state == 'Z' || state == 'X') {
      uint64_t e = slot_val(gen_, kSent);
      sl_->s[i].compare_exchange_strong(e, slot_val(gen_, kCancelled));
      return 0;
    }
    uint64_t pc, sp;
    if (state == 'R' || !task_blocked_at(sent_[i], &pc, &sp)) return 1;
    if (in_patched(pc)) {
      why_ = kInside;
      bad_tid_ = sent_[i];
      bad_pc_ = pc;
      return -EBUSY;
    }
    asleep_flag_[i] = 1;
    asleep_[n_asleep_++] = Asleep{i, switches, pc, sp};
    return 0;
  }

  // Waits for the threads signalled since `before`: a few yields for them
  // to take the signal, then /proc for those that have not.
  int wait_round(uint32_t before) {
    const long step_ns = 100000;
    const long max_steps = long(timeout_ms_) * 1000000L / step_ns;
    int stuck_tid = 0;
    for (long step = 0;; step++) {
      bool pending = false;
      for (uint32_t i = before; i < n_sent_; i++) {
        const uint32_t st = uint32_t(sl_->s[i].load(std::memory_order_acquire));
        if (st != kSent || asleep_flag_[i]) continue;
        if (step < 20) {
          pending = true;
          continue;
        }
        const int r = look_at(i);
        if (r < 0) return r;
        if (r > 0) {
          pending = true;
          stuck_tid = sent_[i];
        }
      }
      if (!pending) return 0;
      if (step >= max_steps) {
        why_ = kStuck;
        bad_tid_ = stuck_tid;
        return -EAGAIN;
      }
      if (step < 20)
        sys::sched_yield();
      else
        sys::nanosleep_ns(step_ns);
    }
  }

  const QuiesceOp &op_;
  const uint32_t timeout_ms_;
  int sig_ = 0, pid_ = 0, self_ = 0;
  std::vector<int> tids_, sent_;
  std::vector<uint8_t> asleep_flag_;
  std::vector<Asleep> asleep_;
  uint32_t cap_ = 0, n_sent_ = 0, n_asleep_ = 0, gen_ = 0, busy_ = 0;
  Slots *sl_ = nullptr;
  bool too_many_ = false, ran_ = false;
  enum { kNone, kNotSetUp, kNoTasks, kTooMany, kInside, kStuck } why_ = kNone;
  int bad_tid_ = 0, ran_tid_ = 0;
  uint64_t bad_pc_ = 0;
};

}  // namespace

int quiesce_run(const QuiesceOp &op, uint32_t timeout_ms, std::string *err, std::string *warn, uint32_t *busy) {
  std::lock_guard<std::mutex> lk(g_op_mu);
  Pause p(op, timeout_ms);
  int rc = p.prepare();
  if (rc) {
    p.report(rc, err, warn);
    return rc;
  }
  rc = p.pause_all();
  if (!rc) rc = p.write();
  p.count();
  if (!rc) p.check_asleep(op.write != nullptr && !op.check_only);
  p.release();
  p.report(rc, err, warn);
  if (busy) *busy = p.busy();
  return rc;
}

}  // namespace bh
