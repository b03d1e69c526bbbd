// x86-64 relocator (see include/bpfhook/reloc.h for the contract).
//
// Two passes over the same decoded instructions: plan() decides what each
// instruction becomes and refuses what cannot move safely; emit() writes the
// bytes for a destination.  The plan never depends on the destination; only
// the branch forms (rel32 or absolute) and RIP-relative displacements do.

#include "bpfhook/reloc.h"

#include <Zydis/Zydis.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "util.h"

namespace bh {
namespace {

const ZydisDecoder &decoder() {
  static const ZydisDecoder dec = [] {
    ZydisDecoder d;
    ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return d;
  }();
  return dec;
}

enum class Kind : uint8_t {
  Copy,     // moves as is (maybe with a new RIP displacement)
  Ret,      // ret / retf / iret: copied, ends the block
  JmpInd,   // jmp r/m: copied (RIP displacement fixed), ends the block
  Jcc,      // jcc rel8 / rel32
  Jmp,      // jmp rel8 / rel32, ends the block
  Loop,     // loop / loope / loopne / jrcxz / jecxz (rel8 only)
  CallRel,  // call rel32
  CallInd,  // call r/m
  Trap,     // int3, int1, ud0/1/2, hlt: padding or a breakpoint
  Bad,      // cannot be relocated (reason in `why`)
};

struct Insn {
  uint32_t off = 0;
  uint8_t len = 0;
  Kind kind = Kind::Copy;
  uint8_t cc = 0;           // Jcc condition (low opcode nibble)
  bool addr32 = false;      // Loop with a 0x67 prefix (ecx forms)
  bool has_target = false;  // relative branch
  uint64_t target = 0;
  bool rip_rel = false;  // RIP-relative memory operand
  uint8_t disp_off = 0;
  uint64_t rip_target = 0;
  uint8_t modrm_off = 0;
  bool mem_uses_rsp = false;  // memory operand based on rsp
  ZydisMnemonic mnem = ZYDIS_MNEMONIC_INVALID;
  const char *why = nullptr;  // Kind::Bad
};

const char *mnem(const Insn &x) {
  const char *s = ZydisMnemonicGetString(x.mnem);
  return s ? s : "?";
}

bool ends_block(Kind k) {
  return k == Kind::Ret || k == Kind::JmpInd || k == Kind::Jmp || k == Kind::CallRel || k == Kind::CallInd;
}

// Decodes one instruction at `p` (address `pc`).  Returns false if Zydis
// cannot decode it.
bool decode(const uint8_t *p, size_t avail, uint64_t pc, Insn &x) {
  ZydisDecodedInstruction in;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), p, avail, &in, ops))) return false;
  x = Insn{};
  x.len = in.length;
  x.mnem = in.mnemonic;
  const uint64_t next = pc + in.length;

  // Visible operands only: the hidden ones include call's implicit [rsp].
  for (unsigned i = 0; i < in.operand_count_visible; i++) {
    if (ops[i].type != ZYDIS_OPERAND_TYPE_MEMORY) continue;
    if (ops[i].mem.base == ZYDIS_REGISTER_RIP) {
      x.rip_rel = true;
      x.disp_off = in.raw.disp.offset;
      x.rip_target = next + static_cast<uint64_t>(in.raw.disp.value);
    } else if (ops[i].mem.base == ZYDIS_REGISTER_EIP) {
      x.kind = Kind::Bad;
      x.why = "EIP-relative operand";
    }
    if (ops[i].mem.base == ZYDIS_REGISTER_RSP || ops[i].mem.index == ZYDIS_REGISTER_RSP) x.mem_uses_rsp = true;
  }
  x.modrm_off = in.raw.modrm.offset;

  bool relative = false;
  if (in.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT) {
    const uint8_t op = in.opcode;
    if (op >= 0x70 && op <= 0x7f) {
      x.kind = Kind::Jcc;
      x.cc = op & 0x0f;
      relative = true;
    } else if (op >= 0xe0 && op <= 0xe3) {
      x.kind = Kind::Loop;
      x.addr32 = in.address_width == 32;
      relative = true;
    } else if (op == 0xe8) {
      x.kind = Kind::CallRel;
      relative = true;
    } else if (op == 0xe9 || op == 0xeb) {
      x.kind = Kind::Jmp;
      relative = true;
    } else if (op == 0xc2 || op == 0xc3 || op == 0xca || op == 0xcb || op == 0xcf) {
      x.kind = Kind::Ret;
    } else if (op == 0xcc || op == 0xf1 || op == 0xf4) {
      x.kind = Kind::Trap;
    } else if (op == 0xff && (in.attributes & ZYDIS_ATTRIB_HAS_MODRM)) {
      switch (in.raw.modrm.reg) {
        case 2: x.kind = Kind::CallInd; break;
        case 4: x.kind = Kind::JmpInd; break;
        case 3:
        case 5:
          x.kind = Kind::Bad;
          x.why = "far call/jmp";
          break;
        default: break;
      }
    }
  } else if (in.opcode_map == ZYDIS_OPCODE_MAP_0F) {
    const uint8_t op = in.opcode;
    if (op >= 0x80 && op <= 0x8f) {
      x.kind = Kind::Jcc;
      x.cc = op & 0x0f;
      relative = true;
    } else if (op == 0x0b || op == 0xb9 || op == 0xff) {
      x.kind = Kind::Trap;
    }
  }

  if (relative) {
    x.has_target = true;
    x.target = next + static_cast<uint64_t>(in.raw.imm[0].value.s);
    if (in.operand_width == 16) {
      x.kind = Kind::Bad;
      x.why = "16-bit relative branch (0x66 prefix)";
    }
  } else if ((in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && !x.rip_rel && x.kind != Kind::Bad) {
    x.kind = Kind::Bad;
    x.why = "relative operand of an unsupported kind";
  }
  return true;
}

