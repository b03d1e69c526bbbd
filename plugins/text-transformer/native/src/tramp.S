/* The transformer's fixed code: the shared save/restore around the C hooks,
 * the page-0 handler and its run/skip/vfork tails (also the re-issue targets
 * of Syscall User Dispatch), the raw syscall and the SIGSYS restorer.
 *
 * All of it lives in its own section, bh_tt_text: that range is the region
 * Syscall User Dispatch always allows, so every `syscall` here runs without
 * trapping, and the scanner never patches it.
 *
 * Frame built by SAVE_GPR (rbx points at it; see struct Frame in internal.h):
 *   headroom rax rdi rsi rdx r10 r8 r9 site mechanism rcx rbx rflags ret info
 * headroom..mechanism is the bh_tt_call_frame the hooks get, the registers
 * pushed where the call's nr and args go (no copy). Only what the C side may
 * change is saved: it keeps the callee-saved registers (rbp, r12-r15)
 * itself, and r11 is the kernel's to clobber. Every store here is one more
 * for the store buffer to drain before a program's first locked instruction.
 * `info` is pushed by the caller before its `call`: a Site pointer (REL32
 * stub) or a small tag (page-0 / re-issue paths).
 *
 * Vector state: none is saved on enter's common path (no C of ours, hooks
 * that keep every vector register); on every other path
 * xmm0-15 are saved (the C side is baseline x86-64: SSE only; legacy SSE
 * instructions leave the upper ymm/zmm halves and the AVX-512 mask
 * registers untouched, and it uses no x87).
 * The direction flag is cleared for the C code; RESTORE_GPR sets it again
 * if it was set.
 */
#include "internal.h"

        .section bh_tt_text,"ax",@progbits
        .globl bh_tt_text_begin
        .hidden bh_tt_text_begin
bh_tt_text_begin:

.macro SAVE_GPR
        pushfq
        push %rbx
        push %rcx
        lea -16(%rsp), %rsp         /* site, mechanism: the C side's */
        push %r9
        push %r8
        push %r10
        push %rdx
        push %rsi
        push %rdi
        push %rax
        lea -8(%rsp), %rsp          /* headroom: the hooks' */
        cld
        mov %rsp, %rbx
        and $-16, %rsp
.endm

.macro SAVE_XMM
        sub $256, %rsp
        movaps %xmm0, 0(%rsp)
        movaps %xmm1, 16(%rsp)
        movaps %xmm2, 32(%rsp)
        movaps %xmm3, 48(%rsp)
        movaps %xmm4, 64(%rsp)
        movaps %xmm5, 80(%rsp)
        movaps %xmm6, 96(%rsp)
        movaps %xmm7, 112(%rsp)
        movaps %xmm8, 128(%rsp)
        movaps %xmm9, 144(%rsp)
        movaps %xmm10, 160(%rsp)
        movaps %xmm11, 176(%rsp)
        movaps %xmm12, 192(%rsp)
        movaps %xmm13, 208(%rsp)
        movaps %xmm14, 224(%rsp)
        movaps %xmm15, 240(%rsp)
.endm

.macro RESTORE_XMM
        movaps 0(%rsp), %xmm0
        movaps 16(%rsp), %xmm1
        movaps 32(%rsp), %xmm2
        movaps 48(%rsp), %xmm3
        movaps 64(%rsp), %xmm4
        movaps 80(%rsp), %xmm5
        movaps 96(%rsp), %xmm6
        movaps 112(%rsp), %xmm7
        movaps 128(%rsp), %xmm8
        movaps 144(%rsp), %xmm9
        movaps 160(%rsp), %xmm10
        movaps 176(%rsp), %xmm11
        movaps 192(%rsp), %xmm12
        movaps 208(%rsp), %xmm13
        movaps 224(%rsp), %xmm14
        movaps 240(%rsp), %xmm15
.endm

