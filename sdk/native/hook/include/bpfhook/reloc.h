/* SPDX-License-Identifier: MIT */
/*
 * x86-64 relocator: moves the first instructions of a function elsewhere
 * so that they behave the same there, and says beforehand whether that is
 * possible and how many bytes it takes.
 *
 *   bh_reloc_analyze()  "can the first `min_len` bytes at `pc` be relocated,
 *                        how many bytes of whole instructions is that, and
 *                        how many bytes will the relocated copy need?"
 *   bh_reloc_emit()     writes the copy for a given destination address,
 *                        followed by a jump back to pc + len (unless the last
 *                        instruction never falls through).
 *
 * `code` / `code_len` are the readable bytes at `pc`; the bytes past the
 * relocated ones are scanned (linear sweep, stopping at the first undecodable
 * byte) for branches back into them.  Nothing is patched; both functions are
 * pure and thread-safe.
 *
 * Rewrites: RIP-relative operands get a new displacement (-ERANGE if the
 * target is out of +/-2 GiB of the copy); jcc/jmp rel8/rel32 become rel32
 * forms, or an inverted jcc over `jmp [rip+0]; .quad target` when out of
 * range; loop/jrcxz keep their rel8 over a local jump; `call rel32` and
 * `call r/m` become "push the original return address; jmp target", so the
 * callee returns into the original code and unwinds normally.
 * Refusals (-ENOTSUP): a ret/jmp/trap that ends the function inside the
 * first min_len bytes, a call that is not the last relocated instruction, a
 * branch (or RIP-relative reference) into the relocated bytes other than to
 * their start, 16-bit branches, EIP-relative operands, xbegin, far
 * transfers, `call [rsp+...]`.
 */
#ifndef BPFHOOK_RELOC_H
#define BPFHOOK_RELOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef BH_HOOK_API
#define BH_HOOK_API __attribute__((visibility("default")))
#endif

#define BH_RELOC_MAX_INSNS 16

struct bh_reloc_plan {
  size_t sz;
  uint32_t min_len; /* bytes asked for */
  uint32_t len;     /* bytes of whole instructions covering them */
  uint32_t n_insns;
  uint32_t out_len;                     /* bytes bh_reloc_emit writes for this dest (for
                                           dest 0: the most it can need) */
  uint8_t insn_off[BH_RELOC_MAX_INSNS]; /* each instruction's offset */
  uint16_t out_off[BH_RELOC_MAX_INSNS]; /* ... and its copy's offset */
  uint8_t falls_through;                /* 1 if the copy ends with the jump back */
  uint8_t padding_at;                   /* the bytes from this offset to len are padding after a final
                                           ret/jmp (a probe right before a function's end); 0: none */
  uint8_t padding_upto;                 /* IN (read before the rest is cleared): the patch may run past a
                                           final ret/jmp over padding bytes (int3, nop forms) up to this
                                           offset from pc, where the caller knows nothing else lives (the
                                           function's end rounded up to its alignment); 0: never */
  uint8_t _pad[5];
};
#define bh_reloc_plan__last_field _pad

/* 0 or -EINVAL / -ENOTSUP / -ERANGE / -ENOEXEC (undecodable); `err` gets
 * "0x401000: function too short: ret at +3 ends it inside the 5 bytes to
 * patch" style messages.  `dest` 0 = not known yet. */
BH_HOOK_API int bh_reloc_analyze(const void *code, size_t code_len, uint64_t pc, uint32_t min_len, uint64_t dest,
                                 struct bh_reloc_plan *plan, char *err, size_t err_sz);

/* As analyze, then writes plan->out_len bytes to `out` (-ENOSPC if
 * out_cap is smaller).  `dest` must be the address the bytes will run at. */
BH_HOOK_API int bh_reloc_emit(const void *code, size_t code_len, uint64_t pc, uint32_t min_len, uint64_t dest,
                              void *out, size_t out_cap, struct bh_reloc_plan *plan, char *err, size_t err_sz);

/* Checks a patch of [pc+patch_off, +patch_len) against the whole function
 * at `pc` (`size` bytes of it at `code`), decoded linearly from its start:
 * patch_off must be an instruction boundary (-EINVAL: "+0x10 is inside the
 * mov at +0xe (4 bytes): nearest instruction boundaries +0xe and +0x12"),
 * and no instruction anywhere in the function may branch or refer to the
 * inside of the patch (-ENOTSUP).  `strict` (the function's size is known):
 * every byte must decode and the last instruction must end at `size`
 * (-ENOTSUP otherwise: inline data or a wrong size); not strict: the scan
 * stops quietly at the first undecodable byte after the patch. */
BH_HOOK_API int bh_reloc_check_function(const void *code, size_t size, uint64_t pc, uint32_t patch_off,
                                        uint32_t patch_len, int strict, char *err, size_t err_sz);

#ifdef __cplusplus
}
#endif

#endif /* BPFHOOK_RELOC_H */
