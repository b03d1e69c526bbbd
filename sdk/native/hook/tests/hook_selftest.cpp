// Self-test of the hook engine.  Layers are numbered so that the first
// failure points at the lowest broken one:
//   00 relocator   byte-exact tables, one instruction per row
//   10 attach      patching, restoring, refusals
//   20 probes      what listeners see and can change
//   30 threads     attach/detach under load, unpausable threads
//   40 libc        hooks on real code (strlen, malloc)
// Ends with the line "N passed, N failed" that CI reads.
// BH_STRESS_SECONDS (default 3) sets the length of each stress phase.

#include <dlfcn.h>
#include <link.h>
#include <immintrin.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bpfhook/hook.h"
#include "bpfhook/reloc.h"
#include "testlib.h"

// ---------------------------------------------------------------- harness --

namespace {

int g_passed = 0, g_failed = 0;
int g_checks_failed = 0;
const char *g_test = "";

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      g_checks_failed++;                                                             \
      fprintf(stderr, "  FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, g_test, #cond); \
    }                                                                                \
  } while (0)

#define CHECK_EQ(a, b)                                                                                    \
  do {                                                                                                    \
    const auto va_ = (a);                                                                                 \
    const auto vb_ = (b);                                                                                 \
    if (!(va_ == vb_)) {                                                                                  \
      g_checks_failed++;                                                                                  \
      fprintf(stderr, "  FAIL %s:%d [%s]: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, g_test, #a, #b, \
              (long long)va_, (long long)vb_);                                                            \
    }                                                                                                     \
  } while (0)

struct Test {
  const char *name;
  void (*fn)();
};
std::vector<Test> &tests() {
  static std::vector<Test> t;
  return t;
}
struct Reg {
  Reg(const char *n, void (*f)()) { tests().push_back({n, f}); }
};
#define TEST(name)                    \
  static void name();                 \
  static Reg reg_##name(#name, name); \
  static void name()

std::vector<uint8_t> hex(const char *s) {
  std::vector<uint8_t> out;
  while (*s) {
    while (*s == ' ') s++;
    if (!*s) break;
    out.push_back(uint8_t(strtoul(std::string(s, 2).c_str(), nullptr, 16)));
    s += 2;
  }
  return out;
}

std::string tohex(const uint8_t *p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; i++) {
    snprintf(b, sizeof b, "%s%02x", i ? " " : "", p[i]);
    s += b;
  }
  return s;
}

bh_hook_engine *g_engine;

struct AttachResult {
  int rc;
  std::string err;
  bh_hook_link *link;
};

AttachResult attach(void *fn_addr, bh_hook_kind kind, bh_hook_fn fn, void *user = nullptr, const char *name = nullptr,
                    uint64_t cookie = 0) {
  AttachResult r{};
  char err[512] = "";
  bh_hook_attach_opts o{};
  o.sz = sizeof o;
  o.cookie = cookie;
  o.func_name = name;
  o.errbuf = err;
  o.errbuf_sz = sizeof err;
  r.rc = bh_hook_attach(g_engine, fn_addr, kind, fn, user, &o, &r.link);
  r.err = err;
  if (r.rc) fprintf(stderr, "  (attach %s: %d %s)\n", name ? name : "?", r.rc, err);
  return r;
}

// Calls through volatile pointers so the compiler cannot fold them.
int (*volatile p_add)(int, int) = tl_add;
long (*volatile p_fib)(long) = tl_fib;
double (*volatile p_mix)(long, long, long, long, long, long, long, long, double, double) = tl_mix;
int (*volatile p_tail)(int) = tl_tail;
int (*volatile p_lj_outer)(jmp_buf *, int) = tl_lj_outer;
long (*volatile p_calls_first)(long) = tl_calls_first;

uint64_t noop(void *, struct pt_regs *, struct bh_hook_call *) { return 0; }

}  // namespace

// ------------------------------------------------------------- 00 relocator --

namespace {

struct RelocRow {
  const char *comment;
  const char *in;
  uint64_t dest;
  const char *out;
};

// pc = 0x401000; dest 0x402000 (near) unless the row says otherwise.  Each
// row relocates exactly one instruction (min_len = 1) and expects the copy
// plus the jump back to pc + len where the instruction falls through.
const RelocRow kRows[] = {
    // push rbp: copied; jmp back rel32 to 0x401001
    {"push rbp", "55", 0x402000, "55 e9 fb ef ff ff"},
    // mov rbp, rsp: copied
    {"mov rbp, rsp", "48 89 e5", 0x402000, "48 89 e5 e9 fb ef ff ff"},
    // sub rsp, 0x18: copied
    {"sub rsp, 0x18", "48 83 ec 18", 0x402000, "48 83 ec 18 e9 fb ef ff ff"},
    // endbr64: copied
    {"endbr64", "f3 0f 1e fa", 0x402000, "f3 0f 1e fa e9 fb ef ff ff"},
    // mov eax, 1: copied
    {"mov eax, 1", "b8 01 00 00 00", 0x402000, "b8 01 00 00 00 e9 fb ef ff ff"},
    // lea rax, [rip+0x100] -> 0x401107: disp becomes 0x401107 - 0x402007
    {"lea rax, [rip+0x100]", "48 8d 05 00 01 00 00", 0x402000, "48 8d 05 00 f1 ff ff e9 fb ef ff ff"},
    // mov rax, [rip+0x2000] -> 0x403007: disp becomes +0x1000
    {"mov rax, [rip+0x2000]", "48 8b 05 00 20 00 00", 0x402000, "48 8b 05 00 10 00 00 e9 fb ef ff ff"},
    // cmp dword [rip+0x10], 5: disp fixed, the imm8 after it kept
    {"cmp dword [rip+0x10], 5", "83 3d 10 00 00 00 05", 0x402000, "83 3d 10 f0 ff ff 05 e9 fb ef ff ff"},
    // je short +0x10 -> 0x401012: je rel32, then jmp back to 0x401002
    {"je short", "74 10", 0x402000, "0f 84 0c f0 ff ff e9 f7 ef ff ff"},
    // jne near +0x100 -> 0x401106: jne rel32 re-aimed
    {"jne near", "0f 85 00 01 00 00", 0x402000, "0f 85 00 f1 ff ff e9 fb ef ff ff"},
    // jmp short +0x10 -> 0x401012: jmp rel32, no jump back
    {"jmp short", "eb 10", 0x402000, "e9 0d f0 ff ff"},
    // jmp [rip+0x20] -> [0x401026]: disp fixed, no jump back
    {"jmp [rip+0x20]", "ff 25 20 00 00 00", 0x402000, "ff 25 20 f0 ff ff"},
    // ret: copied, no jump back
    {"ret", "c3", 0x402000, "c3"},
    // call rel32 -> 0x401105: push 0x401005 (lea rsp,[rsp-8]; mov dword x2); jmp rel32
    {"call rel32", "e8 00 01 00 00", 0x402000,
     "48 8d 64 24 f8 c7 04 24 05 10 40 00 c7 44 24 04 00 00 00 00 e9 ec f0 ff ff"},
    // call [rip+0x200] -> [0x401206]: push 0x401006; jmp [rip+disp] re-aimed
    {"call [rip+0x200]", "ff 15 00 02 00 00", 0x402000,
     "48 8d 64 24 f8 c7 04 24 06 10 40 00 c7 44 24 04 00 00 00 00 ff 25 ec f1 ff ff"},
    // call rax: push 0x401002; jmp rax
    {"call rax", "ff d0", 0x402000, "48 8d 64 24 f8 c7 04 24 02 10 40 00 c7 44 24 04 00 00 00 00 ff e0"},
    // jrcxz +0x10 -> 0x401012: jrcxz over a short jmp to a rel32 jmp; jmp back
    {"jrcxz", "e3 10", 0x402000, "e3 02 eb 05 e9 09 f0 ff ff e9 f4 ef ff ff"},
    // loop -0x10 -> 0x400ff2: same shape as jrcxz
    {"loop", "e2 f0", 0x402000, "e2 02 eb 05 e9 e9 ef ff ff e9 f4 ef ff ff"},
    // je short, copy out of rel32 reach: inverted jne over jmp [rip]; .quad
    {"je short, far copy", "74 10", 0x7f0000000000ull,
     "75 0e ff 25 00 00 00 00 12 10 40 00 00 00 00 00 "
     "ff 25 00 00 00 00 02 10 40 00 00 00 00 00"},
    // jmp short, far copy: jmp [rip]; .quad 0x401012
    {"jmp short, far copy", "eb 10", 0x7f0000000000ull, "ff 25 00 00 00 00 12 10 40 00 00 00 00 00"},
};

struct RelocErrRow {
  const char *comment;
  const char *in;
  uint32_t min_len;
  uint64_t dest;
  int rc;
  const char *msg;  // substring of the message
};

const RelocErrRow kErrRows[] = {
    // xor eax, eax; ret: the function ends at +2
    {"too short", "31 c0 c3 cc cc cc cc cc", 5, 0x402000, -ENOTSUP,
     "function too short: ret at +2 ends it inside the 5 bytes to patch"},
    // int3 padding where code should be
    {"int3", "cc cc cc cc cc", 5, 0x402000, -ENOTSUP, "int3 at +0"},
    // call at +0 with 14 bytes to free: more instructions follow it
    {"call not last", "e8 00 00 00 00 90 90 90 90 90 90 90 90 90 90", 14, 0x402000, -ENOTSUP,
     "call at +0 is not the last relocated instruction"},
    // xor eax,eax; 1: add eax,1; sub edi,1; jnz 1b; ret -- loops back to +2
    {"branch back into the patch", "31 c0 83 c0 01 83 ef 01 75 f8 c3", 5, 0x402000, -ENOTSUP,
     "jnz at +0x8 jumps back into the patched bytes (+2)"},
    // je +1 lands at +3, inside the relocated bytes
    {"branch inside the patch", "74 01 90 90 90 90 90", 5, 0x402000, -ENOTSUP,
     "jz at +0 targets +3, inside the relocated bytes"},
    // mov rax, [rip+0]: 0x401007 is out of reach of a copy at 0x7f0000000000
    {"RIP-relative out of range", "48 8b 05 00 00 00 00", 5, 0x7f0000000000ull, -ERANGE, "out of +/-2GiB"},
    // xbegin rel32: a relative operand we do not rewrite
    {"xbegin", "c7 f8 00 00 00 00", 5, 0x402000, -ENOTSUP, "unsupported kind"},
    // call [rsp+8]: pushing the return address would move its operand
    {"call [rsp+8]", "ff 54 24 08", 4, 0x402000, -ENOTSUP, "based on rsp"},
    // 06 (push es) does not exist in 64-bit mode
    {"undecodable", "06 90 90 90 90", 5, 0x402000, -ENOEXEC, "cannot decode"},
    // ljmp [rax]: a far jump
    {"far jmp", "ff 28 90 90 90", 5, 0x402000, -ENOTSUP, "far call/jmp"},
};

}  // namespace

TEST(t00_reloc_table) {
  for (const RelocRow &r : kRows) {
    const std::vector<uint8_t> in = hex(r.in), want = hex(r.out);
    uint8_t out[128];
    bh_reloc_plan plan{};
    plan.sz = sizeof plan;
    char err[256];
    const int rc = bh_reloc_emit(in.data(), in.size(), 0x401000, 1, r.dest, out, sizeof out, &plan, err, sizeof err);
    if (rc != 0) {
      g_checks_failed++;
      fprintf(stderr, "  FAIL reloc row '%s': rc %d %s\n", r.comment, rc, err);
      continue;
    }
    const std::string got = tohex(out, plan.out_len);
    if (got != tohex(want.data(), want.size())) {
      g_checks_failed++;
      fprintf(stderr, "  FAIL reloc row '%s':\n    got  %s\n    want %s\n", r.comment, got.c_str(), r.out);
    }
    CHECK_EQ(plan.len, in.size());
    CHECK_EQ(plan.n_insns, 1u);
    // analyze agrees on the size for the same dest
    bh_reloc_plan p2{};
    p2.sz = sizeof p2;
    CHECK_EQ(bh_reloc_analyze(in.data(), in.size(), 0x401000, 1, r.dest, &p2, err, sizeof err), 0);
    CHECK_EQ(p2.out_len, plan.out_len);
  }
}

TEST(t01_reloc_refusals) {
  for (const RelocErrRow &r : kErrRows) {
    const std::vector<uint8_t> in = hex(r.in);
    bh_reloc_plan plan{};
    plan.sz = sizeof plan;
    char err[256] = "";
    uint8_t out[128];
    const int rc =
        bh_reloc_emit(in.data(), in.size(), 0x401000, r.min_len, r.dest, out, sizeof out, &plan, err, sizeof err);
    if (rc != r.rc || !strstr(err, r.msg) || strncmp(err, "0x401000: ", 10) != 0) {
      g_checks_failed++;
      fprintf(stderr, "  FAIL reloc refusal '%s': rc %d (want %d) msg '%s' (want '%s')\n", r.comment, rc, r.rc, err,
              r.msg);
    }
  }
}

TEST(t02_reloc_prologue) {
  // tl_add's prologue: push rbp; add edi, esi; mov rbp, rsp | mov [rbp-4], edi
  const std::vector<uint8_t> in = hex("55 01 f7 48 89 e5 89 7d fc 8b 45 fc 5d c3");
  bh_reloc_plan plan{};
  plan.sz = sizeof plan;
  char err[256];
  // "Can these bytes be relocated, and how many would I need?"
  CHECK_EQ(bh_reloc_analyze(in.data(), in.size(), 0x401000, 5, 0, &plan, err, sizeof err), 0);
  CHECK_EQ(plan.len, 6u);
  CHECK_EQ(plan.n_insns, 3u);
  CHECK_EQ(plan.insn_off[1], 1);
  CHECK_EQ(plan.insn_off[2], 3);
  CHECK_EQ(plan.out_len, 6u + 14u);  // dest unknown: the jump back may need 14 bytes
  uint8_t out[64];
  CHECK_EQ(bh_reloc_emit(in.data(), in.size(), 0x401000, 5, 0x402000, out, sizeof out, &plan, err, sizeof err), 0);
  CHECK(tohex(out, plan.out_len) == "55 01 f7 48 89 e5 e9 fb ef ff ff");
  CHECK_EQ(plan.out_off[2], 3);
  // A buffer that is too small is refused, not overrun.
  CHECK_EQ(bh_reloc_emit(in.data(), in.size(), 0x401000, 5, 0x402000, out, 8, &plan, err, sizeof err), -ENOSPC);
}

// ---------------------------------------------------------------- 10 attach --

namespace {

struct Seen {
  int calls = 0;
  struct pt_regs regs {};
  uint64_t func_ip = 0, cookie = 0, ret = 0;
  uint64_t ret_addr = 0;  // entry: the return address on top of the stack
  uint64_t args[8] = {};
  double x0 = 0, x1 = 0;
};

uint64_t record_entry(void *user, struct pt_regs *regs, struct bh_hook_call *call) {
  auto *s = static_cast<Seen *>(user);
  s->calls++;
  s->regs = *regs;
  s->ret_addr = *reinterpret_cast<const uint64_t *>(regs->rsp);
  s->func_ip = bh_hook_call__func_ip(call);
  s->cookie = bh_hook_call__cookie(call);
  for (uint32_t i = 0; i < 8; i++) bh_hook_call__arg(call, i, &s->args[i]);
  memcpy(&s->x0, bh_hook_call__xmm(call, 0), 8);
  memcpy(&s->x1, bh_hook_call__xmm(call, 1), 8);
  if (bh_hook_current() != call) s->calls += 1000;
  return 0;
}

uint64_t record_return(void *user, struct pt_regs *regs, struct bh_hook_call *call) {
  auto *s = static_cast<Seen *>(user);
  s->calls++;
  s->regs = *regs;
  s->func_ip = bh_hook_call__func_ip(call);
  s->cookie = bh_hook_call__cookie(call);
  bh_hook_call__ret(call, &s->ret);
  for (uint32_t i = 0; i < 6; i++) bh_hook_call__arg(call, i, &s->args[i]);
  memcpy(&s->x0, bh_hook_call__xmm(call, 0), 8);
  return 0;
}

uint64_t read_cs() {
  uint64_t v;
  __asm__("mov %%cs, %0" : "=r"(v));
  return v;
}
uint64_t read_ss() {
  uint64_t v;
  __asm__("mov %%ss, %0" : "=r"(v));
  return v;
}

}  // namespace

TEST(t10_attach_patches_and_detach_restores) {
  uint8_t before[16];
  memcpy(before, reinterpret_cast<void *>(tl_add), 16);
  Seen s;
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, record_entry, &s, "tl_add", 77);
  CHECK_EQ(a.rc, 0);
  if (a.rc) return;
  bh_hook_func_info fi{};
  fi.sz = sizeof fi;
  CHECK_EQ(bh_hook_get_func_info(reinterpret_cast<void *>(tl_add), &fi), 0);
  CHECK_EQ(fi.patched, 1u);
  CHECK_EQ(fi.patch_len, 5u);  // trampoline within +/-2GiB
  CHECK_EQ(fi.reloc_len, 6u);
  CHECK(memcmp(fi.original, before, fi.reloc_len) == 0);
  CHECK_EQ(reinterpret_cast<uint8_t *>(tl_add)[0], 0xe9);

  CHECK_EQ(p_add(2, 40), 42);
  CHECK_EQ(s.calls, 1);
  CHECK_EQ(s.regs.rdi, 2u);
  CHECK_EQ(s.regs.rsi, 40u);
  CHECK_EQ(s.regs.rip, reinterpret_cast<uint64_t>(tl_add));
  CHECK_EQ(s.func_ip, reinterpret_cast<uint64_t>(tl_add));
  CHECK_EQ(s.cookie, 77u);
  CHECK_EQ(s.regs.orig_rax, ~0ul);
  CHECK_EQ(s.regs.cs, read_cs());
  CHECK_EQ(s.regs.ss, read_ss());
  CHECK(s.regs.eflags & 0x2);     // reserved bit, always 1
  CHECK(s.regs.eflags & 0x200);   // IF
  CHECK_EQ(s.regs.rsp % 16, 8u);  // at entry: the return address on top
  CHECK(s.regs.rsp > reinterpret_cast<uint64_t>(&s) - 65536 && s.regs.rsp < reinterpret_cast<uint64_t>(&s));

  const uint64_t tramp = fi.trampoline;
  CHECK_EQ(bh_hook_detach(a.link), 0);
  CHECK(memcmp(reinterpret_cast<void *>(tl_add), before, 16) == 0);
  // No thread is anywhere near the trampoline: detach freed it.
  CHECK_EQ(bh_hook_get_func_info(reinterpret_cast<void *>(tl_add), &fi), -ENOENT);
  CHECK_EQ(p_add(1, 2), 3);
  CHECK_EQ(s.calls, 1);

  // Attach again: the freed memory is reused for the new trampoline.
  a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, record_entry, &s, "tl_add");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(p_add(3, 4), 7);
  CHECK_EQ(s.calls, 2);
  CHECK_EQ(bh_hook_get_func_info(reinterpret_cast<void *>(tl_add), &fi), 0);
  CHECK_EQ(fi.trampoline, tramp);
  CHECK_EQ(bh_hook_detach(a.link), 0);
  CHECK(memcmp(reinterpret_cast<void *>(tl_add), before, 16) == 0);
}

TEST(t11_refusals_name_the_function) {
  uint8_t before[8];
  memcpy(before, reinterpret_cast<void *>(tl_tiny), 8);
  AttachResult a = attach(reinterpret_cast<void *>(tl_tiny), BH_HOOK_ENTRY, noop, nullptr, "tl_tiny");
  CHECK_EQ(a.rc, -ENOTSUP);
  CHECK(a.err.find("attach 'tl_tiny' (0x") == 0);
  CHECK(a.err.find("function too short: ret at +2") != std::string::npos);
  CHECK(memcmp(reinterpret_cast<void *>(tl_tiny), before, 8) == 0);

  a = attach(reinterpret_cast<void *>(tl_loopy), BH_HOOK_ENTRY, noop, nullptr, "tl_loopy");
  CHECK_EQ(a.rc, -ENOTSUP);
  CHECK(a.err.find("jumps back into the patched bytes (+2)") != std::string::npos);

  static int data_word = 0;
  a = attach(&data_word, BH_HOOK_ENTRY, noop, nullptr, "data_word");
  CHECK_EQ(a.rc, -EFAULT);

  // Unknown non-zero option bytes are rejected.
  struct {
    bh_hook_attach_opts o;
    uint64_t future;
  } big{};
  big.o.sz = sizeof big;
  big.future = 1;
  bh_hook_link *l;
  CHECK_EQ(bh_hook_attach(g_engine, reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, noop, nullptr, &big.o, &l),
           -EINVAL);
  big.future = 0;  // zero bytes past the known fields are fine
  CHECK_EQ(bh_hook_attach(g_engine, reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, noop, nullptr, &big.o, &l), 0);
  CHECK_EQ(bh_hook_detach(l), 0);
}

TEST(t12_call_first_and_tail_call) {
  // tl_calls_first starts with `call rel32`: relocated as push + jmp.
  Seen e, r;
  AttachResult a = attach(reinterpret_cast<void *>(tl_calls_first), BH_HOOK_ENTRY, record_entry, &e, "tl_calls_first");
  AttachResult b =
      attach(reinterpret_cast<void *>(tl_calls_first), BH_HOOK_RETURN, record_return, &r, "tl_calls_first");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  CHECK_EQ(p_calls_first(5), 16);
  CHECK_EQ(e.calls, 1);
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(r.ret, 16u);
  if (!a.rc) bh_hook_detach(a.link);
  if (!b.rc) bh_hook_detach(b.link);
  CHECK_EQ(p_calls_first(1), 4);
}

TEST(t13_far_trampoline_with_14_byte_jump) {
  // Run only with BPFHOOK_TEST_FAR_TRAMPOLINES=1 (a second ctest run):
  // then every trampoline is out of rel32 reach.
  if (!getenv("BPFHOOK_TEST_FAR_TRAMPOLINES")) return;
  uint8_t before[24];
  memcpy(before, reinterpret_cast<void *>(tl_mix), sizeof before);
  Seen e, r;
  AttachResult a = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_ENTRY, record_entry, &e, "tl_mix");
  AttachResult b = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_RETURN, record_return, &r, "tl_mix");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  bh_hook_func_info fi{};
  fi.sz = sizeof fi;
  CHECK_EQ(bh_hook_get_func_info(reinterpret_cast<void *>(tl_mix), &fi), 0);
  CHECK_EQ(fi.patch_len, 14u);
  CHECK(fi.reloc_len >= 14u);
  CHECK_EQ(reinterpret_cast<uint8_t *>(tl_mix)[0], 0xff);  // jmp [rip+0]
  CHECK(p_mix(1, 2, 3, 4, 5, 6, 7, 8, 1.5, 2.0) == 207.0);
  CHECK_EQ(e.calls, 1);
  CHECK_EQ(r.calls, 1);
  CHECK(r.x0 == 207.0);
  if (!a.rc) bh_hook_detach(a.link);
  if (!b.rc) bh_hook_detach(b.link);
  CHECK(memcmp(reinterpret_cast<void *>(tl_mix), before, sizeof before) == 0);
  // Fine with 5 bytes, not with 14: its call at +4 would not be last.
  a = attach(reinterpret_cast<void *>(tl_lj_outer), BH_HOOK_ENTRY, noop, nullptr, "tl_lj_outer");
  CHECK_EQ(a.rc, -ENOTSUP);
  CHECK(a.err.find("call at +4 is not the last") != std::string::npos);
  CHECK(a.err.find("14 bytes are needed") != std::string::npos);
}

