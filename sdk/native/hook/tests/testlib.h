/* Functions for hook_selftest and hook_bench to hook.  Built as a shared
 * library with frame-pointer prologues so each is long enough to patch. */
#ifndef BH_TESTLIB_H
#define BH_TESTLIB_H
#include <setjmp.h>
#ifdef __cplusplus
extern "C" {
#endif
int tl_add(int a, int b);
long tl_fib(long n);
/* 8 integer arguments (two on the stack) and two doubles. */
double tl_mix(long a, long b, long c, long d, long e, long f, long g, long h, double x, double y);
int tl_lj_inner(jmp_buf *env, int v); /* longjmps to env when v != 0 */
int tl_lj_outer(jmp_buf *env, int v); /* tl_lj_inner(env, v) + 1 */
int tl_tail(int x);                   /* push rbp; mov rbp,rsp; pop rbp; jmp tl_add (x, 1 from rsi) */
int tl_tiny(int x);                   /* mov eax, edi; ret: too short to patch */
int tl_loopy(int n);                  /* a loop that jumps back to +2 */
long tl_calls_first(long x);          /* starts with call rel32: relocated as push+jmp */
long tl_helper(long x);
/* mov eax, edi; syscall; nopl 0(rax); ret: a thread blocked in it sits at
 * +4, inside the 5 bytes a hook overwrites. */
long tl_syscall0(long nr);
/* a + b at odd addresses: 10 mod 16 (the 5-byte patch crosses an 8-byte
 * word but fits a 16-byte block: cmpxchg16b) and 13 mod 16 (it fits
 * neither: written while threads are paused). */
int tl_add_at10(int a, int b);
int tl_add_at13(int a, int b);
/* A leaf that keeps two locals in the red zone below rsp (-4 and -128)
 * across the instruction at TL_REDZONE_PROBE (mov ecx, 1): returns 2x + 1. */
int tl_redzone(int x);
#define TL_REDZONE_PROBE 10
/* libc free's first shape: test rdi, rdi; je rel32 (6 bytes) to a return of
 * -1; else returns 1.  TL_JE32_PROBE is the je. */
int tl_je32(long p);
#define TL_JE32_PROBE 3
/* push rbp; mov rbp,rsp; pop rbp; ret; then two undecodable bytes inside
 * the symbol's size (data in the code). */
int tl_inline_data(int x);
/* A long double result (in st0). */
long double tl_ld(long double x);
/* __m256 arguments and return value (AVX, built with target("avx2")). */
#include <immintrin.h>
__m256 tl_m256_add(__m256 a, __m256 b);
#ifdef __cplusplus
}
#endif
#endif