struct Msg {
  char *buf;
  size_t sz;
  uint64_t pc;
  int fail(int err, const char *fmt, ...) __attribute__((format(printf, 3, 4))) {
    if (buf && sz) {
      int n = snprintf(buf, sz, "0x%llx: ", static_cast<unsigned long long>(pc));
      if (n < 0) n = 0;
      if (static_cast<size_t>(n) < sz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf + n, sz - n, fmt, ap);
        va_end(ap);
      }
    }
    return -err;
  }
};

struct Plan {
  Insn insns[BH_RELOC_MAX_INSNS];
  uint32_t n = 0;
  uint32_t len = 0;
  uint32_t padding_at = 0;  // offset of the padding after a final ret/jmp (0: none)
};

// Bytes that only pad (int3, nop, the multi-byte nop forms compilers and
// assemblers align with: 66* 2e? 0f 1f /0 or 66* 90): the length of the one
// at `code`, or 0 if it is not padding.
uint32_t padding_len(const uint8_t *code, size_t code_len, uint64_t pc) {
  if (code_len == 0) return 0;
  if (code[0] == 0xcc || code[0] == 0x90) return 1;
  size_t i = 0;
  while (i < code_len && (code[i] == 0x66 || code[i] == 0x2e)) i++;
  const bool nop = (i < code_len && code[i] == 0x90) || (i + 1 < code_len && code[i] == 0x0f && code[i + 1] == 0x1f);
  if (!nop) return 0;
  Insn x;
  if (!decode(code, code_len, pc, x)) return 0;
  return x.len;
}

int check_inside(const Plan &p, uint64_t pc, const uint8_t *code, size_t code_len, uint32_t from, Msg &m);

int plan(const uint8_t *code, size_t code_len, uint64_t pc, uint32_t min_len, uint32_t padding_upto, Plan &p, Msg &m) {
  uint32_t off = 0;
  while (off < min_len) {
    if (p.n == BH_RELOC_MAX_INSNS)
      return m.fail(ENOTSUP, "more than %d instructions in the %u bytes to patch", BH_RELOC_MAX_INSNS, min_len);
    Insn x;
    if (off >= code_len || !decode(code + off, code_len - off, pc + off, x))
      return m.fail(ENOEXEC, "cannot decode the instruction at +%u", off);
    x.off = off;
    const bool last = off + x.len >= min_len;
    if (x.kind == Kind::Trap)
      return m.fail(ENOTSUP, "%s at +%u (a breakpoint or padding) inside the %u bytes to patch", mnem(x), off, min_len);
    if (x.kind == Kind::Bad) return m.fail(ENOTSUP, "cannot relocate %s at +%u: %s", mnem(x), off, x.why);
    if (ends_block(x.kind) && x.kind != Kind::CallRel && x.kind != Kind::CallInd && !last) {
      // A ret or jmp close to a function's end (a probe right before it):
      // the patch may cover the padding after it, bytes nothing runs or
      // jumps to (the caller checks the function for branches into the
      // patch), as long as they are padding all the way.
      uint32_t pad = off + x.len;
      while (pad < min_len) {
        const uint32_t n = pad < code_len ? padding_len(code + pad, code_len - pad, pc + pad) : 0;
        if (n == 0 || pad + n > padding_upto) {
          if (padding_upto == 0)
            return m.fail(ENOTSUP, "function too short: %s at +%u ends it inside the %u bytes to patch", mnem(x), off,
                          min_len);
          return m.fail(ENOTSUP,
                        "function too short: %s at +%u ends it inside the %u bytes to patch, and the %u bytes "
                        "after it up to the next alignment boundary are not all padding",
                        mnem(x), off, min_len, padding_upto - (off + x.len));
        }
        pad += n;
      }
      p.insns[p.n++] = x;
      p.len = pad;
      p.padding_at = off + x.len;
      return check_inside(p, pc, code, code_len, off + x.len, m);
    }
    if ((x.kind == Kind::CallRel || x.kind == Kind::CallInd) && !last)
      return m.fail(ENOTSUP,
                    "call at +%u is not the last relocated instruction: a thread inside "
                    "the callee would return into the patched bytes",
                    off);
    if (x.kind == Kind::CallInd && x.mem_uses_rsp)
      return m.fail(ENOTSUP, "cannot relocate call at +%u: its operand is based on rsp", off);
    p.insns[p.n++] = x;
    off += x.len;
    if (ends_block(x.kind)) break;
  }
  p.len = off;
  return check_inside(p, pc, code, code_len, off, m);
}

