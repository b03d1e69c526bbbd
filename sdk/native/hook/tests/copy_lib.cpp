// One copy of the hook engine in a shared library, the way every plugin links
// it (bh_hook static, --exclude-libs,ALL).  hook_two_copies loads two of these
// (COPY = a, b): each installs the pause-signal handler on the same signal,
// the second chaining to the first, and each must still pause threads.
#include <atomic>
#include <cerrno>
#include <cstdint>

#include "bpfhook/hook.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {
bh_hook_engine *g_engine = nullptr;
bh_hook_link *g_link = nullptr;
std::atomic<uint64_t> g_hits{0};
char g_err[256];

uint64_t count(void *, struct pt_regs *, struct bh_hook_call *) {
  g_hits.fetch_add(1, std::memory_order_relaxed);
  return 0;
}
}  // namespace

// Creates this copy's engine: installs its handler (once per copy).
EXPORT int CAT(copy_init_, COPY)(void) {
  bh_hook_engine_opts o{};
  o.sz = sizeof o;
  o.errbuf = g_err;
  o.errbuf_sz = sizeof g_err;
  g_engine = bh_hook_engine__new(&o);
  return g_engine ? 0 : -errno;
}

// Attaches a counting entry listener to fn: pauses every other thread.
EXPORT int CAT(copy_attach_, COPY)(void *fn) {
  bh_hook_attach_opts o{};
  o.sz = sizeof o;
  o.errbuf = g_err;
  o.errbuf_sz = sizeof g_err;
  return bh_hook_attach(g_engine, fn, BH_HOOK_ENTRY, count, nullptr, &o, &g_link);
}

EXPORT int CAT(copy_detach_, COPY)(void) { return bh_hook_detach(g_link); }
EXPORT uint64_t CAT(copy_hits_, COPY)(void) { return g_hits.load(); }
EXPORT const char *CAT(copy_error_, COPY)(void) { return g_err; }
EXPORT uint64_t CAT(copy_paused_, COPY)(void) {
  bh_hook_stats s{};
  s.sz = sizeof s;
  bh_hook_get_stats(&s);
  return s.threads_paused;
}
