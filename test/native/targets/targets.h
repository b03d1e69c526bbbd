/* Functions for probes to hook: a small C library the tests and benchmarks
 * call through the test addon. Built without inlining or sibling calls so
 * each is a real call with a prologue long enough to patch. */
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int64_t bh_target_add(int64_t a, int64_t b);
int64_t bh_target_args8(int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f, int64_t g, int64_t h);
double bh_target_mix(int64_t a, double x, int64_t b, double y);
int64_t bh_target_fib(int64_t n);
int64_t bh_target_double(int64_t x);
int64_t bh_target_escape(int64_t depth);  /* longjmps out from `depth` nested calls */
int64_t bh_target_empty(int64_t x);       /* for benchmarks: returns x */
uint64_t bh_target_calls(void);           /* calls of bh_target_double that ran its body */

#ifdef __cplusplus
}
#endif