// ---------------------------------------------------------------- 20 probes --

TEST(t20_args_and_return_values) {
  Seen e, r;
  AttachResult a = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_ENTRY, record_entry, &e, "tl_mix", 5);
  AttachResult b = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_RETURN, record_return, &r, "tl_mix", 6);
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  const double got = p_mix(1, 2, 3, 4, 5, 6, 7, 8, 1.5, 2.0);
  CHECK(got == 204.0 + 3.0);
  CHECK_EQ(e.calls, 1);
  for (uint64_t i = 0; i < 8; i++) CHECK_EQ(e.args[i], i + 1);  // 6 and 7 come from the stack
  CHECK(e.x0 == 1.5);
  CHECK(e.x1 == 2.0);
  CHECK_EQ(e.cookie, 5u);
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(r.cookie, 6u);
  CHECK(r.x0 == 207.0);                                         // a double comes back in xmm0
  for (uint64_t i = 0; i < 6; i++) CHECK_EQ(r.args[i], i + 1);  // entry arguments, kept
  CHECK_EQ(r.regs.rsp, e.regs.rsp + 8);                         // after the return
  CHECK_EQ(r.func_ip, reinterpret_cast<uint64_t>(tl_mix));
  CHECK(r.regs.rip != reinterpret_cast<uint64_t>(tl_mix));  // the address returned to
  CHECK_EQ(r.regs.rip, e.ret_addr);
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);

  Seen ra;
  b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, record_return, &ra, "tl_add");
  CHECK_EQ(p_add(20, 22), 42);
  CHECK_EQ(ra.ret, 42u);
  CHECK_EQ(ra.regs.rax, 42u);
  CHECK_EQ(bh_hook_thread_shadow_depth(), 0u);
  bh_hook_detach(b.link);
}

