#include "textpoke.h"

#include <cpuid.h>
#include <linux/membarrier.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "sys.h"

namespace bh {
namespace {

bool g_cx16 = false;
bool g_sync_core = false;

struct Pages {
  void *start;
  size_t len;
};

Pages pages_of(const void *dst, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(dst) & ~uintptr_t(4095);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(dst) + n + 4095) & ~uintptr_t(4095);
  return Pages{reinterpret_cast<void *>(a), e - a};
}

bool cas16(void *p, uint64_t &olo, uint64_t &ohi, uint64_t nlo, uint64_t nhi) {
  bool ok;
  __asm__ volatile("lock cmpxchg16b %1"
                   : "=@ccz"(ok), "+m"(*static_cast<volatile __int128 *>(p)), "+a"(olo), "+d"(ohi)
                   : "b"(nlo), "c"(nhi)
                   : "memory");
  return ok;
}

// Replaces bytes [at, at+n) of a little-endian word (no memcpy: this runs
// while threads are paused and memcpy itself may be hooked).
uint64_t splice(uint64_t word, unsigned at, const uint8_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const unsigned sh = 8 * (at + unsigned(i));
    word = (word & ~(uint64_t(0xff) << sh)) | (uint64_t(src[i]) << sh);
  }
  return word;
}

// Stores n bytes at dst with one aligned 8- or 16-byte store.
void store_atomic(uint8_t *dst, const uint8_t *src, size_t n) {
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if ((d & 7) + n <= 8) {
    auto *q = reinterpret_cast<uint64_t *>(d & ~uintptr_t(7));
    const uint64_t v = splice(__atomic_load_n(q, __ATOMIC_RELAXED), unsigned(d & 7), src, n);
    __atomic_store_n(q, v, __ATOMIC_RELEASE);
    return;
  }
  auto *blk = reinterpret_cast<uint64_t *>(d & ~uintptr_t(15));
  uint64_t lo = __atomic_load_n(&blk[0], __ATOMIC_RELAXED);
  uint64_t hi = __atomic_load_n(&blk[1], __ATOMIC_RELAXED);
  const unsigned at = unsigned(d & 15);
  for (;;) {
    uint64_t nlo = lo, nhi = hi;
    for (size_t i = 0; i < n; i++) {
      const unsigned pos = at + unsigned(i);
      if (pos < 8)
        nlo = splice(nlo, pos, src + i, 1);
      else
        nhi = splice(nhi, pos - 8, src + i, 1);
    }
    if (cas16(blk, lo, hi, nlo, nhi)) return;
  }
}

void store_bytes(uint8_t *dst, const uint8_t *src, size_t n) {
  volatile uint8_t *d = dst;
  for (size_t i = 0; i < n; i++) d[i] = src[i];
}

// Two bytes at once: within an aligned word, or an unaligned 16-bit store
// (atomic on x86 when it does not cross a cache line).
void store2(uint8_t *dst, const uint8_t *src) {
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if ((d & 7) <= 6) {
    store_atomic(dst, src, 2);
  } else {
    const uint16_t v = uint16_t(src[0] | (src[1] << 8));
    __atomic_store_n(reinterpret_cast<uint16_t *>(dst), v, __ATOMIC_RELEASE);
  }
}

}  // namespace

void textpoke_init() {
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) g_cx16 = (c & bit_CMPXCHG16B) != 0;
  g_sync_core = sys::membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0;
}

bool poke_is_atomic(const void *dst, size_t n) {
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if (n == 0) return true;
  if ((d & 7) + n <= 8) return true;
  return g_cx16 && (d & 15) + n <= 16;
}

void sync_cores() {
  if (g_sync_core)
    sys::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
  else
    sys::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);  // IPIs return with iret
}

int poke_atomic(void *dst, const void *src, size_t n, int prot) {
  const Pages p = pages_of(dst, n);
  long rc = sys::mprotect(p.start, p.len, PROT_READ | PROT_WRITE | PROT_EXEC);
  if (rc < 0) return int(rc);
  store_atomic(static_cast<uint8_t *>(dst), static_cast<const uint8_t *>(src), n);
  rc = sys::mprotect(p.start, p.len, prot);
  sync_cores();
  return rc < 0 ? int(rc) : 0;
}

int poke_paused(void *dst, const void *src, size_t n, int prot, bool gate) {
  auto *d = static_cast<uint8_t *>(dst);
  const auto *s = static_cast<const uint8_t *>(src);
  const Pages p = pages_of(dst, n);
  long rc = sys::mprotect(p.start, p.len, PROT_READ | PROT_WRITE | PROT_EXEC);
  if (rc < 0) return int(rc);
  if (poke_is_atomic(dst, n)) {
    store_atomic(d, s, n);
  } else if (!gate || n <= 2) {
    store_bytes(d, s, n);
  } else {
    static const uint8_t spin[2] = {0xeb, 0xfe};  // jmp $
    store2(d, spin);
    sync_cores();
    store_bytes(d + 2, s + 2, n - 2);
    sync_cores();
    store2(d, s);
  }
  rc = sys::mprotect(p.start, p.len, prot);
  sync_cores();
  return rc < 0 ? int(rc) : 0;
}

}  // namespace bh
