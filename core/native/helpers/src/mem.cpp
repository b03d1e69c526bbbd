// probe_read family and strncmp.
//
// In user space there is one address space, so the kernel/user variants
// (probe_read_kernel*, probe_read_user*) and the legacy probe_read* all read
// the same memory; only the string semantics differ from the plain reads.

#include <errno.h>

#include "internal.h"

extern "C" {

uint64_t bh_helper_probe_read(uint64_t dst, uint64_t size, uint64_t unsafe_ptr, uint64_t, uint64_t) {
  // The kernel's size argument is a u32.
  return uint64_t(
      int64_t(bh_safe_read(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(unsafe_ptr), uint32_t(size))));
}

uint64_t bh_helper_probe_read_str(uint64_t dst, uint64_t size, uint64_t unsafe_ptr, uint64_t, uint64_t) {
  return uint64_t(
      bh_safe_read_str(reinterpret_cast<char *>(dst), reinterpret_cast<const void *>(unsafe_ptr), uint32_t(size)));
}

uint64_t bh_helper_strncmp(uint64_t s1, uint64_t s1_sz, uint64_t s2, uint64_t, uint64_t) {
  // bpf_strncmp: s1 is program memory of s1_sz bytes (not necessarily
  // NUL-terminated), s2 a NUL-terminated read-only string; both are memory
  // the verifier vouches for, so plain loads. Compares as unsigned chars and
  // answers -1 / 0 / 1 like the kernel's strncmp.
  const auto *a = reinterpret_cast<const unsigned char *>(s1);
  const auto *b = reinterpret_cast<const unsigned char *>(s2);
  const uint32_t n = uint32_t(s1_sz);
  for (uint32_t i = 0; i < n; i++) {
    if (a[i] != b[i]) return a[i] < b[i] ? uint64_t(-1) : 1;
    if (a[i] == 0) break;
  }
  return 0;
}

}  // extern "C"
