// Raw system calls.
//
// The patcher runs these while other threads are paused inside a signal
// handler, possibly holding libc locks, and the functions being hooked may be
// libc's own wrappers (mprotect, syscall, ...).  So nothing here goes through
// libc: each wrapper is one `syscall` instruction and returns -errno.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/syscall.h>

namespace bh::sys {

inline long call6(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0) {
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

inline long mprotect(void *addr, size_t len, int prot) {
  return call6(SYS_mprotect, reinterpret_cast<long>(addr), static_cast<long>(len), prot);
}
inline void *mmap(void *addr, size_t len, int prot, int flags, int fd = -1, long off = 0) {
  return reinterpret_cast<void *>(
      call6(SYS_mmap, reinterpret_cast<long>(addr), static_cast<long>(len), prot, flags, fd, off));
}
inline bool mmap_failed(void *p) { return reinterpret_cast<uintptr_t>(p) > static_cast<uintptr_t>(-4096); }
inline long munmap(void *addr, size_t len) {
  return call6(SYS_munmap, reinterpret_cast<long>(addr), static_cast<long>(len));
}
inline long futex(const void *uaddr, int op, uint32_t val, const void *timeout = nullptr) {
  return call6(SYS_futex, reinterpret_cast<long>(uaddr), op, static_cast<long>(val), reinterpret_cast<long>(timeout));
}
inline int gettid() { return static_cast<int>(call6(SYS_gettid)); }
inline int getpid() { return static_cast<int>(call6(SYS_getpid)); }
inline long sched_yield() { return call6(SYS_sched_yield); }
inline long rt_tgsigqueueinfo(int tgid, int tid, int sig, void *info) {
  return call6(SYS_rt_tgsigqueueinfo, tgid, tid, sig, reinterpret_cast<long>(info));
}
inline long membarrier(int cmd, unsigned flags = 0) { return call6(SYS_membarrier, cmd, flags, 0); }
inline int openat(int dirfd, const char *path, int flags) {
  return static_cast<int>(call6(SYS_openat, dirfd, reinterpret_cast<long>(path), flags, 0));
}
inline long read(int fd, void *buf, size_t n) {
  return call6(SYS_read, fd, reinterpret_cast<long>(buf), static_cast<long>(n));
}
inline long close(int fd) { return call6(SYS_close, fd); }
inline long getdents64(int fd, void *buf, size_t n) {
  return call6(SYS_getdents64, fd, reinterpret_cast<long>(buf), static_cast<long>(n));
}
inline long nanosleep_ns(long ns) {
  struct {
    long s, ns;
  } ts{ns / 1000000000L, ns % 1000000000L};
  return call6(SYS_nanosleep, reinterpret_cast<long>(&ts), 0);
}
// Copies n bytes at `addr` of our own memory; stops at an unmapped page
// (returns the bytes copied, or -errno if none) instead of faulting.
inline long read_self(void *dst, uint64_t addr, size_t n) {
  struct {
    void *base;
    size_t len;
  } local{dst, n}, remote{reinterpret_cast<void *>(addr), n};
  return call6(SYS_process_vm_readv, call6(SYS_getpid), reinterpret_cast<long>(&local), 1,
               reinterpret_cast<long>(&remote), 1, 0);
}
inline long lseek(int fd, long off, int whence) { return call6(SYS_lseek, fd, off, whence); }

// Reads a small /proc file into buf (NUL-terminated); returns its length or -errno.
long read_file(const char *path, char *buf, size_t cap);

}  // namespace bh::sys