// No relocated instruction, nor any later in the window, branches or refers
// into the relocated bytes [pc, pc + p.len); the sweep starts at `from`.
int check_inside(const Plan &p, uint64_t pc, const uint8_t *code, size_t code_len, uint32_t from, Msg &m) {
  const uint32_t off = from;
  const uint64_t lo = pc, hi = pc + p.len;
  auto inside = [&](uint64_t a) { return a > lo && a < hi; };
  for (uint32_t i = 0; i < p.n; i++) {
    const Insn &x = p.insns[i];
    if (x.has_target && inside(x.target))
      return m.fail(ENOTSUP, "%s at +%u targets +%u, inside the relocated bytes", mnem(x), x.off,
                    static_cast<unsigned>(x.target - pc));
    if (x.rip_rel && inside(x.rip_target))
      return m.fail(ENOTSUP, "%s at +%u refers to +%u, inside the relocated bytes", mnem(x), x.off,
                    static_cast<unsigned>(x.rip_target - pc));
  }
  // Linear sweep over the rest of the window: a branch back into the
  // relocated bytes would land in the middle of the patch.
  for (size_t o = off; o < code_len;) {
    Insn x;
    if (!decode(code + o, code_len - o, pc + o, x)) break;
    if (x.has_target && inside(x.target))
      return m.fail(ENOTSUP, "%s at +0x%zx jumps back into the patched bytes (+%u)", mnem(x), o,
                    static_cast<unsigned>(x.target - pc));
    if (x.rip_rel && inside(x.rip_target))
      return m.fail(ENOTSUP, "%s at +0x%zx refers to +%u, inside the patched bytes", mnem(x), o,
                    static_cast<unsigned>(x.rip_target - pc));
    o += x.len;
  }
  return 0;
}

// Output buffer that counts even when it has no room (sizing pass).
struct Out {
  uint8_t *p;
  size_t cap;
  size_t n = 0;
  void b(uint8_t v) {
    if (p && n < cap) p[n] = v;
    n++;
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; i++) b(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; i++) b(static_cast<uint8_t>(v >> (8 * i)));
  }
  void put(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len; i++) b(s[i]);
  }
  void patch32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++)
      if (p && at + i < cap) p[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
};

// `here` is the address of the next byte; `worst` sizes for an unknown dest.
struct Emitter {
  Out o;
  uint64_t dest;
  bool worst;

