// See vec_guard.h.
#include "vec_guard.h"

#include <cpuid.h>

#include <cstring>
#include <mutex>

namespace bh_tt {

VecCaps g_vec;

namespace {

void init_caps() {
  uint32_t a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  if (!(c & (1u << 26)) || !(c & (1u << 27))) return;  // no XSAVE / OSXSAVE: SSE at most, saved by the transformer
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (uint64_t(hi) << 32) | lo;
  const uint64_t mask = xcr0 & (kAvx | kOpmask | kZmmHi256 | kHi16Zmm);
  if (mask == 0) return;
  __cpuid_count(7, 0, a, b, c, d);
  const bool bw = (b & (1u << 30)) != 0;  // AVX512BW: kmovq
  __cpuid_count(0xd, 1, a, b, c, d);
  VecCaps v;
  v.mask = mask;
  v.compact = (a & (1u << 1)) != 0;
  // Without AVX512BW the guard's moves cannot keep the opmask registers
  // (kmovq): everything then goes through XSAVE, its saved path.
  v.xinuse = (a & (1u << 2)) != 0 && (!(mask & kOpmask) || bw);
  if (v.compact) {
    uint32_t size = 576;
    for (unsigned i = 2; i < 8; i++) {
      if (!(mask & (1ull << i))) continue;
      uint32_t sa, sb, sc, sd;
      __cpuid_count(0xd, i, sa, sb, sc, sd);
      if (sc & (1u << 1)) size = (size + 63) & ~63u;
      size += sa;
    }
    v.size = size;
  } else {
    __cpuid_count(0xd, 0, a, b, c, d);
    v.size = b;  // the standard layout for everything XCR0 enables
  }
  if (v.size > kVecAreaMax) return;  // unknown future layout: leave it (documented)
  g_vec = v;
}

}  // namespace

void vec_init() {
  static std::once_flag once;
  std::call_once(once, init_caps);
}

uint64_t VecGuard::xinuse() {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
  return (uint64_t(hi) << 32) | lo;
}

void VecGuard::save() {
  // XRSTOR faults on reserved header bytes that are not zero; XSAVEC leaves
  // them as they are.
  memset(area_ + 512, 0, 64);
  const uint32_t lo = uint32_t(g_vec.mask), hi = uint32_t(g_vec.mask >> 32);
  if (g_vec.compact)
    asm volatile("xsavec64 %0" : "=m"(area_) : "a"(lo), "d"(hi) : "memory");
  else
    asm volatile("xsave64 %0" : "=m"(area_) : "a"(lo), "d"(hi) : "memory");
}

void VecGuard::restore() {
  const uint32_t lo = uint32_t(g_vec.mask), hi = uint32_t(g_vec.mask >> 32);
  asm volatile("xrstor64 %0" : : "m"(area_), "a"(lo), "d"(hi) : "memory");
}

void VecGuard::vzeroupper() { asm volatile("vzeroupper" ::: "memory"); }

// zmm16-31 in area_[0, 1024), k0-7 in area_[1024, 1088). kmovq needs
// AVX512BW, which every CPU with the opmask state and 64-bit masks has; a
// CPU without it has no 64-bit opmask state to keep beyond kmovw's 16 bits
// (vec_init then leaves the opmask out).
void VecGuard::save_hi16() {
  asm volatile(
      "vmovdqu64 %%zmm16, 0(%0)\n\t"
      "vmovdqu64 %%zmm17, 64(%0)\n\t"
      "vmovdqu64 %%zmm18, 128(%0)\n\t"
      "vmovdqu64 %%zmm19, 192(%0)\n\t"
      "vmovdqu64 %%zmm20, 256(%0)\n\t"
      "vmovdqu64 %%zmm21, 320(%0)\n\t"
      "vmovdqu64 %%zmm22, 384(%0)\n\t"
      "vmovdqu64 %%zmm23, 448(%0)\n\t"
      "vmovdqu64 %%zmm24, 512(%0)\n\t"
      "vmovdqu64 %%zmm25, 576(%0)\n\t"
      "vmovdqu64 %%zmm26, 640(%0)\n\t"
      "vmovdqu64 %%zmm27, 704(%0)\n\t"
      "vmovdqu64 %%zmm28, 768(%0)\n\t"
      "vmovdqu64 %%zmm29, 832(%0)\n\t"
      "vmovdqu64 %%zmm30, 896(%0)\n\t"
      "vmovdqu64 %%zmm31, 960(%0)\n\t"
      :
      : "r"(area_)
      : "memory");
}

void VecGuard::restore_hi16() {
  asm volatile(
      "vmovdqu64 0(%0), %%zmm16\n\t"
      "vmovdqu64 64(%0), %%zmm17\n\t"
      "vmovdqu64 128(%0), %%zmm18\n\t"
      "vmovdqu64 192(%0), %%zmm19\n\t"
      "vmovdqu64 256(%0), %%zmm20\n\t"
      "vmovdqu64 320(%0), %%zmm21\n\t"
      "vmovdqu64 384(%0), %%zmm22\n\t"
      "vmovdqu64 448(%0), %%zmm23\n\t"
      "vmovdqu64 512(%0), %%zmm24\n\t"
      "vmovdqu64 576(%0), %%zmm25\n\t"
      "vmovdqu64 640(%0), %%zmm26\n\t"
      "vmovdqu64 704(%0), %%zmm27\n\t"
      "vmovdqu64 768(%0), %%zmm28\n\t"
      "vmovdqu64 832(%0), %%zmm29\n\t"
      "vmovdqu64 896(%0), %%zmm30\n\t"
      "vmovdqu64 960(%0), %%zmm31\n\t"
      :
      : "r"(area_)
      : "memory");
}

void VecGuard::zero_hi16() {
  asm volatile(
      "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
      "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
      "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
      "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
      "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
      "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
      "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
      "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
      "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
      "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
      "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
      "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
      "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
      "vpxord %%zmm31, %%zmm31, %%zmm31\n\t" ::
          : "memory");
}

void VecGuard::save_opmask() {
  asm volatile(
      "kmovq %%k0, 0(%0)\n\t"
      "kmovq %%k1, 8(%0)\n\t"
      "kmovq %%k2, 16(%0)\n\t"
      "kmovq %%k3, 24(%0)\n\t"
      "kmovq %%k4, 32(%0)\n\t"
      "kmovq %%k5, 40(%0)\n\t"
      "kmovq %%k6, 48(%0)\n\t"
      "kmovq %%k7, 56(%0)\n\t"
      :
      : "r"(area_ + 1024)
      : "memory");
}

void VecGuard::restore_opmask() {
  asm volatile(
      "kmovq 0(%0), %%k0\n\t"
      "kmovq 8(%0), %%k1\n\t"
      "kmovq 16(%0), %%k2\n\t"
      "kmovq 24(%0), %%k3\n\t"
      "kmovq 32(%0), %%k4\n\t"
      "kmovq 40(%0), %%k5\n\t"
      "kmovq 48(%0), %%k6\n\t"
      "kmovq 56(%0), %%k7\n\t"
      :
      : "r"(area_ + 1024)
      : "memory");
}

void VecGuard::zero_opmask() {
  asm volatile(
      "kxorw %%k0, %%k0, %%k0\n\t"
      "kxorw %%k1, %%k1, %%k1\n\t"
      "kxorw %%k2, %%k2, %%k2\n\t"
      "kxorw %%k3, %%k3, %%k3\n\t"
      "kxorw %%k4, %%k4, %%k4\n\t"
      "kxorw %%k5, %%k5, %%k5\n\t"
      "kxorw %%k6, %%k6, %%k6\n\t"
      "kxorw %%k7, %%k7, %%k7\n\t" ::
          : "memory");
}

}  // namespace bh_tt