namespace {
uint64_t filter_42(void *, struct pt_regs *regs, struct bh_hook_call *call) {
  if (int(regs->rdi) == 42) bh_hook_call__override_return(call, uint64_t(-1));
  return 0;
}
uint64_t replace_mul(void *, struct pt_regs *regs, struct bh_hook_call *) {
  return uint64_t(uint32_t(int(regs->rdi) * int(regs->rsi)));
}
uint64_t bump_arg(void *, struct pt_regs *regs, struct bh_hook_call *) {
  regs->rsi = 100;
  return 0;
}
uint64_t double_ret(void *, struct pt_regs *regs, struct bh_hook_call *call) {
  bh_hook_call__set_retval(call, regs->rax * 2);
  return 0;
}

struct Order {
  std::string log;
};
uint64_t log_a(void *u, struct pt_regs *, struct bh_hook_call *) {
  static_cast<Order *>(u)->log += "a";
  return 0;
}
uint64_t log_b(void *u, struct pt_regs *, struct bh_hook_call *) {
  static_cast<Order *>(u)->log += "b";
  return 0;
}
uint64_t log_ret(void *u, struct pt_regs *regs, struct bh_hook_call *) {
  static_cast<Order *>(u)->log += "r" + std::to_string(int(regs->rax));
  return 0;
}
}  // namespace

TEST(t21_override_as_filter) {
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, filter_42, nullptr, "tl_add");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(p_add(42, 1), -1);  // overridden: the body does not run
  CHECK_EQ(p_add(41, 1), 42);  // passed through
  bh_hook_detach(a.link);
  CHECK_EQ(p_add(42, 1), 43);
}

TEST(t22_replace) {
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_REPLACE, replace_mul, nullptr, "tl_add");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(p_add(6, 7), 42);
  AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_REPLACE, replace_mul, nullptr, "tl_add");
  CHECK_EQ(b.rc, -EEXIST);
  bh_hook_detach(a.link);
  CHECK_EQ(p_add(6, 7), 13);
}

TEST(t23_mixed_entry_return_and_writes) {
  Order o;
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, log_a, &o, "tl_add");
  AttachResult r = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, log_ret, &o, "tl_add");
  AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, log_b, &o, "tl_add");
  CHECK_EQ(p_add(1, 2), 3);
  CHECK(o.log == "abr3");
  // An entry listener that rewrites an argument; a return listener that
  // doubles the result; with an override the return listener sees it.
  AttachResult w = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, bump_arg, nullptr, "tl_add");
  AttachResult d = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, double_ret, nullptr, "tl_add");
  o.log.clear();
  CHECK_EQ(p_add(1, 2), 202);
  CHECK(o.log == "abr101");
  AttachResult f = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, filter_42, nullptr, "tl_add");
  o.log.clear();
  CHECK_EQ(p_add(42, 0), -2);  // overridden -1, doubled on return
  CHECK(o.log == "abr-1");
  for (AttachResult *x : {&a, &r, &b, &w, &d, &f}) CHECK_EQ(bh_hook_detach(x->link), 0);
  CHECK_EQ(p_add(1, 2), 3);
}

namespace {
std::atomic<long> g_fib_entries{0}, g_fib_returns{0}, g_fib_bad{0};
long fib_ref(long n) {
  long a = 0, b = 1;
  for (long i = 0; i < n; i++) {
    const long t = a + b;
    a = b;
    b = t;
  }
  return a;
}
uint64_t fib_entry(void *, struct pt_regs *, struct bh_hook_call *) {
  g_fib_entries++;
  return 0;
}
uint64_t fib_return(void *, struct pt_regs *regs, struct bh_hook_call *call) {
  g_fib_returns++;
  uint64_t n;
  bh_hook_call__arg(call, 0, &n);
  if (long(regs->rax) != fib_ref(long(n))) g_fib_bad++;
  return 0;
}
}  // namespace

TEST(t24_recursion_with_return_probes) {
  AttachResult a = attach(reinterpret_cast<void *>(tl_fib), BH_HOOK_ENTRY, fib_entry, nullptr, "tl_fib");
  AttachResult b = attach(reinterpret_cast<void *>(tl_fib), BH_HOOK_RETURN, fib_return, nullptr, "tl_fib");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  CHECK_EQ(p_fib(20), 6765);
  const long calls = 2 * fib_ref(21) - 1;  // calls made by the naive recursion
  CHECK_EQ(g_fib_entries.load(), calls);
  CHECK_EQ(g_fib_returns.load(), calls);
  CHECK_EQ(g_fib_bad.load(), 0);
  CHECK_EQ(bh_hook_thread_shadow_depth(), 0u);
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);
}

TEST(t25_tail_call_between_return_probes) {
  // tl_tail ends with `jmp tl_add`: tl_add's frame reuses tl_tail's
  // return address slot, which already holds the return trampoline.
  Order o;
  AttachResult a = attach(reinterpret_cast<void *>(tl_tail), BH_HOOK_RETURN, log_ret, &o, "tl_tail");
  AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, log_ret, &o, "tl_add");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  CHECK_EQ(p_tail(5), 6);
  CHECK(o.log == "r6r6");  // tl_add's, then tl_tail's
  CHECK_EQ(bh_hook_thread_shadow_depth(), 0u);
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);
}

namespace {
std::atomic<long> g_lj_ret{0};
uint64_t count_ret(void *u, struct pt_regs *, struct bh_hook_call *) {
  static_cast<std::atomic<long> *>(u)->fetch_add(1);
  return 0;
}
}  // namespace

namespace {
// One abandoned call: tl_lj_outer -> tl_lj_inner -> longjmp back here.
__attribute__((noinline)) int jump_out_once() {
  jmp_buf env;
  if (setjmp(env) == 0) {
    p_lj_outer(&env, 1);
    return 0;  // not reached
  }
  return 1;
}
}  // namespace

TEST(t26_longjmp_out_of_return_probes) {
  std::atomic<long> inner{0}, outer{0};
  AttachResult a = attach(reinterpret_cast<void *>(tl_lj_inner), BH_HOOK_RETURN, count_ret, &inner, "tl_lj_inner");
  AttachResult b = attach(reinterpret_cast<void *>(tl_lj_outer), BH_HOOK_RETURN, count_ret, &outer, "tl_lj_outer");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  uint32_t max_depth = 0;
  long jumps = 0, normal = 0;
  jmp_buf unused;
  for (int i = 0; i < 20000; i++) {
    jumps += jump_out_once();  // leaves two stale shadow entries behind
    max_depth = std::max(max_depth, bh_hook_thread_shadow_depth());
    if (i % 3 == 0) {
      CHECK_EQ(p_lj_outer(&unused, 0), 8);
      normal++;
    }
  }
  CHECK_EQ(jumps, 20000);
  CHECK_EQ(inner.load(), normal);
  CHECK_EQ(outer.load(), normal);
  CHECK(max_depth <= 2);  // stale entries are dropped, not accumulated
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);
}

namespace {
__attribute__((noinline)) long cpp_thrower(long x) {
  if (x > 0) throw std::runtime_error("boom");
  return x - 1;
}
long (*volatile p_thrower)(long) = cpp_thrower;
}  // namespace

