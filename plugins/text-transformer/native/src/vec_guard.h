// Keeping the vector state that C reaching libc may change: the
// syscall-trace dispatcher's around programs that call helpers, and the
// transformer's own around its scan of new code on an mmap's exit.
//
// The transformer saves xmm0-15 around C of its own and around hooks that
// do not keep them (BH_TT_HOOKS_F_KEEP_VECTORS). C that reaches libc, whose string functions use AVX
// and AVX-512 on machines that have them (ymm upper halves, zmm16-31 and the
// opmask registers; vzeroupper clears the upper halves of all ymm). The
// kernel preserves all of that across `syscall`, so the dispatcher keeps it
// around such runs:
//  - XINUSE (xgetbv 1) tells which components hold anything. On AVX-512
//    machines libc's EVEX string functions leave zmm16-31 and the opmask
//    registers in use nearly always, while the upper halves of zmm0-15 are
//    clean (vzeroupper): then zmm16-31 and k0-7 are saved with plain moves
//    (about 10 ns) and, after the run, restored, the upper halves cleared
//    again with vzeroupper;
//  - components in their initial state (all zero) are not saved, only
//    zeroed again after the run;
//  - when the upper halves of ymm/zmm0-15 hold values (rare at a system
//    call), everything the mask covers goes through XSAVEC / XRSTOR (about
//    40 ns measured here).
// A JIT program that calls no helper, or only the core's vector-clean ones
// (BH_PROG_F_VECTOR_CLEAN), touches none of it and pays nothing.
#pragma once

#include <cstdint>

namespace bh_tt {

// XSAVE state components (XCR0 / XINUSE bits) a helper may change.
constexpr uint64_t kAvx = 1ull << 2, kOpmask = 1ull << 5, kZmmHi256 = 1ull << 6, kHi16Zmm = 1ull << 7;
constexpr uint64_t kLow16Upper = kAvx | kZmmHi256;  // upper halves of ymm/zmm0-15

struct VecCaps {
  uint64_t mask = 0;     // XCR0 & (AVX | opmask | ZMM_Hi256 | Hi16_ZMM): what helpers may change
  uint32_t size = 0;     // bytes of the XSAVE area for `mask`
  bool compact = false;  // XSAVEC (else XSAVE)
  bool xinuse = false;   // xgetbv with ecx = 1
};

extern VecCaps g_vec;

// Before the first guard (CPUID leaf 0xD, XGETBV); once per process, any
// number of calls.
void vec_init();

// Largest save area vec_init can ask for (AVX + opmask + ZMM_Hi256 +
// Hi16_ZMM after the 576-byte legacy area and header, with alignment).
constexpr uint32_t kVecAreaMax = 3072;

class VecGuard {
 public:
  explicit VecGuard(bool needed) {
    if (!needed || g_vec.mask == 0) return;
    const uint64_t inuse = g_vec.xinuse ? xinuse() & g_vec.mask : g_vec.mask;
    if ((inuse & kLow16Upper) != 0 || !g_vec.xinuse) {
      mode_ = kSaved;
      save();
      return;
    }
    mode_ = kMoved;
    moved_ = inuse;
    if (moved_ & kHi16Zmm) save_hi16();
    if (moved_ & kOpmask) save_opmask();
  }
  ~VecGuard() {
    if (mode_ == kSaved) {
      restore();
    } else if (mode_ == kMoved) {
      if (g_vec.mask & kAvx) vzeroupper();
      if (g_vec.mask & kHi16Zmm) (moved_ & kHi16Zmm) ? restore_hi16() : zero_hi16();
      if (g_vec.mask & kOpmask) (moved_ & kOpmask) ? restore_opmask() : zero_opmask();
    }
  }
  VecGuard(const VecGuard &) = delete;
  VecGuard &operator=(const VecGuard &) = delete;

 private:
  enum Mode { kNone, kMoved, kSaved };
  static uint64_t xinuse();
  void save();
  void restore();
  static void vzeroupper();
  void save_hi16();
  void restore_hi16();
  static void zero_hi16();
  void save_opmask();
  void restore_opmask();
  static void zero_opmask();
  Mode mode_ = kNone;
  uint64_t moved_ = 0;
  alignas(64) uint8_t area_[kVecAreaMax];
};

}  // namespace bh_tt
