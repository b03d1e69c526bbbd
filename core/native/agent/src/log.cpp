// Where the agent's own lines and the programs' trace_printk output go: the
// file or stderr BPFHOOK_AGENT_LOG names, else the region's log ring, else
// nowhere (never the program's stderr unasked).
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "internal.h"

namespace bpfhook::agent {

int g_log_fd = -1;
bool g_log_env = false;
std::atomic<bh_map *> g_log_ring{nullptr};
std::atomic<bh_map *> g_printk_ring{nullptr};

namespace {

uint32_t self_tid() { return uint32_t(syscall(SYS_gettid)); }

void ring_write(bh_map *m, uint32_t a, uint32_t b, const char *msg, size_t len) {
  void *p = bh_ringbuf_reserve(m, 8 + len, 0);
  if (p == nullptr) return;  // full: dropped (the ring counts it)
  auto *u = static_cast<uint32_t *>(p);
  u[0] = a;
  u[1] = b;
  memcpy(u + 2, msg, len);
  bh_ringbuf_submit(p, 0);
}

}  // namespace

void agent_log(int level, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = size_t(n) < sizeof msg ? size_t(n) : sizeof msg - 1;
  if (g_log_env) {
    if (g_log_fd < 0) return;
    char line[900];
    int m = snprintf(line, sizeof line, "bpfhook-agent[%d] %s: %s\n", int(getpid()),
                     level >= kLogErr    ? "error"
                     : level >= kLogWarn ? "warning"
                                         : "info",
                     msg);
    if (m > 0) {
      ssize_t w = write(g_log_fd, line, size_t(m) < sizeof line ? size_t(m) : sizeof line - 1);
      (void)w;
    }
    return;
  }
  bh_map *ring = g_log_ring.load(std::memory_order_acquire);
  if (ring != nullptr) ring_write(ring, uint32_t(getpid()), uint32_t(level), msg, len);
  // No ring and no env: nowhere (never the program's stderr unasked).
}

void trace_sink(void *, const char *msg, size_t len) {
  bh_map *ring = g_printk_ring.load(std::memory_order_acquire);
  if (ring != nullptr) ring_write(ring, uint32_t(getpid()), self_tid(), msg, len);
}

void plugin_log(void *, int level, const char *msg) { agent_log(level, "plugin: %s", msg); }

}  // namespace bpfhook::agent