TEST(t27_cpp_exception_through_return_probe) {
  std::atomic<long> rets{0};
  AttachResult a = attach(reinterpret_cast<void *>(cpp_thrower), BH_HOOK_RETURN, count_ret, &rets, "cpp_thrower");
  CHECK_EQ(a.rc, 0);
  if (a.rc) return;
  int caught = 0;
  for (int i = 0; i < 100; i++) {
    try {
      p_thrower(1);
    } catch (const std::runtime_error &) {
      caught++;
    }
    CHECK_EQ(p_thrower(0), -1);
  }
  CHECK_EQ(caught, 100);
  CHECK_EQ(rets.load(), 100);
  CHECK_EQ(bh_hook_thread_shadow_depth(), 0u);
  bh_hook_detach(a.link);
}

namespace {
uint64_t calls_add(void *u, struct pt_regs *, struct bh_hook_call *) {
  static_cast<std::atomic<long> *>(u)->fetch_add(1);
  p_add(1, 1);  // nested: runs the original, listeners skipped
  return 0;
}
struct SelfDetach {
  bh_hook_link *link = nullptr;
  int calls = 0;
};
uint64_t detach_me(void *u, struct pt_regs *, struct bh_hook_call *) {
  auto *s = static_cast<SelfDetach *>(u);
  s->calls++;
  if (s->link) {
    bh_hook_detach(s->link);
    s->link = nullptr;
  }
  return 0;
}
}  // namespace

TEST(t28_nesting_and_self_detach) {
  std::atomic<long> n{0};
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, calls_add, &n, "tl_add");
  CHECK_EQ(p_add(2, 3), 5);
  CHECK_EQ(n.load(), 1);
  CHECK(bh_hook_link__missed(a.link) >= 1);
  bh_hook_detach(a.link);

  SelfDetach s;
  AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, detach_me, &s, "tl_add");
  s.link = b.link;
  CHECK_EQ(p_add(2, 3), 5);
  CHECK_EQ(p_add(2, 3), 5);
  CHECK_EQ(s.calls, 1);
  CHECK(bh_hook_current() == nullptr);
}

// --------------------------------------------------------------- 30 threads --

namespace {

double stress_seconds() {
  const char *s = getenv("BH_STRESS_SECONDS");
  return s ? atof(s) : 3.0;
}

thread_local long t_probe_hits = 0, t_ret_hits = 0;
uint64_t count_tls(void *, struct pt_regs *, struct bh_hook_call *) {
  t_probe_hits++;
  return 0;
}
uint64_t count_tls_ret(void *, struct pt_regs *regs, struct bh_hook_call *call) {
  uint64_t a, b;
  bh_hook_call__arg(call, 0, &a);
  bh_hook_call__arg(call, 1, &b);
  if (int(regs->rax) == int(a) + int(b)) t_ret_hits++;
  return 0;
}
std::atomic<long> g_churn_hits{0};
uint64_t count_global(void *, struct pt_regs *, struct bh_hook_call *) {
  g_churn_hits.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

struct Worker {
  long calls = 0, bad = 0, probe_hits = 0, ret_hits = 0;
};

void run_workers(std::vector<Worker> &w, std::atomic<bool> &stop) {
  std::vector<std::thread> ts;
  for (size_t i = 0; i < w.size(); i++)
    ts.emplace_back([&, i] {
      Worker &me = w[i];
      t_probe_hits = t_ret_hits = 0;
      int x = int(i) * 1000;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 64; k++, x++) {
          if (p_add(x, 7) != x + 7) me.bad++;
          me.calls++;
        }
      }
      me.probe_hits = t_probe_hits;
      me.ret_hits = t_ret_hits;
    });
  for (auto &t : ts) t.join();
}

}  // namespace

TEST(t30_patch_churn_under_load) {
  // 4 threads call tl_add as fast as they can while the main thread puts
  // the patch in and takes it out (entry + return listeners) in a loop.
  std::vector<Worker> w(4);
  std::atomic<bool> stop{false};
  std::thread runner([&] { run_workers(w, stop); });
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(stress_seconds());
  long cycles = 0, failures = 0;
  uint8_t before[16];
  memcpy(before, reinterpret_cast<void *>(tl_add), 16);
  while (std::chrono::steady_clock::now() < end) {
    AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_global, nullptr, "tl_add");
    AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, count_global, nullptr, "tl_add");
    if (a.rc || b.rc) failures++;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (!a.rc) bh_hook_detach(a.link);
    if (!b.rc) bh_hook_detach(b.link);
    cycles++;
  }
  stop = true;
  runner.join();
  long calls = 0, bad = 0;
  for (auto &x : w) {
    calls += x.calls;
    bad += x.bad;
  }
  bh_hook_stats st{};
  st.sz = sizeof st;
  bh_hook_get_stats(&st);
  printf(
      "    %ld attach/detach cycles, %ld calls, %ld probe hits; so far %llu pauses, %llu threads "
      "parked, %llu moved out of the patch\n",
      cycles, calls, g_churn_hits.load(), (unsigned long long)st.pauses, (unsigned long long)st.threads_paused,
      (unsigned long long)st.threads_moved);
  CHECK_EQ(failures, 0);
  CHECK_EQ(bad, 0);
  CHECK(cycles > 2);
  CHECK(g_churn_hits.load() > 0);
  CHECK(memcmp(reinterpret_cast<void *>(tl_add), before, 16) == 0);
}

bh_hook_stats stats_now() {
  bh_hook_stats st{};
  st.sz = sizeof st;
  bh_hook_get_stats(&st);
  return st;
}

bool is_patched(void *f) {
  bh_hook_func_info fi{};
  fi.sz = sizeof fi;
  return bh_hook_get_func_info(f, &fi) == 0 && fi.patched;
}

int end_txn(std::string *msg = nullptr) {
  char err[512] = "";
  bh_hook_txn_opts o{};
  o.sz = sizeof o;
  o.errbuf = err;
  o.errbuf_sz = sizeof err;
  const int rc = bh_hook_end_transaction(&o);
  if (msg) *msg = err;
  return rc;
}

TEST(t37_transaction_patches_with_one_pause) {
  // tl_add and tl_mix need a pause each (several instructions under the
  // patch); tl_fib, tl_calls_first too or an atomic store.  Two threads call
  // them meanwhile, so the pause parks someone.
  void *fns[] = {reinterpret_cast<void *>(tl_add), reinterpret_cast<void *>(tl_mix), reinterpret_cast<void *>(tl_fib),
                 reinterpret_cast<void *>(tl_calls_first)};
  const char *names[] = {"tl_add", "tl_mix", "tl_fib", "tl_calls_first"};
  std::vector<Worker> w(2);
  std::atomic<bool> stop{false};
  std::thread runner([&] { run_workers(w, stop); });
  g_churn_hits = 0;
  const bh_hook_stats st0 = stats_now();
  CHECK_EQ(bh_hook_begin_transaction(), 0);
  CHECK_EQ(bh_hook_begin_transaction(), 0);  // nested
  std::vector<bh_hook_link *> links;
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 3; k++) {  // three links each
      AttachResult a = attach(fns[i], BH_HOOK_ENTRY, count_global, nullptr, names[i]);
      CHECK_EQ(a.rc, 0);
      if (!a.rc) links.push_back(a.link);
    }
  for (void *f : fns) CHECK(!is_patched(f));  // recorded, not written
  CHECK_EQ(end_txn(), 0);                     // inner end: still nothing
  for (void *f : fns) CHECK(!is_patched(f));
  CHECK_EQ(stats_now().pauses, st0.pauses);
  CHECK_EQ(end_txn(), 0);  // outermost: all at once
  const bh_hook_stats st1 = stats_now();
  for (void *f : fns) CHECK(is_patched(f));
  CHECK_EQ(st1.pauses - st0.pauses, 1u);
  CHECK_EQ(st1.transactions - st0.transactions, 1u);
  const long before = g_churn_hits.load();
  CHECK_EQ(p_fib(1), 1);
  CHECK_EQ(g_churn_hits.load() - before >= 3, true);  // three listeners on tl_fib

  // A link attached in a transaction to a function already hooked joins
  // its listener list only at the end.
  static std::atomic<long> late_hits{0};
  auto late = [](void *, struct pt_regs *, struct bh_hook_call *) -> uint64_t {
    late_hits++;
    return 0;
  };
  CHECK_EQ(bh_hook_begin_transaction(), 0);
  AttachResult lt = attach(fns[2], BH_HOOK_ENTRY, late, nullptr, "tl_fib");
  CHECK_EQ(lt.rc, 0);
  CHECK_EQ(p_fib(1), 1);
  CHECK_EQ(late_hits.load(), 0);
  CHECK_EQ(end_txn(), 0);
  CHECK_EQ(p_fib(1), 1);
  CHECK_EQ(late_hits.load(), 1);
  if (!lt.rc) links.push_back(lt.link);
  const bh_hook_stats st1b = stats_now();
  CHECK_EQ(st1b.pauses, st1.pauses);  // nothing to patch

  // Detach all in one transaction: one pause restores every function.
  CHECK_EQ(bh_hook_begin_transaction(), 0);
  for (bh_hook_link *l : links) CHECK_EQ(bh_hook_detach(l), 0);
  for (void *f : fns) CHECK(is_patched(f));  // listeners gone, code not yet
  CHECK_EQ(end_txn(), 0);
  const bh_hook_stats st2 = stats_now();
  CHECK_EQ(st2.pauses - st1b.pauses, 1u);
  for (void *f : fns) CHECK(!is_patched(f));
  stop = true;
  runner.join();
  for (auto &x : w) CHECK_EQ(x.bad, 0);
  CHECK_EQ(end_txn(), -EINVAL);  // none open
}

TEST(t38_failed_transaction_attaches_nothing) {
  // tl_mix's first byte changes between its attach and the end (someone
  // else patched it): the end refuses, writes nothing, and every link of
  // the transaction fails, tl_add's too.
  uint8_t add_before[16];
  memcpy(add_before, reinterpret_cast<void *>(tl_add), 16);
  long calls_before = g_churn_hits.load();
  CHECK_EQ(bh_hook_begin_transaction(), 0);
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_global, nullptr, "tl_add");
  AttachResult b = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_RETURN, count_global, nullptr, "tl_mix");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  auto *m = reinterpret_cast<uint8_t *>(tl_mix);
  const uintptr_t page = reinterpret_cast<uintptr_t>(m) & ~uintptr_t(4095);
  CHECK_EQ(mprotect(reinterpret_cast<void *>(page), 8192, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
  const uint8_t saved = m[0];
  m[0] = 0x90;  // a nop in place of its first byte
  std::string msg;
  const int rc = end_txn(&msg);
  m[0] = saved;
  mprotect(reinterpret_cast<void *>(page), 8192, PROT_READ | PROT_EXEC);
  CHECK_EQ(rc, -EBUSY);
  CHECK(msg.find("tl_mix") != std::string::npos);
  printf("    %s\n", msg.c_str());
  CHECK(memcmp(reinterpret_cast<void *>(tl_add), add_before, 16) == 0);
  CHECK(!is_patched(reinterpret_cast<void *>(tl_add)));
  CHECK(!is_patched(reinterpret_cast<void *>(tl_mix)));
  CHECK_EQ(bh_hook_link__error(a.link), -EBUSY);
  CHECK_EQ(bh_hook_link__error(b.link), -EBUSY);
  CHECK_EQ(p_add(1, 2), 3);
  CHECK_EQ(g_churn_hits.load(), calls_before);  // the listeners never ran
  CHECK_EQ(bh_hook_detach(a.link), 0);          // frees the failed links
  CHECK_EQ(bh_hook_detach(b.link), 0);
  // The next attach works as usual.
  AttachResult c = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_global, nullptr, "tl_add");
  CHECK_EQ(c.rc, 0);
  CHECK_EQ(p_add(2, 2), 4);
  CHECK_EQ(g_churn_hits.load(), calls_before + 1);
  CHECK_EQ(bh_hook_detach(c.link), 0);
}