  uint64_t here() const { return dest + o.n; }
  bool near(uint64_t from_end, uint64_t target) const {
    return !worst && fits_i32(static_cast<int64_t>(target - from_end));
  }
  void jmp_abs(uint64_t target) {  // jmp [rip+0]; .quad target
    o.b(0xff);
    o.b(0x25);
    o.u32(0);
    o.u64(target);
  }
  void jmp(uint64_t target) {
    if (near(here() + 5, target)) {
      o.b(0xe9);
      o.u32(static_cast<uint32_t>(target - (here() + 4)));
    } else {
      jmp_abs(target);
    }
  }
  size_t jmp_size(uint64_t at, uint64_t target) const { return near(at + 5, target) ? 5 : 14; }
  // Pushes a 64-bit constant without touching registers or flags.
  void push_imm64(uint64_t v) {
    static const uint8_t lea_rsp_m8[] = {0x48, 0x8d, 0x64, 0x24, 0xf8};  // lea rsp,[rsp-8]
    o.put(lea_rsp_m8, sizeof lea_rsp_m8);
    o.b(0xc7);  // mov dword [rsp], lo32
    o.b(0x04);
    o.b(0x24);
    o.u32(static_cast<uint32_t>(v));
    o.b(0xc7);  // mov dword [rsp+4], hi32
    o.b(0x44);
    o.b(0x24);
    o.b(0x04);
    o.u32(static_cast<uint32_t>(v >> 32));
  }
  // Copies an instruction, re-aiming its RIP-relative displacement.
  int copy(const uint8_t *src, const Insn &x, Msg &m, int modrm_reg = -1) {
    const size_t start = o.n;
    const uint64_t end = here() + x.len;
    o.put(src, x.len);
    if (modrm_reg >= 0 && o.p && start + x.modrm_off < o.cap)
      o.p[start + x.modrm_off] = static_cast<uint8_t>((src[x.modrm_off] & ~0x38) | (modrm_reg << 3));
    if (x.rip_rel) {
      const int64_t disp = static_cast<int64_t>(x.rip_target - end);
      if (!worst && !fits_i32(disp))
        return m.fail(ERANGE, "%s at +%u refers to 0x%llx, out of +/-2GiB of the copy at 0x%llx", mnem(x), x.off,
                      static_cast<unsigned long long>(x.rip_target), static_cast<unsigned long long>(dest));
      o.patch32(start + x.disp_off, static_cast<uint32_t>(disp));
    }
    return 0;
  }

  int insn(const uint8_t *src, uint64_t pc, const Insn &x, Msg &m) {
    const uint64_t next = pc + x.off + x.len;
    switch (x.kind) {
      case Kind::Copy:
      case Kind::Ret:
      case Kind::JmpInd: return copy(src, x, m);
      case Kind::Jcc:
        if (near(here() + 6, x.target)) {
          o.b(0x0f);
          o.b(static_cast<uint8_t>(0x80 | x.cc));
          o.u32(static_cast<uint32_t>(x.target - (here() + 4)));
        } else {
          o.b(static_cast<uint8_t>(0x70 | (x.cc ^ 1)));  // inverted jcc over the jump
          o.b(14);
          jmp_abs(x.target);
        }
        return 0;
      case Kind::Jmp: jmp(x.target); return 0;
      case Kind::Loop: {
        // loop* / jrcxz keep their rel8: taken -> the far jump, else skip it.
        if (x.addr32) o.b(0x67);
        o.b(src[x.len - 2]);  // opcode (the byte before rel8)
        o.b(2);               // over the jmp short below
        const size_t js = jmp_size(here() + 2, x.target);
        o.b(0xeb);
        o.b(static_cast<uint8_t>(js));
        jmp(x.target);
        return 0;
      }
      case Kind::CallRel:
        push_imm64(next);
        jmp(x.target);
        return 0;
      case Kind::CallInd: push_imm64(next); return copy(src, x, m, 4);  // FF /2 (call) -> FF /4 (jmp)
      case Kind::Trap:
      case Kind::Bad: break;
    }
    return m.fail(ENOTSUP, "internal: unexpected instruction kind");
  }
};

int run(const void *code, size_t code_len, uint64_t pc, uint32_t min_len, uint64_t dest, void *out, size_t out_cap,
        bh_reloc_plan *res, char *err, size_t err_sz) {
  Msg m{err, err_sz, pc};
  if (err && err_sz) err[0] = 0;
  if (!code || !res || min_len == 0 || min_len > 64) return m.fail(EINVAL, "invalid arguments");
  if (res->sz < offsetof(bh_reloc_plan, _pad)) return m.fail(EINVAL, "bh_reloc_plan.sz too small");
  const size_t known = sizeof(bh_reloc_plan);
  const size_t user_sz = res->sz;
  const uint32_t padding_upto = user_sz > offsetof(bh_reloc_plan, padding_upto) ? res->padding_upto : 0;
  std::memset(reinterpret_cast<char *>(res) + sizeof(size_t), 0, (user_sz < known ? user_sz : known) - sizeof(size_t));

  Plan p;
  const uint8_t *bytes = static_cast<const uint8_t *>(code);
  int rc = plan(bytes, code_len, pc, min_len, padding_upto, p, m);
  if (rc) return rc;

  Emitter e{Out{static_cast<uint8_t *>(out), out ? out_cap : 0}, dest, dest == 0};
  uint16_t out_off[BH_RELOC_MAX_INSNS];
  for (uint32_t i = 0; i < p.n; i++) {
    out_off[i] = static_cast<uint16_t>(e.o.n);
    rc = e.insn(bytes + p.insns[i].off, pc, p.insns[i], m);
    if (rc) return rc;
  }
  const bool falls = !ends_block(p.insns[p.n - 1].kind);
  if (falls) e.jmp(pc + p.len);

  res->min_len = min_len;
  res->len = p.len;
  res->n_insns = p.n;
  res->out_len = static_cast<uint32_t>(e.o.n);
  res->falls_through = falls;
  res->padding_at = static_cast<uint8_t>(p.padding_at);
  res->padding_upto = static_cast<uint8_t>(padding_upto);
  for (uint32_t i = 0; i < p.n; i++) {
    res->insn_off[i] = static_cast<uint8_t>(p.insns[i].off);
    res->out_off[i] = out_off[i];
  }
  if (out && e.o.n > out_cap) return m.fail(ENOSPC, "relocated code needs %zu bytes, buffer has %zu", e.o.n, out_cap);
  return 0;
}

}  // namespace
}  // namespace bh

