#include "testlib.h"

#define API __attribute__((visibility("default"), noinline, noclone))

/* The volatile local gives it a frame: push rbp; mov rbp,rsp; lea; mov; mov; pop; ret. */
API int tl_add(int a, int b) {
  volatile int sum = a + b;
  return sum;
}

API long tl_fib(long n) { return n < 2 ? n : tl_fib(n - 1) + tl_fib(n - 2); }

API double tl_mix(long a, long b, long c, long d, long e, long f, long g, long h, double x, double y) {
  return (double)(a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h) + x * y;
}

API int tl_lj_inner(jmp_buf *env, int v) {
  if (v) longjmp(*env, v);
  return 7;
}

API int tl_lj_outer(jmp_buf *env, int v) { return tl_lj_inner(env, v) + 1; }

API long tl_helper(long x) { return x * 3; }

__attribute__((visibility("default"), noinline, noclone, target("avx2"))) __m256 tl_m256_add(__m256 a, __m256 b) {
  return _mm256_add_ps(a, b);
}

API long double tl_ld(long double x) { return x * 2 + 1; }

/* Hand-written shapes the compiler will not produce on demand. */
__asm__(
    ".text\n"
    ".globl tl_tail\n .type tl_tail,@function\n .p2align 4\n"
    "tl_tail:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  pop %rbp\n"
    "  mov $1,%esi\n"
    "  jmp tl_add@PLT\n"
    ".size tl_tail, .-tl_tail\n"

    ".globl tl_tiny\n .type tl_tiny,@function\n .p2align 4\n"
    "tl_tiny:\n"
    "  mov %edi,%eax\n  ret\n"
    ".size tl_tiny, .-tl_tiny\n"

    ".globl tl_loopy\n .type tl_loopy,@function\n .p2align 4\n"
    "tl_loopy:\n"
    "  xor %eax,%eax\n"
    "1: add $1,%eax\n"
    "  sub $1,%edi\n"
    "  jnz 1b\n"
    "  ret\n"
    ".size tl_loopy, .-tl_loopy\n"

    ".globl tl_syscall0\n .type tl_syscall0,@function\n .p2align 4\n"
    "tl_syscall0:\n"
    "  mov %edi,%eax\n"
    "  syscall\n"
    "  nopl 0(%rax)\n"
    "  ret\n"
    ".size tl_syscall0, .-tl_syscall0\n"

    ".globl tl_add_at10\n .type tl_add_at10,@function\n .p2align 4\n"
    "  .skip 10, 0xcc\n"
    "tl_add_at10:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  lea (%rdi,%rsi),%eax\n  pop %rbp\n  ret\n"
    ".size tl_add_at10, .-tl_add_at10\n"

    ".globl tl_add_at13\n .type tl_add_at13,@function\n .p2align 4\n"
    "  .skip 13, 0xcc\n"
    "tl_add_at13:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  lea (%rdi,%rsi),%eax\n  pop %rbp\n  ret\n"
    ".size tl_add_at13, .-tl_add_at13\n"

    ".globl tl_redzone\n .type tl_redzone,@function\n .p2align 4\n"
    "tl_redzone:\n"
    "  mov %edi,-4(%rsp)\n"   /* +0, 4 bytes */
    "  mov %edi,-128(%rsp)\n" /* +4, 4 bytes */
    "  xor %eax,%eax\n"       /* +8, 2 bytes */
    "  mov $1,%ecx\n"         /* +10: TL_REDZONE_PROBE */
    "  add -4(%rsp),%eax\n"
    "  add -128(%rsp),%eax\n"
    "  add %ecx,%eax\n"
    "  ret\n"
    ".size tl_redzone, .-tl_redzone\n"

    ".globl tl_je32\n .type tl_je32,@function\n .p2align 4\n"
    "tl_je32:\n"
    "  test %rdi,%rdi\n"                    /* +0, 3 bytes */
    "  .byte 0x0f,0x84\n .long 2f-1f\n1:\n" /* +3: je rel32 */
    "  mov $1,%eax\n"
    "  ret\n"
    "  .skip 32, 0x90\n"
    "2: mov $-1,%eax\n"
    "  ret\n"
    ".size tl_je32, .-tl_je32\n"

    ".globl tl_inline_data\n .type tl_inline_data,@function\n .p2align 4\n"
    "tl_inline_data:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  mov %edi,%eax\n  pop %rbp\n  ret\n"
    "  .byte 0x06,0x06\n"
    ".size tl_inline_data, .-tl_inline_data\n"

    ".globl tl_calls_first\n .type tl_calls_first,@function\n .p2align 4\n"
    "tl_calls_first:\n"
    "  call tl_helper@PLT\n"
    "  add $1,%rax\n"
    "  ret\n"
    ".size tl_calls_first, .-tl_calls_first\n");