TEST(t39_trampolines_freed_under_load) {
  // 10,000 attach/detach cycles (entry and return listeners in turn) over
  // tl_add, tl_mix and tl_fib while threads call tl_add: each detach
  // unpatches its function and retires its trampoline, which the next
  // pause frees (and the next attach reuses) once no thread is in it.
  // Memory stays flat; with nothing calling them the last ones go too.
  void *fns[] = {reinterpret_cast<void *>(tl_add), reinterpret_cast<void *>(tl_mix), reinterpret_cast<void *>(tl_fib)};
  const char *names[] = {"tl_add", "tl_mix", "tl_fib"};
  const int cycles = getenv("BH_FREE_CYCLES") ? atoi(getenv("BH_FREE_CYCLES")) : 10000;
  // The first return probe hooks the unwinder's entry points for good
  // (two trampolines): take them out of the count.
  AttachResult r0 = attach(fns[0], BH_HOOK_RETURN, count_global, nullptr, "tl_add");
  CHECK_EQ(r0.rc, 0);
  if (!r0.rc) bh_hook_detach(r0.link);
  bh_hook_collect();
  const bh_hook_stats st0 = stats_now();
  // Two threads call tl_add in bursts of 64 with a short sleep between
  // (spinning threads on a loaded two-core machine make every pause wait
  // for the scheduler: 10,000 cycles would take minutes).
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, bad{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; t++)
    callers.emplace_back([&, t] {
      int x = t * 1000;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 64; k++, x++)
          if (p_add(x, 7) != x + 7) bad++;
        calls += 64;
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    });
  uint64_t peak = 0;
  int failures = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < cycles; i++) {
    AttachResult a =
        attach(fns[i % 3], (i / 3) & 1 ? BH_HOOK_RETURN : BH_HOOK_ENTRY, count_global, nullptr, names[i % 3]);
    if (a.rc) {
      failures++;
      continue;
    }
    CHECK_EQ(bh_hook_detach(a.link), 0);
    peak = std::max(peak, stats_now().code_bytes);
  }
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  for (auto &t : callers) t.join();
  const bh_hook_stats st1 = stats_now();
  printf("    %ld calls meanwhile\n", calls.load());
  printf(
      "    %d cycles (%.0f us each): %llu trampolines freed, %llu pauses, %llu extra checks, code bytes "
      "%llu -> %llu (peak %llu), %llu retired now\n",
      cycles, us / cycles, (unsigned long long)(st1.trampolines_freed - st0.trampolines_freed),
      (unsigned long long)(st1.pauses - st0.pauses), (unsigned long long)(st1.checks - st0.checks),
      (unsigned long long)st0.code_bytes, (unsigned long long)st1.code_bytes, (unsigned long long)peak,
      (unsigned long long)st1.trampolines_retired);
  CHECK_EQ(failures, 0);
  CHECK_EQ(bad.load(), 0);
  CHECK(calls.load() > 0);
  CHECK(st1.trampolines_freed - st0.trampolines_freed > uint64_t(cycles) / 4);
  // Flat: the three functions' trampolines plus the few waiting (8 at most
  // before a dedicated pause), whatever the number of cycles.
  CHECK(peak <= st0.code_bytes + (3 + 8) * 256);
  CHECK_EQ(bh_hook_collect(), 0);  // nothing runs in them now
  CHECK_EQ(stats_now().trampolines_retired, 0u);
  CHECK_EQ(stats_now().code_bytes, st0.code_bytes);
}

TEST(t31_listener_churn_loses_no_calls) {
  // A permanent entry and return listener count every call per thread
  // while other listeners come and go: none may be lost.
  AttachResult pe = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_tls, nullptr, "tl_add");
  AttachResult pr = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, count_tls_ret, nullptr, "tl_add");
  CHECK_EQ(pe.rc, 0);
  CHECK_EQ(pr.rc, 0);
  std::vector<Worker> w(4);
  std::atomic<bool> stop{false};
  std::thread runner([&] { run_workers(w, stop); });
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(stress_seconds());
  long cycles = 0;
  while (std::chrono::steady_clock::now() < end) {
    AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_global, nullptr, "tl_add");
    AttachResult b = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_RETURN, count_global, nullptr, "tl_add");
    if (!a.rc) bh_hook_detach(a.link);
    if (!b.rc) bh_hook_detach(b.link);
    cycles++;
  }
  stop = true;
  runner.join();
  for (auto &x : w) {
    CHECK_EQ(x.bad, 0);
    CHECK_EQ(x.probe_hits, x.calls);
    CHECK_EQ(x.ret_hits, x.calls);
  }
  printf("    %ld listener attach/detach cycles, %ld calls on thread 0\n", cycles, w[0].calls);
  bh_hook_detach(pe.link);
  bh_hook_detach(pr.link);
}

TEST(t36_misaligned_functions_under_load) {
  // The three ways to write a patch, each under load: at 10 mod 16 one
  // cmpxchg16b; at 13 mod 16 the patch straddles 16-byte blocks, so both
  // attach and detach pause the threads.
  int (*volatile fns[2])(int, int) = {tl_add_at10, tl_add_at13};
  // (Read through the volatile array: GCC assumes function addresses are
  // aligned and folds `addr % 16 == 13` to false.)
  CHECK_EQ(reinterpret_cast<uintptr_t>(fns[0]) % 16, 10u);
  CHECK_EQ(reinterpret_cast<uintptr_t>(fns[1]) % 16, 13u);
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, calls{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++)
    ts.emplace_back([&, i] {
      int (*f)(int, int) = fns[i & 1];
      long n = 0;
      for (int x = 0; !stop.load(std::memory_order_relaxed); x++, n++)
        if (f(x, 3) != x + 3) bad++;
      calls += n;
    });
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(stress_seconds());
  long cycles = 0, failures = 0;
  uint8_t before[2][16];
  for (int k = 0; k < 2; k++) memcpy(before[k], reinterpret_cast<void *>(fns[k]), 16);
  while (std::chrono::steady_clock::now() < end) {
    for (int k = 0; k < 2; k++) {
      AttachResult a = attach(reinterpret_cast<void *>(fns[k]), BH_HOOK_ENTRY, count_global, nullptr, "tl_add_at");
      AttachResult b = attach(reinterpret_cast<void *>(fns[k]), BH_HOOK_RETURN, count_global, nullptr, "tl_add_at");
      if (a.rc || b.rc) failures++;
      if (!a.rc) bh_hook_detach(a.link);
      if (!b.rc) bh_hook_detach(b.link);
    }
    cycles++;
  }
  stop = true;
  for (auto &t : ts) t.join();
  printf("    %ld cycles over both functions, %ld calls\n", cycles, calls.load());
  CHECK_EQ(failures, 0);
  CHECK_EQ(bad.load(), 0);
  for (int k = 0; k < 2; k++) CHECK(memcmp(reinterpret_cast<void *>(fns[k]), before[k], 16) == 0);
}

TEST(t32_thread_that_blocks_the_signal) {
  // A thread that blocks every signal and sleeps in read(): it cannot be
  // paused, but /proc shows it asleep outside the patch, so attach works.
  int fds[2];
  CHECK_EQ(pipe(fds), 0);
  std::atomic<bool> ready{false};
  std::thread sleeper([&] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    ready = true;
    char c;
    (void)!read(fds[0], &c, 1);
    (void)!p_add(1, 2);  // runs through whatever is patched now
  });
  while (!ready) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Seen s;
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, record_entry, &s, "tl_add");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(p_add(1, 2), 3);
  CHECK_EQ(s.calls, 1);
  (void)!write(fds[1], "x", 1);
  sleeper.join();
  CHECK_EQ(s.calls, 2);
  if (!a.rc) CHECK_EQ(bh_hook_detach(a.link), 0);
  close(fds[0]);
  close(fds[1]);
}

