// Bloom filter maps (BPF_MAP_TYPE_BLOOM_FILTER), as the kernel's
// kernel/bpf/bloom_filter.c: k hash functions over the value, each setting
// or testing one bit of a power-of-two bit array.
//
// No lock: a push only ever sets bits, with atomic OR, and a peek only reads
// them, so any interleaving of pushes and peeks in any processes is correct
// (a peek racing the push of the same value may answer -ENOENT, as in the
// kernel: the push has not happened yet). A holder that dies leaves at most
// a value half added, which can only make later peeks of it pass sooner.
// Nothing in the bit array is an index or a length, so nothing read from the
// region needs a bounds check: the bit index comes from the hash and the
// handle's mask, and the array's size is geometry, checked at open.
#include "map_internal.h"

namespace bpfhook::maps {

namespace {

// The kernel's jhash / jhash2 (include/linux/jhash.h, Bob Jenkins' lookup3),
// so that with BH_F_ZERO_SEED a filter sets the bits the kernel's would.
inline uint32_t rol32(uint32_t w, unsigned s) { return (w << s) | (w >> (32 - s)); }

inline void jhash_mix(uint32_t &a, uint32_t &b, uint32_t &c) {
  a -= c;
  a ^= rol32(c, 4);
  c += b;
  b -= a;
  b ^= rol32(a, 6);
  a += c;
  c -= b;
  c ^= rol32(b, 8);
  b += a;
  a -= c;
  a ^= rol32(c, 16);
  c += b;
  b -= a;
  b ^= rol32(a, 19);
  a += c;
  c -= b;
  c ^= rol32(b, 4);
  b += a;
}

inline void jhash_final(uint32_t &a, uint32_t &b, uint32_t &c) {
  c ^= b;
  c -= rol32(b, 14);
  a ^= c;
  a -= rol32(c, 11);
  b ^= a;
  b -= rol32(a, 25);
  c ^= b;
  c -= rol32(b, 16);
  a ^= c;
  a -= rol32(c, 4);
  b ^= a;
  b -= rol32(a, 14);
  c ^= b;
  c -= rol32(b, 24);
}

constexpr uint32_t kJhashInitval = 0xdeadbeef;

// jhash2: `words` 32-bit words (the value need not be aligned: memcpy loads).
uint32_t jhash2(const uint8_t *k, uint32_t words, uint32_t initval) {
  uint32_t a, b, c;
  a = b = c = kJhashInitval + (words << 2) + initval;
  while (words > 3) {
    a += load32(k);
    b += load32(k + 4);
    c += load32(k + 8);
    jhash_mix(a, b, c);
    words -= 3;
    k += 12;
  }
  switch (words) {
    case 3: c += load32(k + 8); [[fallthrough]];
    case 2: b += load32(k + 4); [[fallthrough]];
    case 1:
      a += load32(k);
      jhash_final(a, b, c);
      break;
    default: break;
  }
  return c;
}

}  // namespace

uint32_t jhash(const void *key, uint32_t length, uint32_t initval) {
  const auto *k = static_cast<const uint8_t *>(key);
  uint32_t a, b, c;
  a = b = c = kJhashInitval + length + initval;
  while (length > 12) {
    a += load32(k);
    b += load32(k + 4);
    c += load32(k + 8);
    jhash_mix(a, b, c);
    length -= 12;
    k += 12;
  }
  switch (length) {
    case 12: c += uint32_t(k[11]) << 24; [[fallthrough]];
    case 11: c += uint32_t(k[10]) << 16; [[fallthrough]];
    case 10: c += uint32_t(k[9]) << 8; [[fallthrough]];
    case 9: c += k[8]; [[fallthrough]];
    case 8: b += uint32_t(k[7]) << 24; [[fallthrough]];
    case 7: b += uint32_t(k[6]) << 16; [[fallthrough]];
    case 6: b += uint32_t(k[5]) << 8; [[fallthrough]];
    case 5: b += k[4]; [[fallthrough]];
    case 4: a += uint32_t(k[3]) << 24; [[fallthrough]];
    case 3: a += uint32_t(k[2]) << 16; [[fallthrough]];
    case 2: a += uint32_t(k[1]) << 8; [[fallthrough]];
    case 1:
      a += k[0];
      jhash_final(a, b, c);
      break;
    default: break;
  }
  return c;
}

namespace {

// The kernel's hash(): hash function `index` of the value, masked to the
// bit array (the handle's mask, never the region's).
inline uint32_t bloom_bit(const bh_map *m, const void *value, uint32_t index) {
  uint32_t seed = uint32_t(m->seed) + index;
  uint32_t h = (m->value_size % 4 == 0) ? jhash2(static_cast<const uint8_t *>(value), m->value_size / 4, seed)
                                        : jhash(value, m->value_size, seed);
  return h & m->bucket_mask;
}

inline uint64_t *bloom_word(const bh_map *m, uint32_t bit) { return reinterpret_cast<uint64_t *>(m->a) + (bit >> 6); }

}  // namespace

long bloom_push(bh_map *m, const void *value, uint64_t flags) {
  if (flags != BH_ANY) return -EINVAL;
  const uint32_t k = m->pool_size;
  for (uint32_t i = 0; i < k; i++) {
    uint32_t bit = bloom_bit(m, value, i);
    uint64_t *w = bloom_word(m, bit);
    uint64_t mask = uint64_t(1) << (bit & 63);
    // Read first: a set bit (common once the filter fills, and always for a
    // value pushed again) costs no write, so hot values do not bounce the
    // line between CPUs.
    if ((shm::load_relaxed(w) & mask) == 0) __atomic_fetch_or(w, mask, __ATOMIC_RELAXED);
  }
  return 0;
}

long bloom_peek(const bh_map *m, const void *value) {
  const uint32_t k = m->pool_size;
  for (uint32_t i = 0; i < k; i++) {
    uint32_t bit = bloom_bit(m, value, i);
    if ((shm::load_relaxed(bloom_word(m, bit)) & (uint64_t(1) << (bit & 63))) == 0) return -ENOENT;
  }
  return 0;
}

}  // namespace bpfhook::maps
