// The ptrace injector: see ../README.md for the sequence and its limits.
#include "bpfhook/inject.h"

#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "elf_dynsym.h"

namespace bpfhook::inject {

namespace {

constexpr uint32_t kDefaultTimeoutMs = 5000;
// Where the called function returns to: address 0 faults with SIGSEGV, which
// we see as a signal-delivery-stop with rip == 0 and suppress.
constexpr uint64_t kReturnAddr = 0;
constexpr int kRtldNow = 2;
constexpr uint64_t kRedZone = 128;
// Extra room below the red zone, so that nothing the interrupted code might
// still read just below rsp (there should be none) is overwritten.
constexpr uint64_t kStackSlack = 256;
constexpr size_t kMaxPath = 4096;

struct Error {
  int code = 0;
  std::string msg;
};

int fail(Error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail(Error *e, int code, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  e->code = code;
  e->msg = buf;
  return code;
}

uint64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

std::string proc_path(int pid, const char *what) { return "/proc/" + std::to_string(pid) + "/" + what; }

// One line of /proc/PID/status ("TracerPid:", "Uid:", "State:"), "" if absent.
std::string status_field(int pid, const char *key) {
  std::ifstream in(proc_path(pid, "status"));
  std::string line;
  const size_t klen = strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, klen, key) == 0) {
      size_t i = klen;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
      return line.substr(i);
    }
  }
  return "";
}

std::string comm_of(int pid) {
  std::ifstream in(proc_path(pid, "comm"));
  std::string s;
  std::getline(in, s);
  return s.empty() ? "?" : s;
}

int yama_scope() {
  std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
  int v = -1;
  if (!(in >> v)) return -1;
  return v;
}

// Why ptrace of `pid` is (or would be) refused, as precisely as /proc says.
// Returns 0 if nothing is known against it.
int diagnose(int pid, Error *e) {
  struct stat st {};
  if (stat(proc_path(pid, "").c_str(), &st) != 0) return fail(e, -ESRCH, "inject: no such process %d", pid);
  std::string state = status_field(pid, "State:");
  if (!state.empty() && (state[0] == 'Z' || state[0] == 'X'))
    return fail(e, -ESRCH, "inject: process %d has exited (state %s)", pid, state.c_str());
  std::string tracer = status_field(pid, "TracerPid:");
  if (!tracer.empty() && tracer != "0") {
    int tp = atoi(tracer.c_str());
    return fail(e, -EPERM, "inject: process %d is already traced by PID %d (%s)", pid, tp, comm_of(tp).c_str());
  }
  if (geteuid() != 0) {
    unsigned ruid = 0, euid = 0, suid = 0;
    std::string uids = status_field(pid, "Uid:");
    if (sscanf(uids.c_str(), "%u %u %u", &ruid, &euid, &suid) == 3 &&
        (ruid != geteuid() || euid != geteuid() || suid != geteuid()))
      return fail(e, -EPERM,
                  "inject: process %d belongs to another user (uid %u, we are %u) and we lack CAP_SYS_PTRACE", pid,
                  ruid, geteuid());
    if (yama_scope() == 1 && getppid() != pid)
      return fail(e, -EPERM,
                  "inject: Yama ptrace_scope=1 (/proc/sys/kernel/yama/ptrace_scope) lets a process trace only its "
                  "descendants without CAP_SYS_PTRACE; process %d is not one (run as root or set the scope to 0)",
                  pid);
  }
  int scope = yama_scope();
  if (scope == 3)
    return fail(e, -EPERM, "inject: Yama ptrace_scope=3 forbids all ptrace on this system (process %d)", pid);
  if (scope == 2 && geteuid() != 0)
    return fail(e, -EPERM, "inject: Yama ptrace_scope=2 allows ptrace only with CAP_SYS_PTRACE (process %d)", pid);
  return 0;
}

struct Mapping {
  uint64_t start = 0, end = 0, offset = 0;
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string perms, path;
};

std::vector<Mapping> read_maps(int pid) {
  std::vector<Mapping> out;
  std::ifstream in(proc_path(pid, "maps"));
  std::string line;
  while (std::getline(in, line)) {
    Mapping m;
    char perms[8] = {};
    int consumed = 0;
    if (sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %x:%x %" SCNu64 " %n", &m.start, &m.end, perms,
               &m.offset, &m.dev_major, &m.dev_minor, &m.inode, &consumed) < 7)
      continue;
    m.perms = perms;
    if (consumed > 0 && static_cast<size_t>(consumed) <= line.size()) m.path = line.substr(consumed);
    out.push_back(std::move(m));
  }
  return out;
}