TEST(t33_thread_stopped_inside_the_patch_is_moved) {
  // A thread blocked in pause() inside tl_syscall0 resumes at +4: after
  // the patch those bytes are the tail of the jump.  The pause handler
  // must move it to the same instruction in the relocated copy.
  std::atomic<long> result{1};
  std::atomic<bool> started{false};
  std::thread t([&] {
    started = true;
    result = tl_syscall0(SYS_pause);  // returns -EINTR after the pause signal
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  bh_hook_stats before{};
  before.sz = sizeof before;
  bh_hook_get_stats(&before);
  Seen s;
  AttachResult a = attach(reinterpret_cast<void *>(tl_syscall0), BH_HOOK_ENTRY, record_entry, &s, "tl_syscall0");
  CHECK_EQ(a.rc, 0);
  t.join();
  CHECK_EQ(result.load(), -EINTR);
  bh_hook_stats after{};
  after.sz = sizeof after;
  bh_hook_get_stats(&after);
  CHECK_EQ(after.threads_moved - before.threads_moved, 1u);
  CHECK_EQ(tl_syscall0(SYS_getpid), getpid());
  CHECK_EQ(s.calls, 1);
  if (!a.rc) bh_hook_detach(a.link);
}

TEST(t34_fork_keeps_hooks_working) {
  std::atomic<long> hits{0};
  AttachResult a = attach(reinterpret_cast<void *>(tl_add), BH_HOOK_ENTRY, count_ret, &hits, "tl_add");
  CHECK_EQ(a.rc, 0);
  // Other threads exist at fork time (and vanish in the child).
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop) p_add(1, 1);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const pid_t pid = fork();
  if (pid == 0) {
    // Child: the listener still runs; detaching (which pauses threads
    // and waits for a grace period) must not wait for the dead ones.
    const long before = hits.load();
    int ok = p_add(2, 3) == 5 && hits.load() == before + 1;
    ok = ok && bh_hook_detach(a.link) == 0 && p_add(2, 3) == 5 && hits.load() == before + 1;
    AttachResult b = attach(reinterpret_cast<void *>(tl_mix), BH_HOOK_ENTRY, noop, nullptr, "tl_mix");
    ok = ok && b.rc == 0 && bh_hook_detach(b.link) == 0;
    _exit(ok ? 0 : 1);
  }
  stop = true;
  busy.join();
  int status = 0;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (!a.rc) bh_hook_detach(a.link);
}

namespace {
__attribute__((noinline)) long exits_thread(long x) {
  if (x) pthread_exit(nullptr);
  return x;
}
long (*volatile p_exits_thread)(long) = exits_thread;
struct Cleanup {
  std::atomic<int> *ran;
  ~Cleanup() { ran->fetch_add(1); }
};
}  // namespace

TEST(t35_pthread_exit_through_return_probe) {
  // pthread_exit unwinds (forced unwind) through a frame whose return
  // address is the hook's: C++ destructors above it must still run.
  std::atomic<long> rets{0};
  std::atomic<int> cleanups{0};
  AttachResult a = attach(reinterpret_cast<void *>(exits_thread), BH_HOOK_RETURN, count_ret, &rets, "exits_thread");
  CHECK_EQ(a.rc, 0);
  for (int i = 0; i < 20; i++) {
    std::thread t([&] {
      Cleanup c{&cleanups};
      p_exits_thread(0);
      p_exits_thread(1);
    });
    t.join();
  }
  CHECK_EQ(cleanups.load(), 20);
  CHECK_EQ(rets.load(), 20);
  if (!a.rc) bh_hook_detach(a.link);
}

// ------------------------------------------------------------------ 40 libc --

namespace {
const char kMagicA[] = "bpfhook-strlen-probe";
const char kMagicB[] = "bpfhook-strlen-override";
struct StrlenSeen {
  std::atomic<long> hits{0};
  std::atomic<long> rets{0};
};
uint64_t strlen_entry(void *u, struct pt_regs *regs, struct bh_hook_call *call) {
  if (regs->rdi == reinterpret_cast<uint64_t>(kMagicA)) static_cast<StrlenSeen *>(u)->hits++;
  if (regs->rdi == reinterpret_cast<uint64_t>(kMagicB)) bh_hook_call__override_return(call, 4242);
  return 0;
}
uint64_t strlen_ret(void *u, struct pt_regs *regs, struct bh_hook_call *call) {
  uint64_t a0;
  bh_hook_call__arg(call, 0, &a0);
  if (a0 == reinterpret_cast<uint64_t>(kMagicA) && regs->rax == sizeof kMagicA - 1)
    static_cast<StrlenSeen *>(u)->rets++;
  return 0;
}

struct MallocSeen {
  std::atomic<long> sized{0};
  std::atomic<uint64_t> ptr{0};
};
constexpr size_t kOddSize = 123457;
uint64_t malloc_entry(void *u, struct pt_regs *regs, struct bh_hook_call *) {
  if (regs->rdi == kOddSize) static_cast<MallocSeen *>(u)->sized++;
  return 0;
}
uint64_t malloc_ret(void *u, struct pt_regs *regs, struct bh_hook_call *call) {
  uint64_t a0;
  bh_hook_call__arg(call, 0, &a0);
  if (a0 == kOddSize) static_cast<MallocSeen *>(u)->ptr = regs->rax;
  return 0;
}
}  // namespace

TEST(t40_libc_strlen) {
  auto fn = reinterpret_cast<size_t (*)(const char *)>(dlsym(RTLD_DEFAULT, "strlen"));
  CHECK(fn != nullptr);
  if (!fn) return;
  size_t (*volatile p_strlen)(const char *) = fn;
  uint8_t before[16];
  memcpy(before, reinterpret_cast<void *>(fn), 16);
  StrlenSeen s;
  AttachResult a = attach(reinterpret_cast<void *>(fn), BH_HOOK_ENTRY, strlen_entry, &s, "strlen");
  AttachResult b = attach(reinterpret_cast<void *>(fn), BH_HOOK_RETURN, strlen_ret, &s, "strlen");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  if (a.rc || b.rc) return;
  for (int i = 0; i < 1000; i++) CHECK_EQ(p_strlen(kMagicA), sizeof kMagicA - 1);
  CHECK_EQ(p_strlen(kMagicB), 4242u);
  CHECK_EQ(p_strlen("abc"), 3u);
  char buf[64];
  snprintf(buf, sizeof buf, "%s", "printf uses strlen internally");
  CHECK_EQ(s.hits.load(), 1000);
  CHECK_EQ(s.rets.load(), 1000);
  bh_hook_func_info fi{};
  fi.sz = sizeof fi;
  bh_hook_get_func_info(reinterpret_cast<void *>(fn), &fi);
  printf("    strlen at %p: patch %u bytes over %u bytes of instructions\n", reinterpret_cast<void *>(fn), fi.patch_len,
         fi.reloc_len);
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);
  CHECK(memcmp(reinterpret_cast<void *>(fn), before, 16) == 0);
  CHECK_EQ(p_strlen(kMagicB), sizeof kMagicB - 1);
}

TEST(t41_libc_malloc_from_many_threads) {
  auto fn = reinterpret_cast<void *(*)(size_t)>(dlsym(RTLD_DEFAULT, "malloc"));
  CHECK(fn != nullptr);
  if (!fn) return;
  MallocSeen s;
  AttachResult a = attach(reinterpret_cast<void *>(fn), BH_HOOK_ENTRY, malloc_entry, &s, "malloc");
  AttachResult b = attach(reinterpret_cast<void *>(fn), BH_HOOK_RETURN, malloc_ret, &s, "malloc");
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(b.rc, 0);
  if (a.rc || b.rc) return;
  void *(*volatile p_malloc)(size_t) = fn;
  void *p = p_malloc(kOddSize);
  CHECK_EQ(s.sized.load(), 1);
  CHECK_EQ(s.ptr.load(), reinterpret_cast<uint64_t>(p));
  free(p);
  // Threads allocating (and the thread start-up itself) go through it too.
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++)
    ts.emplace_back([] {
      for (int k = 0; k < 20000; k++) {
        std::string s(64 + k % 200, 'x');
        if (s.size() < 64) abort();
      }
    });
  for (auto &t : ts) t.join();
  bh_hook_detach(a.link);
  bh_hook_detach(b.link);
}

// ------------------------------------------------------------------- main --

// ------------------------------------------------ probes inside functions --

namespace {

AttachResult attach_at(void *func, size_t off, size_t size, bh_hook_kind kind, bh_hook_fn fn, void *user,
                       const char *name, uint32_t flags = 0) {
  AttachResult r{};
  char err[512] = "";
  bh_hook_attach_opts o{};
  o.sz = sizeof o;
  o.func_name = name;
  o.func_offset = off;
  o.func_size = size;
  o.flags = flags;
  o.errbuf = err;
  o.errbuf_sz = sizeof err;
  r.rc = bh_hook_attach(g_engine, static_cast<uint8_t *>(func) + off, kind, fn, user, &o, &r.link);
  r.err = err;
  return r;
}

size_t sym_size(void *f) {
  Dl_info info;
  ElfW(Sym) *sym = nullptr;
  if (!dladdr1(f, &info, reinterpret_cast<void **>(&sym), RTLD_DL_SYMENT) || !sym) return 0;
  return sym->st_size;
}

uint64_t count_hits(void *user, struct pt_regs *, struct bh_hook_call *) {
  static_cast<std::atomic<long> *>(user)->fetch_add(1);
  return 0;
}

uint64_t try_override(void *user, struct pt_regs *, struct bh_hook_call *call) {
  *static_cast<int *>(user) = bh_hook_call__override_return(call, 42);
  return 0;
}

// Uses a lot of stack: without the red-zone skip the frame below it would
// already have overwritten the probed leaf's locals; this makes sure.
uint64_t stack_hungry(void *user, struct pt_regs *, struct bh_hook_call *) {
  volatile char buf[512];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = char(0xa5);
  static_cast<std::atomic<long> *>(user)->fetch_add(buf[7] == char(0xa5));
  return 0;
}

// The instruction boundaries of the first `n` bytes of `f`, by the relocator.
std::vector<uint32_t> boundaries(const void *f, size_t size, size_t n) {
  std::vector<uint32_t> out;
  size_t off = 0;
  while (off < n && off < size) {
    out.push_back(uint32_t(off));
    bh_reloc_plan plan{};
    plan.sz = sizeof plan;
    char err[256];
    const auto *p = static_cast<const uint8_t *>(f) + off;
    if (bh_reloc_analyze(p, size - off, uint64_t(p), 1, 0, &plan, err, sizeof err) != 0) {
      // a ret/jmp ends the block but still has a length: decode it alone
      if (plan.len == 0) break;
    }
    if (plan.len == 0) break;
    off += plan.len;
  }
  return out;
}

// Runs `fn` in a child process; true if it exited with status 0.
bool in_child(const std::function<bool()> &fn) {
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) _exit(fn() ? 0 : 1);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "  child: %s %d\n", WIFSIGNALED(status) ? "signal" : "exit status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return false;
  }
  return true;
}

int (*volatile p_redzone)(int) = tl_redzone;
int (*volatile p_je32)(long) = tl_je32;
int (*volatile p_inline_data)(int) = tl_inline_data;

}  // namespace

TEST(t03_reloc_every_jcc) {
  // Every condition, rel8 and rel32, near and far copies; byte-exact.
  const uint64_t pc = 0x401000;
  for (uint8_t cc = 0; cc < 16; cc++) {
    for (int wide = 0; wide < 2; wide++) {
      for (int far = 0; far < 2; far++) {
        std::vector<uint8_t> in;
        if (wide)
          in = {0x0f, uint8_t(0x80 | cc), 0xbf, 0x00, 0x00, 0x00};  // free+3's je rel32
        else
          in = {uint8_t(0x70 | cc), 0x10};
        const uint64_t target = pc + in.size() + (wide ? 0xbf : 0x10);
        const uint64_t dest = far ? 0x7f0000000000ull : 0x402000;
        std::vector<uint8_t> want;
        auto u32 = [&](uint64_t v) {
          for (int i = 0; i < 4; i++) want.push_back(uint8_t(v >> (8 * i)));
        };
        auto u64 = [&](uint64_t v) {
          for (int i = 0; i < 8; i++) want.push_back(uint8_t(v >> (8 * i)));
        };
        if (!far) {
          want = {0x0f, uint8_t(0x80 | cc)};
          u32(target - (dest + 6));
          want.push_back(0xe9);
          u32(pc + in.size() - (dest + 11));
        } else {
          want = {uint8_t(0x70 | (cc ^ 1)), 14, 0xff, 0x25, 0, 0, 0, 0};
          u64(target);
          want.insert(want.end(), {0xff, 0x25, 0, 0, 0, 0});
          u64(pc + in.size());
        }
        uint8_t out[64];
        bh_reloc_plan plan{};
        plan.sz = sizeof plan;
        char err[256] = "";
        const int rc = bh_reloc_emit(in.data(), in.size(), pc, 1, dest, out, sizeof out, &plan, err, sizeof err);
        if (rc != 0 || tohex(out, plan.out_len) != tohex(want.data(), want.size())) {
          g_checks_failed++;
          fprintf(stderr, "  FAIL jcc cc=%x %s %s: rc %d %s\n    got  %s\n    want %s\n", cc, wide ? "rel32" : "rel8",
                  far ? "far" : "near", rc, err, tohex(out, plan.out_len).c_str(),
                  tohex(want.data(), want.size()).c_str());
        }
      }
    }
  }
  // free's shape at +3 with the 5-byte patch: je rel32 alone.
  const std::vector<uint8_t> fr = hex("48 85 ff 0f 84 bf 00 00 00 55");
  bh_reloc_plan plan{};
  plan.sz = sizeof plan;
  char err[256];
  CHECK_EQ(bh_reloc_analyze(fr.data() + 3, fr.size() - 3, pc + 3, 5, 0x402000, &plan, err, sizeof err), 0);
  CHECK_EQ(plan.len, 6u);
  CHECK_EQ(plan.n_insns, 1u);
}