.macro RESTORE_GPR
        mov %rbx, %rsp
        mov 16(%rsp), %rdi
        mov 24(%rsp), %rsi
        mov 32(%rsp), %rdx
        mov 40(%rsp), %r10
        mov 48(%rsp), %r8
        mov 56(%rsp), %r9
        mov 80(%rsp), %rcx
        mov 88(%rsp), %rbx
        /* Flags without popfq (~7 ns each here): DF by std, OF by an add
         * that overflows iff it was set, then SF ZF AF PF CF by sahf. The
         * system flags (TF, IF, AC, ...) are not changed by the hooks. */
        testb $4, 97(%rsp)          /* DF, bit 10 */
        jz 1f
        std
1:      movzbl 97(%rsp), %eax       /* bits 8-15 */
        shr $3, %eax
        and $1, %eax                /* OF, bit 11 */
        add $0x7f, %al              /* OF = 1 iff al was 1 */
        mov 96(%rsp), %ah           /* SF ZF AF PF CF */
        sahf
        mov 8(%rsp), %rax
        lea 104(%rsp), %rsp         /* at the return address */
.endm

/* Jumps to `miss` unless bit rax (< BH_TT_MAX_NR) of bitmap `map` is set.
 * Clobbers rcx, rdx. */
.macro TEST_NR map, miss
        cmp $BH_TT_MAX_NR, %rax
        jae \miss
        mov %rax, %rcx
        shr $6, %rcx
        lea \map(%rip), %rdx
        mov (%rdx,%rcx,8), %rdx
        bt %rax, %rdx
        jnc \miss
.endm

/* The call's site (from `site`, a register) and mechanism, into the frame. */
.macro SET_SITE site, mech
        mov \site, BH_TT_FRAME_SITE(%rbx)
        movq $\mech, BH_TT_FRAME_MECH(%rbx)   /* mechanism, reserved 0 */
.endm

/* hook(bh_tt_fast_user, &frame's call, &ret), ret the word at (%rsp) (the
 * caller reserved 16 bytes, alignment kept); `fn` an operand. */
.macro CALL_HOOK fn
        mov bh_tt_fast_user(%rip), %rdi
        lea BH_TT_FRAME_CALL(%rbx), %rsi
        mov %rsp, %rdx
        call *\fn
.endm

/* Called from a stub or the page-0 handler after `lea -128(%rsp),%rsp;
 * push info`. Returns to [ret], which the C side may have redirected (skip,
 * vfork), with every register as the frame now holds it. */
        .globl bh_tt_enter_asm
        .hidden bh_tt_enter_asm
        .type bh_tt_enter_asm,@function
bh_tt_enter_asm:
        SAVE_GPR
        /* The common case, with no C of ours and no vector register saved:
         * a call whose number wants enter alone (bh_tt_simple), to hooks
         * that keep every vector register (bh_tt_fast_hooks). */
        mov BH_TT_FRAME_NR(%rbx), %rax
        TEST_NR bh_tt_simple, 5f
        jmp 6f
        /* Enter and exit both wanted (bh_tt_simple_exit), from a static
         * stub (its number at the site: the exit side knows it): RUN goes to
         * the stub's path that makes the call and then calls exit; SKIP runs
         * the exit hook here, on the skipped call's result, as the kernel's
         * sys_exit sees an overridden call. */
5:      TEST_NR bh_tt_simple_exit, 2f
        mov BH_TT_FRAME_INFO(%rbx), %rsi
        test $7, %rsi               /* a Site of the static path (not a tag, not dynamic) */
        jnz 2f
        mov bh_tt_fast_hooks(%rip), %rcx
        test %rcx, %rcx
        jz 2f
        mov BH_TT_SITE_ADDR(%rsi), %rax
        SET_SITE %rax, 1            /* BH_TT_MECH_REL32 */
        sub $16, %rsp
        CALL_HOOK BH_TT_HOOKS_ENTER(%rcx)
        mov BH_TT_FRAME_INFO(%rbx), %rsi
        test %eax, %eax
        jnz 7f
        mov BH_TT_SITE_RUN_EXIT(%rsi), %rax
        mov %rax, BH_TT_FRAME_RET(%rbx)
        jmp 1f
