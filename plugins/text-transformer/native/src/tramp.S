/* The transformer's fixed code: the shared save/restore around the C hooks,
 * the page-0 handler and its run/skip/vfork tails (also the re-issue targets
 * of Syscall User Dispatch), the raw syscall and the SIGSYS restorer.
 *
 * All of it lives in its own section, bh_tt_text: that range is the region
 * Syscall User Dispatch always allows, so every `syscall` here runs without
 * trapping, and the scanner never patches it.
 *
 * Frame built by SAVE_ALL (rbx points at it; see struct Frame in internal.h):
 *   r15 r14 r13 r12 r11 r10 r9 r8 rbp rdi rsi rdx rcx rbx rax rflags ret info
 * `info` is pushed by the caller before its `call`: a Site pointer (REL32
 * stub) or a small tag (page-0 / re-issue paths).
 *
 * Vector state: xmm0-15 are saved (the hooks are C compiled for baseline
 * x86-64: SSE only; legacy SSE instructions leave the upper ymm/zmm halves
 * and the AVX-512 mask registers untouched, and the hooks use no x87).
 * The direction flag is cleared for the C code; RESTORE_ALL sets it again
 * if it was set.
 */
        .section bh_tt_text,"ax",@progbits
        .globl bh_tt_text_begin
        .hidden bh_tt_text_begin
bh_tt_text_begin:

.macro SAVE_ALL
        pushfq
        push %rax
        push %rbx
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %rbp
        push %r8
        push %r9
        push %r10
        push %r11
        push %r12
        push %r13
        push %r14
        push %r15
        cld
        mov %rsp, %rbx
        sub $256, %rsp
        and $-16, %rsp
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

.macro RESTORE_ALL
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
        mov %rbx, %rsp
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rbp
        pop %rdi
        pop %rsi
        pop %rdx
        pop %rcx
        pop %rbx
        /* Flags without popfq (~7 ns each here): DF by std, OF by an add
         * that overflows iff it was set, then SF ZF AF PF CF by sahf. The
         * system flags (TF, IF, AC, ...) are not changed by the hooks. */
        testb $4, 9(%rsp)           /* DF, bit 10 */
        jz 1f
        std
1:      movzbl 9(%rsp), %eax        /* bits 8-15 */
        shr $3, %eax
        and $1, %eax                /* OF, bit 11 */
        add $0x7f, %al              /* OF = 1 iff al was 1 */
        mov 8(%rsp), %ah            /* SF ZF AF PF CF */
        sahf
        pop %rax
        lea 8(%rsp), %rsp
.endm

/* Called from a stub or the page-0 handler after `lea -128(%rsp),%rsp;
 * push info`. Returns to [ret], which the C side may have redirected (skip,
 * vfork), with every register as the frame now holds it. */
        .globl bh_tt_enter_asm
        .hidden bh_tt_enter_asm
        .type bh_tt_enter_asm,@function
bh_tt_enter_asm:
        SAVE_ALL
        mov %rbx, %rdi
        call bh_tt_c_enter
        RESTORE_ALL
        ret

        .globl bh_tt_exit_asm
        .hidden bh_tt_exit_asm
        .type bh_tt_exit_asm,@function
bh_tt_exit_asm:
        SAVE_ALL
        mov %rbx, %rdi
        call bh_tt_c_exit
        RESTORE_ALL
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
        .globl bh_tt_page0_run_syscall
        .hidden bh_tt_page0_run_syscall
bh_tt_page0_run_syscall:            /* also where SUD re-issues clone/clone3/rt_sigreturn */
        syscall
        lea -128(%rsp), %rsp
        pushq $2                    /* TAG_WORD: return address and number at -8(rsp) */
        call bh_tt_exit_asm
        lea 136(%rsp), %rsp
        jmp *%rcx                   /* rcx = the return address, as the kernel leaves it */

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