extern "C" int bh_reloc_analyze(const void *code, size_t code_len, uint64_t pc, uint32_t min_len, uint64_t dest,
                                struct bh_reloc_plan *plan, char *err, size_t err_sz) {
  return bh::run(code, code_len, pc, min_len, dest, nullptr, 0, plan, err, err_sz);
}

extern "C" int bh_reloc_emit(const void *code, size_t code_len, uint64_t pc, uint32_t min_len, uint64_t dest, void *out,
                             size_t out_cap, struct bh_reloc_plan *plan, char *err, size_t err_sz) {
  if (!out || dest == 0) {
    if (err && err_sz)
      snprintf(err, err_sz, "0x%llx: emit needs an output buffer and a dest", static_cast<unsigned long long>(pc));
    return -EINVAL;
  }
  return bh::run(code, code_len, pc, min_len, dest, out, out_cap, plan, err, err_sz);
}

extern "C" int bh_reloc_check_function(const void *code, size_t size, uint64_t pc, uint32_t patch_off,
                                       uint32_t patch_len, int strict, char *err, size_t err_sz) {
  using namespace bh;
  Msg m{err, err_sz, pc};
  if (err && err_sz) err[0] = 0;
  if (!code || patch_len == 0 || size_t(patch_off) >= size)
    return m.fail(EINVAL, "invalid arguments (offset +0x%x, %zu bytes)", patch_off, size);
  const auto *bytes = static_cast<const uint8_t *>(code);
  const uint64_t lo = pc + patch_off, hi = lo + patch_len;
  auto inside = [&](uint64_t a) { return a > lo && a < hi; };
  size_t o = 0, prev = 0;
  bool on_boundary = false;
  while (o < size) {
    Insn x;
    if (!decode(bytes + o, size - o, pc + o, x)) {
      if (o <= patch_off)
        return m.fail(ENOTSUP, "cannot decode the instruction at +0x%zx, before the probe at +0x%x", o, patch_off);
      if (!strict) break;  // size unknown: this may be the next function's data
      return m.fail(ENOTSUP,
                    "cannot decode the instruction at +0x%zx of the function's 0x%zx bytes, so the "
                    "scan for branches into the patched bytes cannot cover it",
                    o, size);
    }
    if (o < patch_off && o + x.len > patch_off)
      return m.fail(EINVAL,
                    "+0x%x is inside the %s at +0x%zx (%u bytes): nearest instruction boundaries "
                    "+0x%zx and +0x%zx",
                    patch_off, mnem(x), o, x.len, o, o + x.len);
    if (o == patch_off) on_boundary = true;
    if (x.has_target && inside(x.target))
      return m.fail(ENOTSUP, "%s at +0x%zx jumps into the patched bytes (+0x%x)", mnem(x), o,
                    static_cast<unsigned>(x.target - pc));
    if (x.rip_rel && inside(x.rip_target))
      return m.fail(ENOTSUP, "%s at +0x%zx refers to +0x%x, inside the patched bytes", mnem(x), o,
                    static_cast<unsigned>(x.rip_target - pc));
    prev = o;
    o += x.len;
  }
  if (!on_boundary)  // cannot happen with a full decode; kept for the quiet stop
    return m.fail(EINVAL, "+0x%x is not an instruction boundary", patch_off);
  if (strict && o != size)
    return m.fail(ENOTSUP,
                  "the instruction at +0x%zx runs past the function's 0x%zx bytes: the decode lost "
                  "step (data inside the code?), so the scan cannot cover it",
                  prev, size);
  return 0;
}
