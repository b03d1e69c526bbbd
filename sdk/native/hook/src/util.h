// Small helpers shared by the engine's sources.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bh {

inline bool fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// printf into a std::string.
std::string strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Copies `msg` into a caller-owned buffer (NUL-terminated, truncated).
void copy_err(char *buf, size_t sz, const std::string &msg);

}  // namespace bh