bool is_libc(const std::string &path) {
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  // glibc >= 2.34 installs libc.so.6 itself; older ones libc-2.NN.so.
  return base == "libc.so.6" ||
         (base.compare(0, 5, "libc-") == 0 && base.size() > 8 && base.compare(base.size() - 3, 3, ".so") == 0);
}

// The lowest mapping of the file `st` (same inode, and same device or same
// path: overlayfs shows the lower file's device in maps), 0 if none.
uint64_t find_mapped(const std::vector<Mapping> &maps, const struct stat &st, const std::string &path) {
  uint64_t lowest = 0;
  for (const auto &m : maps) {
    if (m.inode != st.st_ino) continue;
    bool same_dev = m.dev_major == major(st.st_dev) && m.dev_minor == minor(st.st_dev);
    if (!same_dev && m.path != path) continue;
    if (lowest == 0 || m.start < lowest) lowest = m.start;
  }
  return lowest;
}

// A seized, stopped target. The destructor restores what was saved and
// detaches, so every return path leaves the target as it was.
class Session {
 public:
  Session(int pid, uint32_t timeout_ms) : pid_(pid), timeout_ms_(timeout_ms) {}
  ~Session() { finish(nullptr); }
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  int attach(Error *e) {
    if (ptrace(PTRACE_SEIZE, pid_, nullptr, nullptr) != 0) {
      int err = errno;
      if (err == ESRCH) return fail(e, -ESRCH, "inject: no such process %d", pid_);
      if (err == EPERM) {
        if (diagnose(pid_, e) != 0) return e->code;
        return fail(e, -EPERM,
                    "inject: ptrace(PTRACE_SEIZE, %d) refused (EPERM): no CAP_SYS_PTRACE, a non-dumpable target, a "
                    "security module, or Yama ptrace_scope=%d",
                    pid_, yama_scope());
      }
      return fail(e, -err, "inject: ptrace(PTRACE_SEIZE, %d): %s", pid_, strerror(err));
    }
    seized_ = true;
    if (ptrace(PTRACE_INTERRUPT, pid_, nullptr, nullptr) != 0)
      return fail(e, -errno, "inject: ptrace(PTRACE_INTERRUPT, %d): %s", pid_, strerror(errno));
    int rc = wait_stop(e, /*in_call=*/false, nullptr);
    if (rc != 0) return rc;
    if (ptrace(PTRACE_GETREGS, pid_, nullptr, &saved_) != 0)
      return fail(e, -errno, "inject: PTRACE_GETREGS on %d: %s", pid_, strerror(errno));
    // The called code (dlopen, memcpy with AVX ...) clobbers vector
    // registers the interrupted code may still hold: save the whole XSAVE
    // area (fallback: the legacy FXSAVE area) and put it back after.
    xstate_.resize(64 * 1024);
    iovec iov{xstate_.data(), xstate_.size()};
    if (ptrace(PTRACE_GETREGSET, pid_, reinterpret_cast<void *>(NT_X86_XSTATE), &iov) == 0) {
      xstate_.resize(iov.iov_len);
    } else {
      xstate_.clear();
      if (ptrace(PTRACE_GETFPREGS, pid_, nullptr, &fpregs_) != 0)
        return fail(e, -errno, "inject: PTRACE_GETFPREGS on %d: %s", pid_, strerror(errno));
      have_fpregs_ = true;
    }
    saved_ok_ = true;
    return 0;
  }

