/* The one error-reporting helper of bpfhook's C ABIs.
 *
 * Every C entry point that can fail (the VM's load and compile, the native
 * runtime, the plugins' attach and init) reports the same way: it returns a
 * negative code (-errno, or -1 where the API says so) and fills a
 * caller-owned message buffer, which may be NULL or empty. bh_fail does both
 * in one statement:
 *
 *     return bh_fail(err, err_len, -EINVAL, "prog '%s': pc %u: ...", name, pc);
 *
 * Header-only (static inline) so that a plugin uses it without linking
 * anything of the core; C and C++. Nothing is printed, nothing aborts. */
#ifndef BPFHOOK_ERRMSG_H
#define BPFHOOK_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Formats into err (truncating, always NUL-terminated) and returns code. */
static inline int bh_vfail(char *err, size_t err_len, int code, const char *fmt, va_list ap) {
  if (err != NULL && err_len > 0) vsnprintf(err, err_len, fmt, ap);
  return code;
}

static inline int bh_fail(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int bh_fail(char *err, size_t err_len, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bh_vfail(err, err_len, code, fmt, ap);
  va_end(ap);
  return code;
}

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_ERRMSG_H */