7:      mov bh_tt_fast_hooks(%rip), %rcx
        CALL_HOOK BH_TT_HOOKS_EXIT(%rcx)
        jmp 8f                      /* the stub's skip path, as below */
6:      mov bh_tt_fast_hooks(%rip), %rcx
        test %rcx, %rcx
        jz 2f
        mov BH_TT_FRAME_INFO(%rbx), %rsi
        cmp $1, %rsi                /* kTagPage0 */
        je 3f
        /* A stub's: the Site's address; RUN goes back to the stub's path that
         * makes the call, SKIP to its skip path. */
        and $-8, %rsi
        mov BH_TT_SITE_ADDR(%rsi), %rax
        SET_SITE %rax, 1            /* BH_TT_MECH_REL32 */
        sub $16, %rsp
        CALL_HOOK BH_TT_HOOKS_ENTER(%rcx)
        test %eax, %eax
        jz 1f
8:      mov (%rsp), %rax            /* BH_TT_SKIP: its result, and the skip path */
        mov %rax, BH_TT_FRAME_NR(%rbx)
        mov BH_TT_FRAME_INFO(%rbx), %rsi
        and $-8, %rsi
        mov BH_TT_SITE_STUB_SKIP(%rsi), %rax
        mov %rax, BH_TT_FRAME_RET(%rbx)
        jmp 1f
        /* Page 0's: the site is 2 bytes before the return address its `call
         * *%rax` pushed (at the program's rsp - 8). Not the calls that start
         * on another stack or share this one (their return needs the word
         * the C side places). RUN: rcx 0 in the frame tells
         * bh_tt_page0_entry to make the call without exit; SKIP: to its skip
         * path with the return address in rcx. */
3:      cmp $56, %eax               /* SYS_clone */
        je 2f
        cmp $58, %eax               /* SYS_vfork */
        je 2f
        cmp $435, %eax              /* SYS_clone3 */
        je 2f
        mov BH_TT_FRAME_ORIG-8(%rbx), %rax
        sub $2, %rax
        SET_SITE %rax, 2            /* BH_TT_MECH_PAGE0 */
        sub $16, %rsp
        CALL_HOOK BH_TT_HOOKS_ENTER(%rcx)
        test %eax, %eax
        jnz 4f
        movq $0, BH_TT_FRAME_RCX(%rbx)
        jmp 1f
4:      mov (%rsp), %rax
        mov %rax, BH_TT_FRAME_NR(%rbx)
        mov BH_TT_FRAME_ORIG-8(%rbx), %rax
        mov %rax, BH_TT_FRAME_RCX(%rbx)
        lea bh_tt_page0_skip(%rip), %rax
        mov %rax, BH_TT_FRAME_RET(%rbx)
        jmp 1f
2:      SAVE_XMM
        mov %rbx, %rdi
        call bh_tt_c_enter
        RESTORE_XMM
1:      RESTORE_GPR
        ret

        .globl bh_tt_exit_asm
        .hidden bh_tt_exit_asm
        .type bh_tt_exit_asm,@function