  // Calls fn(a0, a1) in the target on its own stack; *ret = rax.
  int call(uint64_t fn, uint64_t a0, uint64_t a1, uint64_t stack_top, uint64_t *ret, const char *what, Error *e) {
    user_regs_struct r = saved_;
    // The SysV ABI wants rsp 16-byte aligned at the call, so 8 mod 16 at
    // function entry, where the return address sits.
    uint64_t sp = stack_top & ~uint64_t{15};
    sp -= 8;
    uint64_t ra = kReturnAddr;
    int rc = write_mem(sp, &ra, sizeof ra, e);
    if (rc != 0) return rc;
    r.rsp = sp;
    r.rip = fn;
    r.rdi = a0;
    r.rsi = a1;
    r.rax = 0;
    // orig_rax -1: not in a syscall, so the kernel does not apply the
    // interrupted syscall's restart (rip -= 2, rax = nr) to our call. The
    // saved registers keep it, so the restart happens after restore.
    r.orig_rax = static_cast<uint64_t>(-1);
    r.eflags &= ~uint64_t{0x400 | 0x100};  // DF clear (ABI), no single step
    if (ptrace(PTRACE_SETREGS, pid_, nullptr, &r) != 0)
      return fail(e, -errno, "inject: PTRACE_SETREGS on %d: %s", pid_, strerror(errno));
    dirty_ = true;
    if (ptrace(PTRACE_CONT, pid_, nullptr, nullptr) != 0)
      return fail(e, -errno, "inject: PTRACE_CONT on %d: %s", pid_, strerror(errno));
    stopped_ = false;
    rc = wait_stop(e, /*in_call=*/true, what);
    if (rc != 0) return rc;
    user_regs_struct out{};
    if (ptrace(PTRACE_GETREGS, pid_, nullptr, &out) != 0)
      return fail(e, -errno, "inject: PTRACE_GETREGS on %d: %s", pid_, strerror(errno));
    *ret = out.rax;
    return 0;
  }

  // The target's stack pointer when it was stopped (valid after attach).
  uint64_t saved_rsp() const { return saved_.rsp; }

