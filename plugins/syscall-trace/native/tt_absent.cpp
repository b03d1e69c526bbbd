// The text transformer's C ABI stood in for the dispatcher's own selftest
// (sc_dispatch_selftest drives the hooks directly, with no transformer in
// its process): install fails with -ENOSYS naming what is missing.
#include <cerrno>

#include "bpfhook/errmsg.h"
#include "bpfhook/text_transformer.h"

extern "C" {

int bh_tt_install(const struct bh_tt_opts *, const struct bh_tt_hooks *, void *, char *err, size_t err_len) {
  return bh_fail(err, err_len, -ENOSYS,
                 "the text transformer is not built in (plugins/text-transformer had no CMakeLists.txt when "
                 "this plugin was built)");
}

int bh_tt_set_interest(const uint32_t *, size_t, int) { return 0; }
int bh_tt_set_exit_interest(const uint32_t *, size_t, int) { return 0; }
int bh_tt_uninstall(void) { return 0; }
int bh_tt_get_stats(struct bh_tt_stats *) { return -ENOSYS; }

int64_t bh_tt_raw_syscall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
  register uint64_t r10 asm("r10") = a3;
  register uint64_t r8 asm("r8") = a4;
  register uint64_t r9 asm("r9") = a5;
  int64_t ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

}  // extern "C"