TEST(t04_reloc_check_function) {
  char err[256] = "";
  // push rbp; mov rbp,rsp; mov eax,edi; pop rbp; ret
  const std::vector<uint8_t> f = hex("55 48 89 e5 89 f8 5d c3");
  CHECK_EQ(bh_reloc_check_function(f.data(), f.size(), 0x401000, 1, 5, 1, err, sizeof err), 0);
  CHECK_EQ(bh_reloc_check_function(f.data(), f.size(), 0x401000, 2, 5, 1, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "+0x2 is inside the mov at +0x1 (3 bytes): nearest instruction boundaries +0x1 and +0x4"));
  // Inline data: a strict scan refuses, a lenient one stops quietly.
  const std::vector<uint8_t> g = hex("55 48 89 e5 5d c3 06 06");
  CHECK_EQ(bh_reloc_check_function(g.data(), g.size(), 0x401000, 0, 5, 1, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "cannot decode the instruction at +0x6"));
  CHECK_EQ(bh_reloc_check_function(g.data(), g.size(), 0x401000, 0, 5, 0, err, sizeof err), 0);
  // A branch from before the patch into it: jmp +2 at +0 lands at +4,
  // inside a patch at [2, 7).
  const std::vector<uint8_t> h = hex("eb 02 90 90 90 90 90 c3");
  CHECK_EQ(bh_reloc_check_function(h.data(), h.size(), 0x401000, 2, 5, 1, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "jumps into the patched bytes (+0x4)"));
  // A last instruction that runs past the size: lost step.
  const std::vector<uint8_t> k = hex("55 48 89 e5 b8 01 00 00 00");
  CHECK_EQ(bh_reloc_check_function(k.data(), 6, 0x401000, 0, 5, 1, err, sizeof err), -ENOTSUP);
}

TEST(t11b_padding_after_a_short_function) {
  // With the function's size known, the patch may run past its final ret
  // over the alignment padding that follows (a USDT site right before
  // `return`, a tiny getter): tl_tiny is `mov eax, edi; ret`, 3 bytes.
  void *f = reinterpret_cast<void *>(tl_tiny);
  uint8_t before[16];
  memcpy(before, f, sizeof before);
  std::atomic<long> hits{0};
  AttachResult a = attach_at(f, 0, sym_size(f), BH_HOOK_ENTRY, count_hits, &hits, "tl_tiny");
  CHECK_EQ(a.rc, 0);
  int (*volatile fn)(int) = tl_tiny;
  CHECK_EQ(fn(7), 7);
  CHECK_EQ(fn(-3), -3);
  CHECK_EQ(hits.load(), 2);
  if (!a.rc) CHECK_EQ(bh_hook_detach(a.link), 0);
  CHECK(memcmp(f, before, sizeof before) == 0);

  // The relocator alone: padding only up to the limit the caller gives, and
  // only padding bytes.
  char err[256];
  bh_reloc_plan plan{};
  const std::vector<uint8_t> pad = hex("90 c3 cc cc cc cc cc cc");
  plan.sz = sizeof plan;
  plan.padding_upto = 8;
  CHECK_EQ(bh_reloc_analyze(pad.data(), pad.size(), 0x401000, 5, 0x402000, &plan, err, sizeof err), 0);
  CHECK_EQ(plan.len, 5u);
  CHECK_EQ(plan.padding_at, 2u);
  CHECK_EQ(plan.n_insns, 2u);
  plan = bh_reloc_plan{};
  plan.sz = sizeof plan;
  plan.padding_upto = 4;  // the next function may start at +4
  CHECK_EQ(bh_reloc_analyze(pad.data(), pad.size(), 0x401000, 5, 0x402000, &plan, err, sizeof err), -ENOTSUP);
  CHECK(strstr(err, "not all padding") != nullptr);
  const std::vector<uint8_t> code = hex("90 c3 55 48 89 e5 c3");  // the next function right after
  plan = bh_reloc_plan{};
  plan.sz = sizeof plan;
  plan.padding_upto = 16;
  CHECK_EQ(bh_reloc_analyze(code.data(), code.size(), 0x401000, 5, 0x402000, &plan, err, sizeof err), -ENOTSUP);
  const std::vector<uint8_t> nops = hex("90 c3 66 0f 1f 44 00 00 cc");  // a multi-byte nop
  plan = bh_reloc_plan{};
  plan.sz = sizeof plan;
  plan.padding_upto = 9;
  CHECK_EQ(bh_reloc_analyze(nops.data(), nops.size(), 0x401000, 5, 0x402000, &plan, err, sizeof err), 0);
  CHECK_EQ(plan.len, 8u);
}

TEST(t14_midfunction_refusals) {
  void *f = reinterpret_cast<void *>(tl_redzone);
  const size_t size = sym_size(f);
  CHECK(size > TL_REDZONE_PROBE);
  std::atomic<long> hits{0};
  AttachResult r = attach_at(f, TL_REDZONE_PROBE, size, BH_HOOK_RETURN, count_hits, &hits, "tl_redzone+0xa");
  CHECK_EQ(r.rc, -EINVAL);
  CHECK(strstr(r.err.c_str(), "a return probe at +0xa") != nullptr);
  r = attach_at(f, TL_REDZONE_PROBE, size, BH_HOOK_REPLACE, count_hits, &hits, "tl_redzone+0xa");
  CHECK_EQ(r.rc, -EINVAL);
  CHECK(strstr(r.err.c_str(), "a replacement at +0xa") != nullptr);
  // +1, +5, +9, +11 are inside instructions.
  r = attach_at(f, 1, size, BH_HOOK_ENTRY, count_hits, &hits, "tl_redzone+1");
  CHECK_EQ(r.rc, -EINVAL);
  CHECK(strstr(r.err.c_str(), "nearest instruction boundaries +0x0 and +0x4") != nullptr);
  r = attach_at(f, 11, size, BH_HOOK_ENTRY, count_hits, &hits, "tl_redzone+11");
  CHECK_EQ(r.rc, -EINVAL);
  CHECK(strstr(r.err.c_str(), "nearest instruction boundaries +0xa and +0xf") != nullptr);
  // An entry probe there may not override.
  int orc = 1;
  r = attach_at(f, TL_REDZONE_PROBE, size, BH_HOOK_ENTRY, try_override, &orc, "tl_redzone+0xa");
  CHECK_EQ(r.rc, 0);
  CHECK_EQ(p_redzone(20), 41);
  CHECK_EQ(orc, -EOPNOTSUPP);
  if (!r.rc) bh_hook_detach(r.link);
  // Data inside a function of known size: refused; without the size the
  // old quiet scan accepts it.
  void *d = reinterpret_cast<void *>(tl_inline_data);
  r = attach_at(d, 0, sym_size(d), BH_HOOK_ENTRY, count_hits, &hits, "tl_inline_data");
  CHECK_EQ(r.rc, -ENOTSUP);
  CHECK(strstr(r.err.c_str(), "cannot decode the instruction at +0x8") != nullptr);
  r = attach_at(d, 0, 0, BH_HOOK_ENTRY, count_hits, &hits, "tl_inline_data");
  CHECK_EQ(r.rc, 0);
  CHECK_EQ(p_inline_data(9), 9);
  if (!r.rc) bh_hook_detach(r.link);
  // Unknown attach flags.
  r = attach_at(f, 0, size, BH_HOOK_ENTRY, count_hits, &hits, "tl_redzone", 0x80);
  CHECK_EQ(r.rc, -EINVAL);
}

TEST(t15_red_zone_kept_mid_function) {
  void *f = reinterpret_cast<void *>(tl_redzone);
  const size_t size = sym_size(f);
  for (size_t off : {size_t(8), size_t(TL_REDZONE_PROBE)}) {
    std::atomic<long> hits{0};
    AttachResult r = attach_at(f, off, size, BH_HOOK_ENTRY, stack_hungry, &hits, "tl_redzone+off");
    CHECK_EQ(r.rc, 0);
    for (int x = -3; x < 100; x += 7) CHECK_EQ(p_redzone(x), 2 * x + 1);
    CHECK_EQ(hits.load(), 15);
    if (!r.rc) bh_hook_detach(r.link);
  }
}

TEST(t16_flags_kept_mid_function) {
  // tl_je32+3 is `je rel32` on the flags of `test rdi, rdi`: the probe must
  // give them back (this shape crashed libc's free(NULL)).
  CHECK(in_child([] {
    void *f = reinterpret_cast<void *>(tl_je32);
    std::atomic<long> hits{0};
    AttachResult r = attach_at(f, TL_JE32_PROBE, sym_size(f), BH_HOOK_ENTRY, count_hits, &hits, "tl_je32+3");
    if (r.rc) return false;
    const bool ok = p_je32(0) == -1 && p_je32(5) == 1 && p_je32(0) == -1 && hits.load() == 3;
    return bh_hook_detach(r.link) == 0 && ok;
  }));
}

TEST(t16b_no_vector_mid_function) {
  // NO_VECTOR listeners inside a function: no vector state is saved there
  // (since issue 14: it used to be, whatever the listeners said), and the
  // registers, the flags and the red zone are still given back.
  CHECK(in_child([] {
    void *f = reinterpret_cast<void *>(tl_je32);
    std::atomic<long> hits{0};
    AttachResult r = attach_at(f, TL_JE32_PROBE, sym_size(f), BH_HOOK_ENTRY, count_hits, &hits, "tl_je32+3",
                               BH_HOOK_ATTACH_F_NO_VECTOR);
    if (r.rc) return false;
    const bool ok = p_je32(0) == -1 && p_je32(5) == 1 && p_je32(0) == -1 && hits.load() == 3;
    return bh_hook_detach(r.link) == 0 && ok;
  }));
  void *f = reinterpret_cast<void *>(tl_redzone);
  std::atomic<long> hits{0};
  AttachResult r = attach_at(f, TL_REDZONE_PROBE, sym_size(f), BH_HOOK_ENTRY, count_hits, &hits, "tl_redzone+off",
                             BH_HOOK_ATTACH_F_NO_VECTOR);
  CHECK_EQ(r.rc, 0);
  for (int x = -3; x < 100; x += 7) CHECK_EQ(p_redzone(x), 2 * x + 1);
  CHECK_EQ(hits.load(), 15);
  if (!r.rc) bh_hook_detach(r.link);
}