bh_tt_exit_asm:
        SAVE_GPR
        /* A static stub's call whose number wants exit and nothing of ours
         * (bh_tt_simple_exit), to hooks that keep every vector register:
         * the hook straight from here. The frame's rax slot holds the
         * result; the call's nr goes there while the hook runs (the C side's
         * order, bh_tt_c_exit). */
        mov BH_TT_FRAME_INFO(%rbx), %rsi
        test $7, %rsi               /* a Site of the static path (tags have low bits) */
        jnz 2f
        movslq BH_TT_SITE_NR(%rsi), %rax   /* -1 (not known) fails TEST_NR too */
        TEST_NR bh_tt_simple_exit, 2f
        mov bh_tt_fast_hooks(%rip), %rcx
        test %rcx, %rcx
        jz 2f
        mov BH_TT_HOOKS_EXIT(%rcx), %r8
        test %r8, %r8
        jz 2f
        sub $16, %rsp
        mov BH_TT_FRAME_NR(%rbx), %rdx
        mov %rdx, (%rsp)            /* int64_t ret: the call's result */
        mov %rax, BH_TT_FRAME_NR(%rbx)
        mov BH_TT_SITE_ADDR(%rsi), %rax
        SET_SITE %rax, 1            /* BH_TT_MECH_REL32 */
        CALL_HOOK %r8
        mov (%rsp), %rax
        mov %rax, BH_TT_FRAME_NR(%rbx)  /* rax: the result, maybe replaced */
        jmp 1f
2:      SAVE_XMM
        mov %rbx, %rdi
        call bh_tt_c_exit
        RESTORE_XMM
1:      RESTORE_GPR
        ret

/* Page 0's slide ends in `jmp *` to here, with [rsp] = the return address
 * the site's `call *%rax` pushed (site + 2) and rax = the number. */
        .globl bh_tt_page0_entry
        .hidden bh_tt_page0_entry
bh_tt_page0_entry:
        lea -120(%rsp), %rsp        /* rsp = caller's rsp - 128 */
        pushq $1                    /* TAG_PAGE0 */
        call bh_tt_enter_asm
        lea 136(%rsp), %rsp         /* the caller's rsp again */
        jrcxz 5f                    /* enter's fast path: no exit (flags untouched) */
        .globl bh_tt_page0_run_syscall
        .hidden bh_tt_page0_run_syscall
bh_tt_page0_run_syscall:            /* also where SUD re-issues clone/clone3/rt_sigreturn */
        syscall
        lea -128(%rsp), %rsp
        pushq $2                    /* TAG_WORD: return address and number at -8(rsp) */
        call bh_tt_exit_asm
        lea 136(%rsp), %rsp
        jmp *%rcx                   /* rcx = the return address, as the kernel leaves it */
        /* The call without exit: the return address the site's `call`
         * pushed is still at -8(rsp) (in the red zone, which signal frames
         * skip; calls that move or share the stack never come here). */
5:      syscall
        jmp *-8(%rsp)

        .globl bh_tt_page0_skip
        .hidden bh_tt_page0_skip
bh_tt_page0_skip:
        lea 136(%rsp), %rsp
        jmp *%rcx

        .globl bh_tt_page0_vfork
        .hidden bh_tt_page0_vfork
bh_tt_page0_vfork:
        lea 136(%rsp), %rsp
        .globl bh_tt_page0_vfork_syscall
        .hidden bh_tt_page0_vfork_syscall
bh_tt_page0_vfork_syscall:
        syscall
        lea -128(%rsp), %rsp
        pushq $3                    /* TAG_VFORK: the word is in the thread's TLS */
        call bh_tt_exit_asm
        lea 136(%rsp), %rsp
        jmp *%rcx

/* int64_t bh_tt_raw_syscall(nr, a0..a5) */
        .globl bh_tt_raw_syscall
        .type bh_tt_raw_syscall,@function
bh_tt_raw_syscall:
        mov %rdi, %rax
        mov %rsi, %rdi
        mov %rdx, %rsi
        mov %rcx, %rdx
        mov %r8, %r10
        mov %r9, %r8
        mov 8(%rsp), %r9
        syscall
        ret

/* sa_restorer of the transformer's own signal handlers. */
        .globl bh_tt_restorer
        .hidden bh_tt_restorer
bh_tt_restorer:
        mov $15, %eax
        syscall
        ud2

        .globl bh_tt_text_end
        .hidden bh_tt_text_end
bh_tt_text_end:
        .section .note.GNU-stack,"",@progbits
