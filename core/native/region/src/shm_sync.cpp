// Slow paths of the region's locks (shm_sync.hpp): waiting with a bound,
// finding out whether a holder died, and taking a dead holder's lock over.
// Only syscalls here (no allocation, no stdio): these run inside probes.
#include "bpfhook/shm_sync.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

extern "C" {
__thread uint32_t bh_shm_self_tid __attribute__((tls_model("initial-exec"))) = 0;
}

namespace bpfhook::shm {
namespace {

// Spins before a waiter starts looking at the clock and the holder.
constexpr uint32_t kSpinsBeforeCheck = 64;
// How often a waiter asks whether the holder still exists.
constexpr uint64_t kOwnerCheckNs = 1000ull * 1000;

// A forked child is a new thread with the forking thread's cache: forget it.
void reset_tid_in_child() { bh_shm_self_tid = 0; }
pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
void register_at_fork() { pthread_atfork(nullptr, nullptr, reset_tid_in_child); }

// "/proc/<tid>/stat" without stdio.
void stat_path(uint32_t tid, char *out) {
  static const char kPrefix[] = "/proc/";
  char digits[12];
  int n = 0;
  do {
    digits[n++] = char('0' + tid % 10);
    tid /= 10;
  } while (tid != 0);
  char *p = out;
  for (const char *s = kPrefix; *s != '\0'; s++) *p++ = *s;
  while (n > 0) *p++ = digits[--n];
  for (const char *s = "/stat"; *s != '\0'; s++) *p++ = *s;
  *p = '\0';
}

// 1: /proc is mounted and shows this process, so a missing entry means a
// missing thread; 0: not usable (then kill() alone decides).
int proc_usable() {
  static int cached = -1;
  int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (v < 0) {
    v = access("/proc/self/stat", R_OK) == 0 ? 1 : 0;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
  }
  return v;
}

}  // namespace

uint32_t self_tid_slow() {
  pthread_once(&g_atfork_once, register_at_fork);
  uint32_t t = uint32_t(syscall(SYS_gettid));
  bh_shm_self_tid = t;
  return t;
}

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

bool owner_dead(uint32_t tid) {
  if (tid == 0 || tid > 0x7fffffffu) return false;
  if (proc_usable()) {
    char path[32];
    stat_path(tid, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH;  // the task went away while we read
    buf[n] = '\0';
    // "tid (comm) S ...": comm may hold ')' and spaces; the state follows
    // the last ')'. A zombie (killed, not yet reaped) or dead task runs no
    // more code, so its locks are free to take.
    const char *close_paren = nullptr;
    for (const char *p = buf; *p != '\0'; p++) {
      if (*p == ')') close_paren = p;
    }
    if (close_paren == nullptr || close_paren[1] != ' ') return false;
    const char state = close_paren[2];
    return state == 'Z' || state == 'X' || state == 'x';
  }
  return kill(pid_t(tid), 0) != 0 && errno == ESRCH;
}

// Both lock kinds wait the same way: spin a little, then yield, look at the
// clock and, every kOwnerCheckNs, at the holder; give up after the budget.
namespace {
struct Waiter {
  explicit Waiter(Wait wait) : budget(wait == Wait::kProbe ? kProbeWaitNs : kUserWaitNs) {}
  // Returns true when it is time to check the holder; sets expired.
  bool tick() {
    if (++spins < kSpinsBeforeCheck) {
      backoff.pause();
      return false;
    }
    uint64_t now = mono_ns();
    if (start == 0) {
      start = now;
      next_check = now;
    }
    if (now - start >= budget) expired = true;
    bool check = now >= next_check || expired;
    if (check) next_check = now + kOwnerCheckNs;
    backoff.pause();
    return check;
  }
  uint64_t budget;
  uint64_t start = 0;
  uint64_t next_check = 0;
  uint32_t spins = 0;
  bool expired = false;
  Backoff backoff;
};
}  // namespace

int spin_lock_slow(uint32_t *word, uint32_t me, Wait wait) {
  Waiter w(wait);
  for (;;) {
    uint32_t v = load_relaxed(word);
    if (v == 0) {
      if (__atomic_compare_exchange_n(word, &v, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return kLocked;
      continue;
    }
    if (v == me) return -EDEADLK;
    if (w.tick()) {
      if (owner_dead(v)) {
        if (__atomic_compare_exchange_n(word, &v, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return kTakenOver;
        continue;  // someone else took it (or it was released): look again
      }
      if (w.expired) return -EBUSY;
    }
  }
}

int spin_try_lock_slow(uint32_t *word, uint32_t me) {
  uint32_t v = load_relaxed(word);
  if (v == 0) {
    return __atomic_compare_exchange_n(word, &v, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? kLocked : -EBUSY;
  }
  if (v == me) return -EDEADLK;
  if (owner_dead(v) && __atomic_compare_exchange_n(word, &v, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    return kTakenOver;
  }
  return -EBUSY;
}

int seq_lock_slow(uint64_t *word, uint32_t me, Wait wait) {
  Waiter w(wait);
  for (;;) {
    uint64_t v = load_relaxed(word);
    if ((v & 1u) == 0) {
      if (__atomic_compare_exchange_n(word, &v, SeqLock::held(SeqLock::count(v) + 1, me), false, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED)) {
        fence_release();
        return kLocked;
      }
      continue;
    }
    const uint32_t owner = SeqLock::owner(v);
    if (owner == me) return -EDEADLK;
    if (w.tick()) {
      // Odd with no owner is never a real writer's word (the CAS that makes
      // it odd stores the tid): something scribbled it, take it.
      if (owner == 0 || owner_dead(owner)) {
        // count() + 2 keeps the word odd and new (see SeqLock).
        if (__atomic_compare_exchange_n(word, &v, SeqLock::held(SeqLock::count(v) + 2, me), false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
          fence_release();
          return kTakenOver;
        }
        continue;
      }
      if (w.expired) return -EBUSY;
    }
  }
}

}  // namespace bpfhook::shm
