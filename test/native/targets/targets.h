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
int64_t bh_target_escape(int64_t depth); /* longjmps out from `depth` nested calls */
int64_t bh_target_empty(int64_t x);      /* for benchmarks: returns x */
int64_t bh_target_usdt(int64_t x);       /* for benchmarks: a USDT probe bpfhook_bench:hit(x), returns x */
uint64_t bh_target_calls(void);          /* calls of bh_target_double that ran its body */
/* A leaf keeping locals at -4 and -128 below rsp (the red zone) across the
 * instruction at BH_TARGET_REDZONE_PROBE: returns 2x + 1. */
int64_t bh_target_redzone(int64_t x);
#define BH_TARGET_REDZONE_PROBE 10
/* libc free's first shape: test rdi, rdi; je rel32 (at BH_TARGET_JE32_PROBE)
 * to `return -1`; else returns 1. */
int64_t bh_target_je32(int64_t p);
#define BH_TARGET_JE32_PROBE 3
/* push rbp; mov rbp,rsp; mov rax,rdi; pop rbp; ret; then two undecodable
 * bytes inside its symbol's size (data in the code). */
int64_t bh_target_inline_data(int64_t x);
/* out[i] = a[i] + b[i] for 8 floats, through a function taking and
 * returning __m256 (AVX code; the caller checks the CPU first). */
void bh_target_m256_add(const float *a, const float *b, float *out);

#ifdef __cplusplus
}
#endif