  int write_mem(uint64_t addr, const void *buf, size_t len, Error *e) {
    iovec local{const_cast<void *>(buf), len};
    iovec remote{reinterpret_cast<void *>(addr), len};
    if (process_vm_writev(pid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return 0;
    // Fallback (process_vm_writev denied or partial): word by word, keeping
    // the bytes past the end of the last word.
    const auto *p = static_cast<const uint8_t *>(buf);
    for (size_t off = 0; off < len; off += 8) {
      uint64_t word = 0;
      size_t n = len - off < 8 ? len - off : 8;
      if (n < 8) {
        errno = 0;
        long old = ptrace(PTRACE_PEEKDATA, pid_, reinterpret_cast<void *>(addr + off), nullptr);
        if (errno != 0) return fail(e, -EFAULT, "inject: cannot read target %d memory at 0x%" PRIx64, pid_, addr + off);
        word = static_cast<uint64_t>(old);
      }
      memcpy(&word, p + off, n);
      if (ptrace(PTRACE_POKEDATA, pid_, reinterpret_cast<void *>(addr + off), reinterpret_cast<void *>(word)) != 0)
        return fail(e, -EFAULT, "inject: cannot write target %d memory at 0x%" PRIx64, pid_, addr + off);
    }
    return 0;
  }

  // A NUL-terminated string of at most cap-1 bytes at addr.
  std::string read_string(uint64_t addr, size_t cap) {
    std::string s;
    while (s.size() + 1 < cap) {
      char buf[256];
      // Never cross a page in one read, so an unmapped next page does not
      // lose the bytes before it.
      size_t room = 4096 - ((addr + s.size()) & 4095);
      size_t n = room < sizeof buf ? room : sizeof buf;
      iovec local{buf, n};
      iovec remote{reinterpret_cast<void *>(addr + s.size()), n};
      ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      if (got <= 0) break;
      size_t len = strnlen(buf, static_cast<size_t>(got));
      s.append(buf, len);
      if (len < static_cast<size_t>(got)) break;
    }
    if (s.size() >= cap) s.resize(cap - 1);
    return s;
  }

  // Restores registers (if changed) and detaches; re-delivers a signal the
  // target received while stopped. Records the first failure in e.
  void finish(Error *e) {
    if (!seized_) return;
    if (!stopped_) {
      // Still running our call (timeout): stop it before restoring.
      ptrace(PTRACE_INTERRUPT, pid_, nullptr, nullptr);
      Error ignored;
      timeout_ms_ = 1000;
      if (wait_stop(&ignored, /*in_call=*/false, nullptr) != 0 && !seized_) return;
    }
    if (stopped_ && saved_ok_ && dirty_) {
      if (ptrace(PTRACE_SETREGS, pid_, nullptr, &saved_) != 0 && e != nullptr && e->code == 0)
        fail(e, -errno, "inject: restoring registers of %d: %s", pid_, strerror(errno));
      if (!xstate_.empty()) {
        iovec iov{xstate_.data(), xstate_.size()};
        if (ptrace(PTRACE_SETREGSET, pid_, reinterpret_cast<void *>(NT_X86_XSTATE), &iov) != 0 && e != nullptr &&
            e->code == 0)
          fail(e, -errno, "inject: restoring FP/vector state of %d: %s", pid_, strerror(errno));
      } else if (have_fpregs_) {
        ptrace(PTRACE_SETFPREGS, pid_, nullptr, &fpregs_);
      }
      dirty_ = false;
    }
    int sig = pending_.empty() ? 0 : pending_[0];
    ptrace(PTRACE_DETACH, pid_, nullptr, reinterpret_cast<void *>(static_cast<intptr_t>(sig)));
    seized_ = false;
    // Further signals that arrived while we held the target: send them
    // again (standard signals coalesce anyway).
    for (size_t i = 1; i < pending_.size(); i++) kill(pid_, pending_[i]);
  }

 private:
  // Waits (bounded) for the target to stop: in_call, for the fault at
  // kReturnAddr; otherwise for the PTRACE_INTERRUPT stop. Signals that
  // arrive meanwhile are held back for finish() to re-deliver.
  int wait_stop(Error *e, bool in_call, const char *what) {
    const uint64_t deadline = now_ms() + timeout_ms_;
    useconds_t nap = 100;
    for (;;) {
      int st = 0;
      pid_t w = waitpid(pid_, &st, __WALL | WNOHANG);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        seized_ = false;
        return fail(e, -ESRCH, "inject: waitpid(%d): %s", pid_, strerror(errno));
      }
      if (w == 0) {
        if (now_ms() >= deadline) {
          if (in_call)
            return fail(e, -ETIMEDOUT,
                        "inject: %s in process %d did not return within %u ms (registers restored; the target may "
                        "still hold the loader lock)",
                        what, pid_, timeout_ms_);
          return fail(e, -ETIMEDOUT, "inject: process %d did not stop within %u ms", pid_, timeout_ms_);
        }
        usleep(nap);
        if (nap < 5000) nap *= 2;
        continue;
      }
      if (WIFEXITED(st) || WIFSIGNALED(st)) {
        seized_ = false;
        return fail(e, -ESRCH, "inject: process %d exited during the injection (%s %d)", pid_,
                    WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
      }
      if (!WIFSTOPPED(st)) continue;
      const int sig = WSTOPSIG(st);
      const int event = st >> 16;
      if (event == PTRACE_EVENT_STOP) {
        // The interrupt (or a group stop). During a call it only means
        // someone stopped the process: let our call go on.
        if (!in_call) {
          stopped_ = true;
          return 0;
        }
        ptrace(PTRACE_CONT, pid_, nullptr, nullptr);
        continue;
      }
      if (!in_call && dirty_ && sig == SIGSEGV) {
        // finish() after a timeout: the call may have just returned to
        // kReturnAddr. That fault is ours, not the target's.
        user_regs_struct r{};
        ptrace(PTRACE_GETREGS, pid_, nullptr, &r);
        if (r.rip == kReturnAddr) {
          stopped_ = true;
          return 0;
        }
      }
      if (in_call && (sig == SIGSEGV || sig == SIGBUS)) {
        stopped_ = true;
        user_regs_struct r{};
        ptrace(PTRACE_GETREGS, pid_, nullptr, &r);
        if (r.rip == kReturnAddr) return 0;
        return fail(e, -EFAULT,
                    "inject: %s in process %d faulted (signal %d at rip 0x%llx); registers restored, fault suppressed",
                    what, pid_, sig, static_cast<unsigned long long>(r.rip));
      }
      // A signal for the target: hold it back, deliver it at detach.
      if (pending_.size() < 32) pending_.push_back(sig);
      ptrace(PTRACE_CONT, pid_, nullptr, nullptr);
    }
  }

  int pid_;
  uint32_t timeout_ms_;
  bool seized_ = false, stopped_ = false, saved_ok_ = false, dirty_ = false, have_fpregs_ = false;
  user_regs_struct saved_{};
  user_fpregs_struct fpregs_{};
  std::vector<uint8_t> xstate_;
  std::vector<int> pending_;
};

struct Symbols {
  uint64_t dlopen = 0, dlerror = 0;
  bool libc_dlopen_mode = false;
};

int find_symbols(int pid, const std::vector<Mapping> &maps, Symbols *out, Error *e) {
  const Mapping *libc = nullptr;
  for (const auto &m : maps)
    if (m.offset == 0 && is_libc(m.path)) {
      libc = &m;
      break;
    }
  if (libc == nullptr) return fail(e, -ENOSYS, "inject: process %d has no libc mapped (static binary?)", pid);
  // The target's view of the file (containers, chroots).
  const std::string file = proc_path(pid, "root") + libc->path;
  std::string err;
  DynsymLookup dl;
  int rc = find_dynsym(file, "dlopen", &dl, &err);
  if (rc == 0) {
    DynsymLookup de;
    if (find_dynsym(file, "dlerror", &de, &err) == 0) out->dlerror = libc->start - de.first_load + de.value;
  } else if (rc == -ENOENT) {
    // glibc < 2.34: dlopen lives in libdl, libc has the private one.
    rc = find_dynsym(file, "__libc_dlopen_mode", &dl, &err);
    out->libc_dlopen_mode = true;
  }
  if (rc == -ENOENT)
    return fail(e, -ENOSYS, "inject: %s in process %d has neither dlopen (glibc >= 2.34) nor __libc_dlopen_mode",
                libc->path.c_str(), pid);
  if (rc != 0) return fail(e, rc, "inject: process %d: %s", pid, err.c_str());
  out->dlopen = libc->start - dl.first_load + dl.value;
  return 0;
}

// Calls the library's exported `symbol`(arg) in the stopped target.
int call_export(Session &s, int pid, const char *path, const char *symbol, const char *arg, bh_inject_result *res,
                Error *e) {
  const std::string file = proc_path(pid, "root") + path;
  struct stat st {};
  if (stat(file.c_str(), &st) != 0)
    return fail(e, -ENOENT, "inject: library '%s' does not exist for process %d", path, pid);
  uint64_t base = find_mapped(read_maps(pid), st, path);
  if (base == 0) return fail(e, -ENOENT, "inject: library '%s' is not mapped in process %d", path, pid);
  DynsymLookup d;
  std::string err;
  int rc = find_dynsym(file, symbol, &d, &err);
  if (rc == -ENOENT) return fail(e, -ENOENT, "inject: library '%s' exports no function '%s'", path, symbol);
  if (rc != 0) return fail(e, rc, "inject: '%s': %s", path, err.c_str());
  const uint64_t fn = base - d.first_load + d.value;
  // The argument below the red zone (and some slack), 16-byte aligned; the
  // call's frame below it.
  uint64_t str = 0;
  uint64_t top = s.saved_rsp() - kRedZone - kStackSlack;
  if (arg != nullptr) {
    const size_t len = strnlen(arg, kMaxPath);
    if (len >= kMaxPath) return fail(e, -ENAMETOOLONG, "inject: call argument longer than %zu bytes", kMaxPath);
    str = (top - (len + 1)) & ~uint64_t{15};
    rc = s.write_mem(str, arg, len + 1, e);
    if (rc != 0) return rc;
    top = str;
  }
  uint64_t ret = 0;
  rc = s.call(fn, str, 0, top, &ret, symbol, e);
  if (rc != 0) return rc;
  res->called = 1;
  res->call_ret = static_cast<int>(static_cast<uint32_t>(ret));  // an int return: eax
  return 0;
}

int inject(int pid, const char *path, uint32_t timeout_ms, uint32_t flags, const char *call_symbol,
           const char *call_arg, bh_inject_result *res, Error *e) {
  if (pid <= 0) return fail(e, -EINVAL, "inject: bad pid %d", pid);
  if (path == nullptr || path[0] == '\0') return fail(e, -EINVAL, "inject: empty library path");
  const size_t path_len = strnlen(path, kMaxPath);
  if (path_len >= kMaxPath) return fail(e, -ENAMETOOLONG, "inject: library path longer than %zu bytes", kMaxPath);
  if (pid == getpid()) return fail(e, -EINVAL, "inject: process %d is this process (use dlopen)", pid);
  if (kill(pid, 0) != 0 && errno == ESRCH) return fail(e, -ESRCH, "inject: no such process %d", pid);
  if (diagnose(pid, e) != 0) return e->code;
  if (call_symbol != nullptr && call_symbol[0] == '\0') call_symbol = nullptr;

  if ((flags & BH_INJECT_NO_PATH_CHECK) == 0) {
    if (path[0] != '/') return fail(e, -EINVAL, "inject: library path '%s' is not absolute", path);
    // The path as the target will resolve it: through its root.
    struct stat st {};
    const std::string seen = proc_path(pid, "root") + path;
    if (stat(seen.c_str(), &st) != 0)
      return fail(e, -ENOENT, "inject: library '%s' does not exist for process %d (%s)", path, pid, strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(e, -EINVAL, "inject: library '%s' is not a regular file", path);
    uint64_t base = find_mapped(read_maps(pid), st, path);
    if (base != 0) {
      res->reused = 1;
      res->base = base;
      if (call_symbol == nullptr) return 0;
    }
  }

  Symbols syms;
  int rc = 0;
  if (!res->reused) {
    rc = find_symbols(pid, read_maps(pid), &syms, e);
    if (rc != 0) return rc;
    res->used_libc_dlopen_mode = syms.libc_dlopen_mode ? 1 : 0;
  }

  Session s(pid, timeout_ms);
  rc = s.attach(e);
  if (rc == 0 && !res->reused) {
    // The path string goes below the red zone (and some slack), 16-byte
    // aligned; the call's frame goes below it.
    uint64_t str = (s.saved_rsp() - kRedZone - kStackSlack - (path_len + 1)) & ~uint64_t{15};
    rc = s.write_mem(str, path, path_len + 1, e);
    uint64_t handle = 0;
    if (rc == 0) rc = s.call(syms.dlopen, str, kRtldNow, str, &handle, "dlopen", e);
    if (rc == 0 && handle == 0) {
      std::string text = "(no dlerror: __libc_dlopen_mode)";
      if (syms.dlerror != 0) {
        uint64_t msg = 0;
        rc = s.call(syms.dlerror, 0, 0, str, &msg, "dlerror", e);
        text = rc == 0 && msg != 0 ? s.read_string(msg, sizeof res->dlerror) : "(dlerror returned NULL)";
      }
      if (rc == 0) {
        snprintf(res->dlerror, sizeof res->dlerror, "%s", text.c_str());
        rc = fail(e, -ENOEXEC, "inject: dlopen of '%s' in process %d failed: %s", path, pid, res->dlerror);
      }
    }
    res->handle = handle;
  }
  if (rc == 0 && call_symbol != nullptr) rc = call_export(s, pid, path, call_symbol, call_arg, res, e);
  s.finish(e);
  if (rc == 0 && e->code != 0) rc = e->code;
  if (rc == 0 && !res->reused) {
    struct stat st {};
    if (stat((proc_path(pid, "root") + path).c_str(), &st) == 0) res->base = find_mapped(read_maps(pid), st, path);
  }
  return rc;
}

}  // namespace

}  // namespace bpfhook::inject

extern "C" int bh_inject_dlopen(int pid, const char *path, const struct bh_inject_opts *opts,
                                struct bh_inject_result *result, char *err, size_t err_len) {
  using namespace bpfhook::inject;
  // Fields past the caller's sz keep their defaults (libbpf's OPTS rule).
  uint32_t timeout_ms = kDefaultTimeoutMs;
  uint32_t flags = 0;
  const char *call_symbol = nullptr, *call_arg = nullptr;
  if (opts != nullptr) {
    if (opts->sz >= offsetof(bh_inject_opts, timeout_ms) + sizeof opts->timeout_ms && opts->timeout_ms != 0)
      timeout_ms = opts->timeout_ms;
    if (opts->sz >= offsetof(bh_inject_opts, flags) + sizeof opts->flags) flags = opts->flags;
    if (opts->sz >= offsetof(bh_inject_opts, call_arg) + sizeof opts->call_arg) {
      call_symbol = opts->call_symbol;
      call_arg = opts->call_arg;
    }
  }
  bh_inject_result local{};
  bh_inject_result *res = result != nullptr ? result : &local;
  *res = bh_inject_result{};
  Error e;
  int rc = inject(pid, path, timeout_ms, flags, call_symbol, call_arg, res, &e);
  if (err != nullptr && err_len > 0) snprintf(err, err_len, "%s", rc == 0 ? "" : e.msg.c_str());
  return rc;
}
