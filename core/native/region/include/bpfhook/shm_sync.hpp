// Synchronisation on plain integers that live in shared memory.
//
// The region's structures are plain C structs (region.h, maps' storage) that
// several processes map, so they cannot hold std::atomic or std::mutex
// objects: std::mutex is not process-shared, and std::atomic objects are never
// constructed in memory that another process created. GCC's __atomic builtins
// work on ordinary aligned integers and compile to the same lock-free
// instructions, which are coherent across processes sharing the pages.
#pragma once

#include <sched.h>

#include <cstdint>

namespace bpfhook::shm {

template <class T>
inline T load_relaxed(const T *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
template <class T>
inline T load_acquire(const T *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
template <class T>
inline void store_relaxed(T *p, T v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
template <class T>
inline void store_release(T *p, T v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
template <class T>
inline T fetch_add(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
template <class T>
inline T fetch_add_relaxed(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
template <class T>
inline bool cas(T *p, T &expected, T desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
inline void fence_acquire() { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
inline void fence_release() { __atomic_thread_fence(__ATOMIC_RELEASE); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Backoff for spinning waiters. User-space threads get preempted while
// holding a lock (the kernel's spinlocks disable preemption; ours cannot), so
// after a short spin a waiter yields the CPU instead of burning its time
// slice waiting for a holder that is not running.
class Backoff {
 public:
  void pause() {
    if (++spins_ < 64) {
      cpu_relax();
    } else {
      sched_yield();
    }
  }

 private:
  uint32_t spins_ = 0;
};

// Test-and-test-and-set spinlock on a 32-bit word (0 free, 1 held).
inline void spin_lock(uint32_t *word) {
  uint32_t expected = 0;
  if (__atomic_compare_exchange_n(word, &expected, 1u, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
  Backoff backoff;
  for (;;) {
    while (load_relaxed(word) != 0) backoff.pause();
    expected = 0;
    if (__atomic_compare_exchange_n(word, &expected, 1u, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
  }
}
inline bool spin_trylock(uint32_t *word) {
  uint32_t expected = 0;
  return __atomic_compare_exchange_n(word, &expected, 1u, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
inline void spin_unlock(uint32_t *word) { store_release(word, 0u); }

class SpinGuard {
 public:
  explicit SpinGuard(uint32_t *word) : word_(word) { spin_lock(word_); }
  ~SpinGuard() { spin_unlock(word_); }
  SpinGuard(const SpinGuard &) = delete;
  SpinGuard &operator=(const SpinGuard &) = delete;

 private:
  uint32_t *word_;
};

// A write lock and a sequence count in one 32-bit word ("seqlock").
//
// Writers serialise on it: lock turns an even value odd with a CAS, unlock
// stores the next even value. Every write section therefore changes the
// word twice. Readers take no lock: they note the word, read optimistically,
// then check that the word has not changed; if it has, some writer ran
// during the read and the reader retries. Readers do not wait for odd values:
// writers keep the protected structure consistent at every single store, and
// the change check alone catches the one real hazard, memory that a writer
// retired (and someone reused) while the reader was looking at it. That only
// works if retired memory is handed back for reuse after the writer's unlock,
// which is the rule every user of this class follows.
struct SeqLock {
  static void write_lock(uint32_t *word) {
    Backoff backoff;
    for (;;) {
      uint32_t v = load_relaxed(word);
      if ((v & 1u) == 0 &&
          __atomic_compare_exchange_n(word, &v, v + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        // Keep the protected stores after the odd value is visible (pairs
        // with the readers' acquire fence in read_changed).
        fence_release();
        return;
      }
      backoff.pause();
    }
  }
  static void write_unlock(uint32_t *word) {
    uint32_t v = load_relaxed(word);
    store_release(word, v + 1);
  }
  static uint32_t read_begin(const uint32_t *word) { return load_acquire(word); }
  static bool read_changed(const uint32_t *word, uint32_t seen) {
    fence_acquire();
    return load_relaxed(word) != seen;
  }
};

class SeqWriteGuard {
 public:
  explicit SeqWriteGuard(uint32_t *word) : word_(word) { SeqLock::write_lock(word_); }
  ~SeqWriteGuard() { SeqLock::write_unlock(word_); }
  SeqWriteGuard(const SeqWriteGuard &) = delete;
  SeqWriteGuard &operator=(const SeqWriteGuard &) = delete;

 private:
  uint32_t *word_;
};

}  // namespace bpfhook::shm