namespace {
// The caller must be AVX code too, or __m256 goes through memory.
__attribute__((target("avx2"), noinline)) bool m256_call_ok() {
  __m256 (*volatile fn)(__m256, __m256) = tl_m256_add;
  const __m256 va = _mm256_setr_ps(1, 2, 3, 4, 5, 6, 7, 8);
  const __m256 vb = _mm256_setr_ps(10, 20, 30, 40, 50, 60, 70, 80);
  alignas(32) float out[8];
  _mm256_store_ps(out, fn(va, vb));
  bool ok = true;
  for (int i = 0; i < 8; i++)
    if (out[i] != float(11 * (i + 1))) {
      fprintf(stderr, "  lane %d: %g, want %d\n", i, double(out[i]), 11 * (i + 1));
      ok = false;
    }
  return ok;
}
}  // namespace

TEST(t29_vector_state_kept) {
  if (!__builtin_cpu_supports("avx2")) {
    printf("    skipped: this CPU has no AVX2\n");
    return;
  }
  // A listener that wipes every ymm register (as libc's AVX2 memcpy's
  // vzeroupper wipes the upper halves): __m256 arguments and the result
  // must survive, at entry and at return.
  struct L {
    static uint64_t wipe(void *user, struct pt_regs *, struct bh_hook_call *) {
      asm volatile("vzeroall" ::: "memory");
      static_cast<std::atomic<long> *>(user)->fetch_add(1);
      return 0;
    }
  };
  std::atomic<long> hits{0};
  AttachResult e = attach(reinterpret_cast<void *>(tl_m256_add), BH_HOOK_ENTRY, L::wipe, &hits, "tl_m256_add");
  AttachResult r = attach(reinterpret_cast<void *>(tl_m256_add), BH_HOOK_RETURN, L::wipe, &hits, "tl_m256_add");
  CHECK_EQ(e.rc, 0);
  CHECK_EQ(r.rc, 0);
  CHECK(m256_call_ok());
  CHECK_EQ(hits.load(), 2);
  if (!e.rc) bh_hook_detach(e.link);
  if (!r.rc) bh_hook_detach(r.link);
  // NO_VECTOR listeners: nothing saved, arguments still pass (the listener
  // and the engine touch no vector register).
  AttachResult n = attach_at(reinterpret_cast<void *>(tl_m256_add), 0, 0, BH_HOOK_ENTRY, count_hits, &hits,
                             "tl_m256_add", BH_HOOK_ATTACH_F_NO_VECTOR);
  CHECK_EQ(n.rc, 0);
  CHECK(m256_call_ok());
  if (!n.rc) bh_hook_detach(n.link);
}

// Inside a function with xmm0-15 live across the probe point: loads them
// from rdi, passes a 5-byte nop (the probe), stores them to rsi.
extern "C" void tl_xmm_mid(const void *in, void *out);
extern "C" char tl_xmm_mid_probe[];
asm(R"(
  .text
  .globl tl_xmm_mid
  .type tl_xmm_mid, @function
tl_xmm_mid:
  movdqu 0(%rdi), %xmm0
  movdqu 16(%rdi), %xmm1
  movdqu 32(%rdi), %xmm2
  movdqu 48(%rdi), %xmm3
  movdqu 64(%rdi), %xmm4
  movdqu 80(%rdi), %xmm5
  movdqu 96(%rdi), %xmm6
  movdqu 112(%rdi), %xmm7
  movdqu 128(%rdi), %xmm8
  movdqu 144(%rdi), %xmm9
  movdqu 160(%rdi), %xmm10
  movdqu 176(%rdi), %xmm11
  movdqu 192(%rdi), %xmm12
  movdqu 208(%rdi), %xmm13
  movdqu 224(%rdi), %xmm14
  movdqu 240(%rdi), %xmm15
  .globl tl_xmm_mid_probe
tl_xmm_mid_probe:
  nopl 0x0(%rax,%rax,1)
  movdqu %xmm0, 0(%rsi)
  movdqu %xmm1, 16(%rsi)
  movdqu %xmm2, 32(%rsi)
  movdqu %xmm3, 48(%rsi)
  movdqu %xmm4, 64(%rsi)
  movdqu %xmm5, 80(%rsi)
  movdqu %xmm6, 96(%rsi)
  movdqu %xmm7, 112(%rsi)
  movdqu %xmm8, 128(%rsi)
  movdqu %xmm9, 144(%rsi)
  movdqu %xmm10, 160(%rsi)
  movdqu %xmm11, 176(%rsi)
  movdqu %xmm12, 192(%rsi)
  movdqu %xmm13, 208(%rsi)
  movdqu %xmm14, 224(%rsi)
  movdqu %xmm15, 240(%rsi)
  ret
  .size tl_xmm_mid, .-tl_xmm_mid
)");

TEST(t29c_sse_only_listeners) {
  // A listener that wipes xmm0-15 with legacy SSE, as baseline C may.
  struct L {
    static uint64_t wipe(void *user, struct pt_regs *, struct bh_hook_call *) {
      asm volatile(
          "pxor %%xmm0,%%xmm0\n pxor %%xmm1,%%xmm1\n pxor %%xmm2,%%xmm2\n pxor %%xmm3,%%xmm3\n"
          "pxor %%xmm4,%%xmm4\n pxor %%xmm5,%%xmm5\n pxor %%xmm6,%%xmm6\n pxor %%xmm7,%%xmm7\n"
          "pxor %%xmm8,%%xmm8\n pxor %%xmm9,%%xmm9\n pxor %%xmm10,%%xmm10\n pxor %%xmm11,%%xmm11\n"
          "pxor %%xmm12,%%xmm12\n pxor %%xmm13,%%xmm13\n pxor %%xmm14,%%xmm14\n pxor %%xmm15,%%xmm15" ::
              : "memory");
      static_cast<std::atomic<long> *>(user)->fetch_add(1);
      return 0;
    }
  };
  // Inside a function: SSE_ONLY gets xmm0-15 back (moves, not XSAVE); a
  // NO_VECTOR listener that broke its promise shows what is at stake.
  void *f = reinterpret_cast<void *>(tl_xmm_mid);
  const size_t off = size_t(tl_xmm_mid_probe - static_cast<char *>(f));
  uint8_t in[256], out[256];
  for (int i = 0; i < 256; i++) in[i] = uint8_t(i * 7 + 1);
  for (uint32_t flags : {uint32_t(BH_HOOK_ATTACH_F_SSE_ONLY), uint32_t(BH_HOOK_ATTACH_F_NO_VECTOR)}) {
    std::atomic<long> hits{0};
    AttachResult r = attach_at(f, off, 0, BH_HOOK_ENTRY, L::wipe, &hits, "tl_xmm_mid+probe", flags);
    CHECK_EQ(r.rc, 0);
    memset(out, 0, sizeof out);
    tl_xmm_mid(in, out);
    CHECK_EQ(hits.load(), 1);
    CHECK_EQ(memcmp(in, out, sizeof in) == 0, flags == BH_HOOK_ATTACH_F_SSE_ONLY);
    if (!r.rc) bh_hook_detach(r.link);
  }
  // At entry and return: the argument and result registers, while the
  // upper halves of ymm (which legacy SSE leaves alone) carry the rest.
  if (__builtin_cpu_supports("avx2")) {
    std::atomic<long> hits{0};
    AttachResult e = attach_at(reinterpret_cast<void *>(tl_m256_add), 0, 0, BH_HOOK_ENTRY, L::wipe, &hits,
                               "tl_m256_add", BH_HOOK_ATTACH_F_SSE_ONLY);
    AttachResult r = attach_at(reinterpret_cast<void *>(tl_m256_add), 0, 0, BH_HOOK_RETURN, L::wipe, &hits,
                               "tl_m256_add", BH_HOOK_ATTACH_F_SSE_ONLY);
    CHECK_EQ(e.rc, 0);
    CHECK_EQ(r.rc, 0);
    CHECK(m256_call_ok());
    CHECK_EQ(hits.load(), 2);
    if (!e.rc) bh_hook_detach(e.link);
    if (!r.rc) bh_hook_detach(r.link);
  }
}

TEST(t29b_x87_result_kept) {
  // A return listener that empties the x87 stack (MMX code ends in emms)
  // must not lose a long double result in st0.
  struct L {
    static uint64_t emms(void *user, struct pt_regs *, struct bh_hook_call *) {
      asm volatile("emms" ::: "memory");
      static_cast<std::atomic<long> *>(user)->fetch_add(1);
      return 0;
    }
  };
  long double (*volatile fn)(long double) = tl_ld;
  std::atomic<long> hits{0};
  AttachResult r = attach(reinterpret_cast<void *>(tl_ld), BH_HOOK_RETURN, L::emms, &hits, "tl_ld");
  CHECK_EQ(r.rc, 0);
  CHECK(fn(20.25L) == 41.5L);
  CHECK(fn(-1.0L) == -1.0L);
  CHECK_EQ(hits.load(), 2);
  if (!r.rc) bh_hook_detach(r.link);
}

TEST(t42_libc_free_at_every_boundary) {
  // Entry probes at each instruction boundary of free's first 32 bytes;
  // free(NULL) and free(p) stay right (child process: a wrong relocation
  // kills it).  Some offsets may be refused (a branch into the patch...):
  // refusing is correct, running wrong is not.
  CHECK(in_child([] {
    void *f = dlsym(RTLD_DEFAULT, "free");
    const size_t size = sym_size(f);
    if (!f || !size) return false;
    int attached = 0, refused = 0;
    for (uint32_t off : boundaries(f, size, 32)) {
      std::atomic<long> hits{0};
      char name[32];
      snprintf(name, sizeof name, "free+0x%x", off);
      AttachResult r = attach_at(f, off, size, BH_HOOK_ENTRY, count_hits, &hits, name);
      if (r.rc) {
        printf("    %s refused: %s\n", name, r.err.c_str());
        refused++;
        continue;
      }
      attached++;
      void (*volatile fr)(void *) = free;
      fr(nullptr);
      void *p = malloc(48);
      fr(p);
      fr(nullptr);
      const long n = hits.load();
      if (bh_hook_detach(r.link) != 0) return false;
      // free(NULL) may return before a later offset: only free(p) must pass every one
      if (n < 1) {
        printf("    %s: %ld hits\n", name, n);
        return false;
      }
    }
    printf("    free: %d offsets attached and ran, %d refused\n", attached, refused);
    return attached > 0;
  }));
}

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  char err[256] = "";
  bh_hook_engine_opts eo{};
  eo.sz = sizeof eo;
  eo.errbuf = err;
  eo.errbuf_sz = sizeof err;
  g_engine = bh_hook_engine__new(&eo);
  if (!g_engine) {
    fprintf(stderr, "engine: %s\n", err);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  const char *only = getenv("BH_TEST");
  for (const Test &t : tests()) {
    if (only && !strstr(t.name, only)) continue;
    g_test = t.name;
    g_checks_failed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    t.fn();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (g_checks_failed) {
      g_failed++;
      printf("not ok  %s (%d checks failed)\n", t.name, g_checks_failed);
    } else {
      g_passed++;
      printf("ok      %s (%.0f ms)\n", t.name, ms);
    }
  }
  bh_hook_engine__destroy(g_engine);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
