#include "targets.h"

#include <setjmp.h>

static uint64_t double_calls;

int64_t bh_target_add(int64_t a, int64_t b) { return a + b; }

int64_t bh_target_args8(int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f, int64_t g, int64_t h) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}

double bh_target_mix(int64_t a, double x, int64_t b, double y) { return (double)a * x + (double)b * y; }

int64_t bh_target_fib(int64_t n) { return n < 2 ? n : bh_target_fib(n - 1) + bh_target_fib(n - 2); }

int64_t bh_target_double(int64_t x) {
  __atomic_fetch_add(&double_calls, 1, __ATOMIC_RELAXED);
  return 2 * x;
}

uint64_t bh_target_calls(void) { return __atomic_load_n(&double_calls, __ATOMIC_RELAXED); }

static jmp_buf escape_point;

static int64_t dive(int64_t depth) {
  if (depth == 0) longjmp(escape_point, 1);
  return bh_target_escape(depth - 1) + 1;
}

/* Re-entered from dive(): only the outermost call sets the jump point. */
static int escape_armed;
int64_t bh_target_escape(int64_t depth) {
  if (!escape_armed) {
    escape_armed = 1;
    if (setjmp(escape_point) != 0) {
      escape_armed = 0;
      return -1;
    }
    int64_t r = dive(depth);
    escape_armed = 0;
    return r;
  }
  return dive(depth);
}

/* Nearly empty, yet not patch-proof: gcc gives leaf functions no prologue,
 * and `return x` alone is 4 bytes, too short to patch. The store (a
 * RIP-relative mov) makes it 10 bytes, like the smallest real functions. */
static volatile int64_t last_empty;
int64_t bh_target_empty(int64_t x) {
  last_empty = x;
  return x;
}
