// bpf_trace_printk, bpf_trace_vprintk, bpf_snprintf, and the trace sink.
//
// The format language is the kernel's (bpf_bprintf_prepare): %d %i %u %x %X
// with optional l / ll, %c, %s, %p, %pK %px (raw pointer), %ps %pS %pB
// (symbol), %pks %pus (string), %pi4 %pI4 %pi6 %pI6 (IP address read through
// the pointer), %%, optional flags "0+- " and a width. Anything else, a
// non-printable character, or more conversions than arguments is -EINVAL, as
// the kernel rejects it. Pointers are printed as 0x<hex> (the kernel hashes
// %p; in user space the real address is what a user wants to see). Every
// pointer that is followed (%s, %pI4, ...) is read with a safe read: a bad
// string prints as empty, a bad address as zeros, like the kernel.

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "internal.h"

namespace bh::helpers {
namespace {

constexpr size_t kMaxMsg = 1024;         // MAX_BPRINTF_BUF: message incl. NUL
constexpr size_t kMaxStr = 512;          // longest %s argument read
constexpr size_t kMaxVarArgs = 12;       // MAX_BPRINTF_VARARGS
constexpr size_t kTracePrintkArgs = 3;   // MAX_TRACE_PRINTK_VARARGS
constexpr unsigned kMaxWidth = kMaxMsg;  // a larger width only pads past the end

enum class Conv : uint8_t {
  Int,
  Uint,
  Hex,
  HexUpper,
  Char,
  Str,
  Ptr,
  Sym,
  SymOff,
  SymRet,
  Ip4,
  Ip4Padded,
  Ip6,
  Ip6Plain
};

struct Spec {
  Conv conv;
  bool left = false, zero = false, plus = false, space = false;
  bool wide = false;  // l or ll: 64-bit argument; else 32-bit
  unsigned width = 0;
};

bool is_punct_or_end(char c) {
  return c == 0 || isspace(static_cast<unsigned char>(c)) || ispunct(static_cast<unsigned char>(c));
}

// Parses the conversion starting after '%' at f[i]; on success leaves i on the
// conversion's last character. f is NUL-terminated, so peeking one or two past
// a non-NUL character is always in bounds.
int parse_spec(const char *f, size_t &i, Spec &s) {
  for (;; i++) {
    if (f[i] == '-')
      s.left = true;
    else if (f[i] == '0')
      s.zero = true;
    else if (f[i] == '+')
      s.plus = true;
    else if (f[i] == ' ')
      s.space = true;
    else
      break;
  }
  if (f[i] >= '1' && f[i] <= '9') {
    while (f[i] >= '0' && f[i] <= '9') {
      s.width = s.width * 10 + unsigned(f[i] - '0');
      if (s.width > kMaxWidth) s.width = kMaxWidth;
      i++;
    }
  }
  switch (f[i]) {
    case 'p': {
      const char n1 = f[i + 1];
      if ((n1 == 'k' || n1 == 'u') && f[i + 2] == 's') {
        i += 2;
        s.conv = Conv::Str;
        return is_punct_or_end(f[i + 1]) ? 0 : -EINVAL;
      }
      if (n1 == 'K' || n1 == 'x') {
        i++;
        s.conv = Conv::Ptr;
      } else if (n1 == 's') {
        i++;
        s.conv = Conv::Sym;
      } else if (n1 == 'S') {
        i++;
        s.conv = Conv::SymOff;
      } else if (n1 == 'B') {
        i++;
        s.conv = Conv::SymRet;
      } else if ((n1 == 'i' || n1 == 'I') && (f[i + 2] == '4' || f[i + 2] == '6')) {
        const bool v4 = f[i + 2] == '4';
        s.conv = v4 ? (n1 == 'i' ? Conv::Ip4Padded : Conv::Ip4) : (n1 == 'i' ? Conv::Ip6Plain : Conv::Ip6);
        i += 2;
      } else if (is_punct_or_end(n1)) {
        s.conv = Conv::Ptr;
      } else {
        return -EINVAL;
      }
      s.wide = true;
      return 0;
    }
    case 's':
      s.conv = Conv::Str;
      // The kernel insists that %s ends a word.
      return is_punct_or_end(f[i + 1]) ? 0 : -EINVAL;
    case 'c': s.conv = Conv::Char; return 0;
    default: break;
  }
  if (f[i] == 'l') {
    s.wide = true;
    i++;
    if (f[i] == 'l') i++;
  }
  switch (f[i]) {
    case 'd':
    case 'i': s.conv = Conv::Int; return 0;
    case 'u': s.conv = Conv::Uint; return 0;
    case 'x': s.conv = Conv::Hex; return 0;
    case 'X': s.conv = Conv::HexUpper; return 0;
    default: return -EINVAL;
  }
}

// Checks the whole format before anything is written, so a rejected format
// leaves the caller's buffer untouched (bpf_snprintf) and prints nothing.
int validate(const char *f, size_t len, size_t nargs) {
  size_t used = 0;
  for (size_t i = 0; i < len; i++) {
    const unsigned char c = static_cast<unsigned char>(f[i]);
    if (c >= 0x80 || (!isprint(c) && !isspace(c))) return -EINVAL;
    if (c != '%') continue;
    if (f[i + 1] == '%') {
      i++;
      continue;
    }
    if (used >= nargs) return -EINVAL;
    i++;
    Spec s;
    if (parse_spec(f, i, s) != 0) return -EINVAL;
    used++;
  }
  return 0;
}

// Output with snprintf semantics: counts everything, stores what fits.
struct Out {
  char *buf;
  size_t cap;
  size_t len = 0;
  void put(char c) {
    if (len + 1 < cap) buf[len] = c;
    len++;
  }
  void put(const char *s, size_t n) {
    for (size_t k = 0; k < n; k++) put(s[k]);
  }
  void fill(char c, size_t n) {
    for (size_t k = 0; k < n; k++) put(c);
  }
  void finish() {
    if (cap > 0) buf[len < cap ? len : cap - 1] = '\0';
  }
};

// A field: optional prefix (sign or "0x"), body, padded to the width.
void field(Out &o, const Spec &s, const char *prefix, size_t plen, const char *body, size_t blen, bool numeric) {
  const size_t total = plen + blen;
  const size_t pad = s.width > total ? s.width - total : 0;
  if (s.left) {
    o.put(prefix, plen);
    o.put(body, blen);
    o.fill(' ', pad);
  } else if (s.zero && numeric) {
    o.put(prefix, plen);
    o.fill('0', pad);
    o.put(body, blen);
  } else {
    o.fill(' ', pad);
    o.put(prefix, plen);
    o.put(body, blen);
  }
}

// Digits of v in base 10 or 16, right-aligned in tmp; returns the start.
char *digits(char *end, uint64_t v, unsigned base, bool upper) {
  const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char *p = end;
  do {
    *--p = set[v % base];
    v /= base;
  } while (v != 0);
  return p;
}

void emit_number(Out &o, const Spec &s, uint64_t raw) {
  char tmp[24];
  char *end = tmp + sizeof tmp;
  char sign[1];
  size_t slen = 0;
  uint64_t v = s.wide ? raw : uint64_t(uint32_t(raw));
  switch (s.conv) {
    case Conv::Int: {
      const int64_t sv = s.wide ? int64_t(raw) : int64_t(int32_t(uint32_t(raw)));
      if (sv < 0) {
        sign[0] = '-';
        slen = 1;
        v = 0 - uint64_t(sv);
      } else {
        v = uint64_t(sv);
        if (s.plus)
          sign[0] = '+', slen = 1;
        else if (s.space)
          sign[0] = ' ', slen = 1;
      }
      char *p = digits(end, v, 10, false);
      field(o, s, sign, slen, p, size_t(end - p), true);
      return;
    }
    case Conv::Uint: {
      char *p = digits(end, v, 10, false);
      field(o, s, sign, 0, p, size_t(end - p), true);
      return;
    }
    default: {
      char *p = digits(end, v, 16, s.conv == Conv::HexUpper);
      field(o, s, sign, 0, p, size_t(end - p), true);
      return;
    }
  }
}

void emit_pointer(Out &o, const Spec &s, uint64_t v) {
  char tmp[24];
  char *end = tmp + sizeof tmp;
  char *p = digits(end, v, 16, false);
  field(o, s, "0x", 2, p, size_t(end - p), true);
}

void emit_symbol(Out &o, const Spec &s, uint64_t v) {
  // %pB is for return addresses: look up the call instruction, not what
  // follows it (a noreturn call may be a function's last instruction).
  const uint64_t lookup = s.conv == Conv::SymRet && v != 0 ? v - 1 : v;
  Dl_info info;
  void *symp = nullptr;
  if (v == 0 || dladdr1(reinterpret_cast<void *>(lookup), &info, &symp, RTLD_DL_SYMENT) == 0 ||
      info.dli_sname == nullptr || info.dli_saddr == nullptr) {
    emit_pointer(o, s, v);
    return;
  }
  char text[kMaxStr];
  size_t n = strnlen(info.dli_sname, 256);
  memcpy(text, info.dli_sname, n);
  if (s.conv != Conv::Sym) {
    char num[24];
    char *e = num + sizeof num;
    const uint64_t off = v - reinterpret_cast<uint64_t>(info.dli_saddr);
    char *p = digits(e, off, 16, false);
    text[n++] = '+', text[n++] = '0', text[n++] = 'x';
    memcpy(text + n, p, size_t(e - p)), n += size_t(e - p);
    const auto *sym = static_cast<const ElfW(Sym) *>(symp);
    if (sym != nullptr && sym->st_size != 0) {
      p = digits(e, sym->st_size, 16, false);
      text[n++] = '/', text[n++] = '0', text[n++] = 'x';
      memcpy(text + n, p, size_t(e - p)), n += size_t(e - p);
    }
  }
  field(o, s, "", 0, text, n, false);
}

void emit_ip(Out &o, const Spec &s, uint64_t ptr) {
  unsigned char a[16];
  const bool v4 = s.conv == Conv::Ip4 || s.conv == Conv::Ip4Padded;
  // Unreadable: zeros, as the kernel does.
  bh_safe_read(a, reinterpret_cast<const void *>(ptr), v4 ? 4 : 16);
  char text[48];
  size_t n = 0;
  char num[8];
  char *e = num + sizeof num;
  if (v4) {
    for (int k = 0; k < 4; k++) {
      if (k) text[n++] = '.';
      char *p = digits(e, a[k], 10, false);
      if (s.conv == Conv::Ip4Padded)
        for (long z = e - p; z < 3; z++) text[n++] = '0';
      memcpy(text + n, p, size_t(e - p)), n += size_t(e - p);
    }
  } else {
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 16; k++) {
      if (s.conv == Conv::Ip6 && k && k % 2 == 0) text[n++] = ':';
      text[n++] = hex[a[k] >> 4];
      text[n++] = hex[a[k] & 15];
    }
  }
  field(o, s, "", 0, text, n, false);
}

// A %s argument is any pointer the program passed (checked mode cannot know
// it is a string), so it is read with the safe read in every mode; one that
// cannot be read prints a marker, so the line shows what went wrong.
constexpr char kBadStr[] = "(efault)";

void emit_string(Out &o, const Spec &s, uint64_t ptr) {
  char str[kMaxStr];
  const long r = bh_safe_read_str(str, reinterpret_cast<const void *>(ptr), sizeof str);
  if (r < 0) {
    field(o, s, "", 0, kBadStr, sizeof kBadStr - 1, false);
    return;
  }
  const size_t n = r > 0 ? size_t(r - 1) : 0;
  field(o, s, "", 0, str, n, false);
}

long format_checked(Out &o, const char *f, size_t len, const uint64_t *args) {
  size_t used = 0;
  for (size_t i = 0; i < len; i++) {
    if (f[i] != '%') {
      o.put(f[i]);
      continue;
    }
    if (f[i + 1] == '%') {
      o.put('%');
      i++;
      continue;
    }
    i++;
    Spec s;
    parse_spec(f, i, s);  // validated before
    const uint64_t a = args[used++];
    switch (s.conv) {
      case Conv::Int:
      case Conv::Uint:
      case Conv::Hex:
      case Conv::HexUpper: emit_number(o, s, a); break;
      case Conv::Char: {
        const char c = char(a);
        field(o, s, "", 0, &c, 1, false);
        break;
      }
      case Conv::Str: emit_string(o, s, a); break;
      case Conv::Ptr: emit_pointer(o, s, a); break;
      case Conv::Sym:
      case Conv::SymOff:
      case Conv::SymRet: emit_symbol(o, s, a); break;
      default: emit_ip(o, s, a); break;
    }
  }
  o.finish();
  return long(o.len);
}

// ---- the sink -------------------------------------------------------------

struct Sink {
  bh_trace_sink_fn fn;
  void *cookie;
};

void default_sink(void *, const char *msg, size_t len) {
  static const char prefix[] = "bpf_trace_printk: ";
  char line[sizeof prefix + kMaxMsg + 1];
  if (len > kMaxMsg - 1) len = kMaxMsg - 1;
  memcpy(line, prefix, sizeof prefix - 1);
  memcpy(line + sizeof prefix - 1, msg, len);
  size_t n = sizeof prefix - 1 + len;
  line[n++] = '\n';
  // One write: concurrent lines from several threads stay whole.
  ssize_t w;
  do {
    w = write(STDERR_FILENO, line, n);
  } while (w < 0 && errno == EINTR);
}

const Sink g_default_sink = {default_sink, nullptr};
// A sink is read as one pointer so fn and cookie always match. Replaced sinks
// are never freed: a printk on another thread may still be using one, and
// without RCU there is no moment known to be safe. Sinks change a handful of
// times per process, so the leak is bounded in practice.
std::atomic<const Sink *> g_sink{&g_default_sink};

long trace_common(const char *fmt, size_t fmt_size, const uint64_t *args, size_t nargs) {
  char msg[kMaxMsg];
  const long r = format_bprintf(msg, sizeof msg, fmt, fmt_size, args, nargs);
  if (r < 0) return r;
  size_t len = size_t(r) < sizeof msg ? size_t(r) : sizeof msg - 1;
  const long written = long(len);
  // Sinks get lines; the kernel's trace output adds its own newline too.
  if (len > 0 && msg[len - 1] == '\n') len--;
  const Sink *sink = g_sink.load(std::memory_order_acquire);
  sink->fn(sink->cookie, msg, len);
  return written;
}

}  // namespace

