// Writing to code that other threads may be executing.
#pragma once

#include <cstddef>

namespace bh {

// True if [dst, dst+n) lies in one aligned 8-byte word, or in one aligned
// 16-byte block and the CPU has cmpxchg16b: one store then replaces it, and
// an instruction fetch sees either all old or all new bytes.
bool poke_is_atomic(const void *dst, size_t n);
// One atomic store (poke_is_atomic must hold).  The pages are RWX meanwhile
// (never non-executable), then `prot`.
int poke_atomic(void *dst, const void *src, size_t n, int prot);
// For use while the other threads are paused (see quiesce.h).  With `gate`
// the first two bytes become `jmp $` atomically first, then the rest is
// written, then the first two bytes: a thread that was not paused and
// enters meanwhile spins on byte 0 until the patch is whole.
int poke_paused(void *dst, const void *src, size_t n, int prot, bool gate);
// Serialises instruction fetch on every CPU running this process.
void sync_cores();
void textpoke_init();

}  // namespace bh
