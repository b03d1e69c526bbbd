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

/* A USDT probe site for bench:uprobe's usdt row (the USDT plugin of
 * examples/usdt-plugin). The store after the site keeps it 5 bytes from the
 * function's end (the hook patches 5). Without <sys/sdt.h> the function has
 * no probe and the row is skipped. */
#if defined(__has_include)
#if __has_include(<sys/sdt.h>)
#include <sys/sdt.h>
#define BH_TARGET_USDT(x) STAP_PROBE1(bpfhook_bench, hit, x)
#endif
#endif
#ifndef BH_TARGET_USDT
#define BH_TARGET_USDT(x) ((void)(x))
#endif
static volatile int64_t last_usdt;
int64_t bh_target_usdt(int64_t x) {
  BH_TARGET_USDT(x);
  last_usdt = x;
  return x;
}

/* Hand-written: the compiler will not keep red-zone locals across a chosen
 * instruction, nor pick a rel32 je, on demand. */
__asm__(
    ".text\n"
    ".globl bh_target_redzone\n .type bh_target_redzone,@function\n .p2align 4\n"
    "bh_target_redzone:\n"
    "  mov %rdi,-8(%rsp)\n"   /* +0, 5 bytes */
    "  mov %edi,-128(%rsp)\n" /* +5, 4 bytes */
    "  nop\n"                 /* +9 */
    "  mov $1,%ecx\n"         /* +10: BH_TARGET_REDZONE_PROBE */
    "  mov -8(%rsp),%rax\n"
    "  add %rax,%rax\n"
    "  add %rcx,%rax\n"
    "  movslq -128(%rsp),%rdx\n"
    "  sub %rdi,%rdx\n" /* 0 if the red zone survived */
    "  shl $20,%rdx\n"
    "  add %rdx,%rax\n"
    "  ret\n"
    ".size bh_target_redzone, .-bh_target_redzone\n"

    ".globl bh_target_je32\n .type bh_target_je32,@function\n .p2align 4\n"
    "bh_target_je32:\n"
    "  test %rdi,%rdi\n"
    "  .byte 0x0f,0x84\n .long 2f-1f\n1:\n" /* +3: je rel32 */
    "  mov $1,%eax\n"
    "  ret\n"
    "  .skip 32, 0x90\n"
    "2: mov $-1,%rax\n"
    "  ret\n"
    ".size bh_target_je32, .-bh_target_je32\n"

    /* Data inside the function's symbol (two bytes no decoder accepts): a
     * scan for branches into a patch cannot cover it. Never called. */
    ".globl bh_target_inline_data\n .type bh_target_inline_data,@function\n .p2align 4\n"
    "bh_target_inline_data:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  mov %rdi,%rax\n  pop %rbp\n  ret\n"
    "  .byte 0x06,0x06\n"
    ".size bh_target_inline_data, .-bh_target_inline_data\n");

#include <immintrin.h>

__attribute__((noinline, noclone, target("avx2"), visibility("default"))) __m256 bh_target_m256(__m256 a, __m256 b) {
  return _mm256_add_ps(a, b);
}

__attribute__((noinline, target("avx2"))) void bh_target_m256_add(const float *a, const float *b, float *out) {
  __m256 (*volatile fn)(__m256, __m256) = bh_target_m256;
  _mm256_storeu_ps(out, fn(_mm256_loadu_ps(a), _mm256_loadu_ps(b)));
}