long format_bprintf(char *out, size_t cap, const char *fmt, size_t fmt_size, const uint64_t *args, size_t nargs) {
  if (fmt == nullptr) return -EINVAL;
  // The format must be NUL-terminated within fmt_size.
  const size_t len = strnlen(fmt, fmt_size);
  if (len == fmt_size) return -EINVAL;
  if (validate(fmt, len, nargs) != 0) return -EINVAL;
  Out o{out, cap};
  return format_checked(o, fmt, len, args);
}

}  // namespace bh::helpers

using namespace bh::helpers;

extern "C" {

void bh_helpers_set_trace_sink(bh_trace_sink_fn fn, void *cookie) {
  // Setting the sink that is already in place (every bh_helpers_register_all
  // with the same opts does) allocates nothing.
  const Sink *cur = g_sink.load(std::memory_order_acquire);
  if (fn == nullptr ? cur == &g_default_sink : (cur->fn == fn && cur->cookie == cookie)) return;
  const Sink *s = fn == nullptr ? &g_default_sink : new Sink{fn, cookie};
  g_sink.store(s, std::memory_order_release);
}

uint64_t bh_helper_trace_printk(uint64_t fmt, uint64_t fmt_size, uint64_t a1, uint64_t a2, uint64_t a3) {
  const uint64_t args[kTracePrintkArgs] = {a1, a2, a3};
  return uint64_t(trace_common(reinterpret_cast<const char *>(fmt), uint32_t(fmt_size), args, kTracePrintkArgs));
}

uint64_t bh_helper_trace_vprintk(uint64_t fmt, uint64_t fmt_size, uint64_t data, uint64_t data_len, uint64_t) {
  const uint32_t dl = uint32_t(data_len);
  if (dl % 8 != 0 || dl > kMaxVarArgs * 8 || (dl != 0 && data == 0)) return uint64_t(-EINVAL);
  // Copy the argument array: program memory, but read once, up front.
  uint64_t args[kMaxVarArgs];
  if (dl != 0) memcpy(args, reinterpret_cast<const void *>(data), dl);
  return uint64_t(trace_common(reinterpret_cast<const char *>(fmt), uint32_t(fmt_size), args, dl / 8));
}

uint64_t bh_helper_snprintf(uint64_t str, uint64_t str_size, uint64_t fmt, uint64_t data, uint64_t data_len) {
  const uint32_t dl = uint32_t(data_len);
  if (dl % 8 != 0 || dl > kMaxVarArgs * 8 || (dl != 0 && data == 0)) return uint64_t(-EINVAL);
  uint64_t args[kMaxVarArgs];
  if (dl != 0) memcpy(args, reinterpret_cast<const void *>(data), dl);
  // fmt is a verified read-only string: NUL-terminated, so no size bound.
  const long r = format_bprintf(reinterpret_cast<char *>(str), uint32_t(str_size), reinterpret_cast<const char *>(fmt),
                                SIZE_MAX, args, dl / 8);
  // Length including the NUL, even when truncated (snprintf's contract + 1).
  return r < 0 ? uint64_t(r) : uint64_t(r + 1);
}

}  // extern "C"
