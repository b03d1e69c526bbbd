// The control plane: hooked functions, engines, links, and the C API.
//
// One process-wide Interceptor owns every hooked function (so two engines
// that hook the same function share its trampoline and listener list);
// an engine is a set of links that it detaches when destroyed.  Attach and
// detach hold the interceptor's mutex while they change a function; the
// listener set they replace is freed after a grace period, outside it.
//
// Transactions (bh_hook_begin/end_transaction) defer the patching: attach
// and detach change listener sets at once but only mark the function
// `dirty`; the outermost end patches every dirty function in one pause.
//
// A function whose last link is gone is unpatched and its Hook `retired`;
// reclaim() frees retired trampolines once a pause proves no thread is in
// one or will return into one (see reclaim for the proof).

#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpfhook/hook.h"
#include "bpfhook/reloc.h"
#include "code_arena.h"
#include "internal.h"
#include "quiesce.h"
#include "textpoke.h"
#include "trampoline.h"
#include "util.h"

namespace bh {
struct Hook;
}

struct bh_hook_engine {
  std::vector<bh_hook_link *> links;
  void (*log)(void *ctx, int level, const char *msg) = nullptr;
  void *log_ctx = nullptr;
};

struct bh_hook_link {
  bh_hook_engine *engine;
  bh::Hook *hook;  // dangling once `error` is set
  bh_hook_kind kind;
  bh_hook_fn fn;
  void *user;
  uint64_t cookie;
  uint32_t flags;  // BH_HOOK_ATTACH_F_*
  uint64_t addr;
  int error;     // 0, or why the transaction it was attached in failed
  bool pending;  // attached in the open transaction: not in the listener
                 // set until its end
};

namespace bh {

std::string strf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

void copy_err(char *buf, size_t sz, const std::string &msg) {
  if (!buf || !sz) return;
  const size_t n = std::min(sz - 1, msg.size());
  memcpy(buf, msg.data(), n);
  buf[n] = 0;
}

// A hooked function.  Freed (with its trampoline) by reclaim() once it has
// no link, is unpatched and no thread can be in its trampoline; until then a
// later attach to the same address reuses it.
struct Hook {
  HookCore core;  // first: the trampolines and shadow stacks point here
  uint64_t addr = 0;
  std::string name;
  std::vector<bh_hook_link *> links;  // attach order
  uint8_t *slot = nullptr;
  uint64_t entry = 0;     // the stub, where the patch jumps
  uint64_t reloc_at = 0;  // the relocated first instructions
  bh_reloc_plan plan{};
  uint8_t orig[64]{};  // the relocated bytes as they were
  uint8_t patch[16]{};
  uint32_t patch_len = 0;
  int prot = PROT_READ | PROT_EXEC;
  bool patched = false;
  bool mid = false;             // inside a function (func_offset != 0)
  bool dirty = false;           // in Interceptor::dirty (patch state to settle)
  uint64_t retired_ticket = 0;  // grace_ticket() when it was retired
  uint64_t func_offset = 0;
};

namespace {

struct Interceptor {
  std::mutex mu;  // hooks, arena, links
  std::unordered_map<uint64_t, Hook *> hooks;
  CodeArena arena;
  SharedCode shared;
  uint32_t timeout_ms = 1000;
  std::mutex retire_mu;
  std::vector<const ListenerSet *> deferred;  // retired from inside a probe
  bh_hook_engine *internal = nullptr;         // owns the unwinder hooks
  std::mutex guard_mu;
  bool guarded[2] = {false, false};
  uint64_t shared_lo = 0, shared_hi = 0;  // the shared code (ret_tramp..end watched)
  uint64_t ret_lo = 0;
  uint32_t txn_depth = 0;       // open transactions (nested)
  std::vector<Hook *> dirty;    // patch state settled at the outermost end
  std::vector<Hook *> retired;  // no links, unpatched: to free
  uint64_t txns = 0, freed = 0;
};

Interceptor *g_ix = nullptr;  // never destroyed: trampolines outlive main()
std::once_flag g_once;
int g_init_rc = 0;
std::string g_init_err;

void log_msg(const bh_hook_engine *e, int level, const std::string &msg) {
  if (e && e->log)
    e->log(e->log_ctx, level, msg.c_str());
  else if (level <= BH_HOOK_LOG_WARN)
    fprintf(stderr, "bpfhook: %s\n", msg.c_str());
}

// libbpf-style options: read the fields the caller's sz covers, reject
// non-zero bytes past the ones this library knows.
template <class T>
int opts_load(const T *in, T &out, const char *what, std::string *err) {
  out = T{};
  out.sz = sizeof(T);
  if (!in) return 0;
  if (in->sz < sizeof(size_t)) {
    *err = strf("%s.sz is %zu", what, in->sz);
    return -EINVAL;
  }
  const auto *p = reinterpret_cast<const unsigned char *>(in);
  for (size_t i = sizeof(T); i < in->sz; i++)
    if (p[i]) {
      *err = strf("%s has unknown non-zero bytes past offset %zu", what, sizeof(T));
      return -EINVAL;
    }
  memcpy(&out, in, std::min(in->sz, sizeof(T)));
  out.sz = sizeof(T);
  return 0;
}

// Built from h.links (without those of the open transaction unless
// `with_pending`); nullptr when there are none.  -ENOMEM via *ok.
ListenerSet *build_set(const Hook &h, bool *ok, bool with_pending = false) {
  *ok = true;
  size_t n = 0;
  for (const bh_hook_link *l : h.links) n += with_pending || !l->pending;
  if (n == 0) return nullptr;
  auto *s = static_cast<ListenerSet *>(malloc(sizeof(ListenerSet) + n * sizeof(Listener)));
  if (!s) {
    *ok = false;
    return nullptr;
  }
  uint32_t k = 0;
  // Inside a function every vector register may be live, so a listener
  // that may touch one gets all of them saved (run_entry_mid, XSAVE); but
  // listeners that promise to touch none (NO_VECTOR: JIT code without
  // helpers, a general-regs-only listener) clobber nothing there either, and
  // the engine's own path is general-regs-only: nothing to save. (It used to
  // save regardless: ~120 ns per hit of a USDT site or a uprobe at
  // symbol+offset, bench:uprobe's "inside a function" rows.)
  // Listeners that touch at most xmm0-15 (SSE_ONLY) need only those: plain
  // moves, not XSAVE.
  s->save_vec = kSaveNone;
  s->_pad = 0;
  auto in = [&](const bh_hook_link *l) { return with_pending || !l->pending; };
  for (const bh_hook_link *l : h.links) {
    if (!in(l) || (l->flags & BH_HOOK_ATTACH_F_NO_VECTOR)) continue;
    if (!(l->flags & BH_HOOK_ATTACH_F_SSE_ONLY))
      s->save_vec = kSaveAll;
    else if (s->save_vec == kSaveNone)
      s->save_vec = kSaveSse;
  }
  for (const bh_hook_link *l : h.links)
    if (in(l) && l->kind != BH_HOOK_RETURN)
      s->items[k++] = Listener{l->fn, l->user, l->cookie, l->kind == BH_HOOK_REPLACE, 0};
  s->n_entry = k;
  for (const bh_hook_link *l : h.links)
    if (in(l) && l->kind == BH_HOOK_RETURN) s->items[k++] = Listener{l->fn, l->user, l->cookie, 0, 0};
  s->n_return = k - s->n_entry;
  return s;
}

// Frees listener sets once no thread can still be reading them (one grace
// period for all).
void retire_all(const std::vector<const ListenerSet *> &olds) {
  Interceptor &ix = *g_ix;
  if (std::all_of(olds.begin(), olds.end(), [](const ListenerSet *s) { return !s; })) return;
  if (in_probe()) {  // cannot wait for ourselves: the next retire frees them
    std::lock_guard<std::mutex> lk(ix.retire_mu);
    for (const ListenerSet *s : olds)
      if (s) ix.deferred.push_back(s);
    return;
  }
  std::vector<const ListenerSet *> batch;
  {
    std::lock_guard<std::mutex> lk(ix.retire_mu);
    batch.swap(ix.deferred);
  }
  grace_period();
  for (const ListenerSet *s : olds) free(const_cast<ListenerSet *>(s));
  for (const ListenerSet *s : batch) free(const_cast<ListenerSet *>(s));
}

void retire(const ListenerSet *old) { retire_all({old}); }

std::string where(uint64_t addr, const std::string &name) {
  if (name.empty()) return strf("0x%llx", static_cast<unsigned long long>(addr));
  return strf("'%s' (0x%llx)", name.c_str(), static_cast<unsigned long long>(addr));
}

// Drops the relocator's own "0x...: " prefix (the caller names the function).
std::string strip_pc(const char *msg) {
  const char *p = strstr(msg, ": ");
  return (msg[0] == '0' && msg[1] == 'x' && p) ? std::string(p + 2) : std::string(msg);
}

int create_hook(Interceptor &ix, uint64_t addr, const bh_hook_attach_opts &o, Hook **out, std::string *msg) {
  Mapping m;
  if (!find_mapping(addr, m)) {
    *msg = "not inside any mapping";
    return -EFAULT;
  }
  if (!(m.prot & PROT_EXEC) || !(m.prot & PROT_READ)) {
    *msg = "not in a readable, executable mapping";
    return -EFAULT;
  }
  const size_t off = o.func_offset;
  const uint64_t start = addr - off;
  if (off && (start > addr || start < m.start)) {
    *msg = strf("the function's start (0x%llx, %zu bytes before) is not in the same mapping",
                static_cast<unsigned long long>(start), off);
    return -EINVAL;
  }
  if (o.func_size && off >= o.func_size) {
    *msg = strf("offset +0x%zx is past the function's end (0x%zx bytes)", off, o.func_size);
    return -EINVAL;
  }
  const size_t avail = m.end - addr;
  const size_t rest = o.func_size ? o.func_size - off : 0;  // bytes from addr to the function's end
  size_t scan = rest ? std::min(rest, avail) : std::min<size_t>(512, avail);
  const size_t code_len = std::max(scan, std::min<size_t>(32, avail));
  if (off) {
    // First of all: is `addr` an instruction boundary?  (Decoding from
    // inside an instruction gives nonsense or nothing.)
    char berr[256];
    const int brc = bh_reloc_check_function(reinterpret_cast<const void *>(start), off + std::min<size_t>(15, avail),
                                            start, uint32_t(off), 1, 0, berr, sizeof berr);
    if (brc) {
      *msg = strip_pc(berr);
      return brc;
    }
  }

  auto *h = new (std::nothrow) Hook;
  if (!h) return -ENOMEM;
  h->addr = addr;
  h->core.addr = addr;
  h->mid = off != 0;
  h->func_offset = off;
  h->core.call_flags = h->mid ? BH_HOOK_CALL_MIDFUNC : 0;
  if (o.func_name) h->name = o.func_name;

  uint32_t plen = 5;
  // Test knob: BPFHOOK_TEST_FAR_TRAMPOLINES=1 takes the 14-byte path.
  static const bool force_far = getenv("BPFHOOK_TEST_FAR_TRAMPOLINES") != nullptr;
  uint8_t *slot = force_far ? nullptr : ix.arena.alloc(kSlotSize, addr, kNearDist);
  if (!slot) {
    plen = 14;  // no memory within +/-2GiB: jmp [rip+0]; .quad entry
    slot = ix.arena.alloc(kSlotSize, 0, 0);
  }
  if (!slot) {
    delete h;
    *msg = "cannot map memory for the trampoline";
    return -ENOMEM;
  }
  auto fail = [&](int rc, std::string why) {
    ix.arena.free(slot, kSlotSize);
    delete h;
    *msg = std::move(why);
    return rc;
  };

  Asm a(reinterpret_cast<uint64_t>(slot));
  const StubAddrs stub = emit_stub(a, reinterpret_cast<uint64_t>(slot), &h->core, ix.shared, h->mid);
  const uint64_t entry = stub.entry;
  h->core.after = stub.after;
  const uint64_t reloc_at = a.here();
  uint8_t rbuf[kSlotSize];
  bh_reloc_plan plan{};
  plan.sz = sizeof plan;
  // A probe right before the function's final ret/jmp (a USDT site before
  // `return`): the patch may take the padding after the function, up to
  // its end rounded to 16 bytes (compilers align functions so: the next one
  // starts there at the earliest). Only with the size known.
  if (o.func_size) {
    const uint64_t end = start + o.func_size, upto = (end + 15) & ~uint64_t(15);
    if (upto <= m.end && upto - addr <= 255) plan.padding_upto = uint8_t(upto - addr);
  }
  char rerr[256];
  int rc = bh_reloc_emit(reinterpret_cast<const void *>(addr), code_len, addr, plen, reloc_at, rbuf,
                         kSlotSize - a.size(), &plan, rerr, sizeof rerr);
  if (rc) {
    std::string why = strip_pc(rerr);
    if (plen == 14) why += " (no trampoline memory within +/-2GiB, so 14 bytes are needed)";
    return fail(rc, why);
  }
  // Past the function's end only over padding after its final ret/jmp.
  if (rest && plan.len > rest && !(plan.padding_at != 0 && plan.padding_at <= rest))
    return fail(-ENOTSUP, off ? strf("the patch needs %u bytes but only %zu are left in the "
                                     "function after +0x%zx",
                                     plan.len, rest, off)
                              : strf("function too short: it is %zu bytes, the patch needs %u", o.func_size, plan.len));
  if (off || o.func_size) {
    // Decode the whole function (or up to 512 bytes past the patch) from
    // its start: the probe must sit on an instruction boundary, and no
    // branch before or after the patch may land inside it.
    const size_t fsize =
        o.func_size ? std::min(o.func_size, size_t(m.end - start)) : off + std::min<size_t>(512, avail);
    if (o.func_size && fsize < o.func_size)
      return fail(-ENOTSUP, strf("the function's %zu bytes run past the end of its mapping", o.func_size));
    rc = bh_reloc_check_function(reinterpret_cast<const void *>(start), fsize, start, uint32_t(off), plan.len,
                                 o.func_size != 0, rerr, sizeof rerr);
    if (rc) return fail(rc, strip_pc(rerr));
  }
  if (plan.len > sizeof h->orig || addr + plan.len > m.end)
    return fail(-ENOTSUP, "the bytes to patch run past the end of the mapping");
  a.bytes(rbuf, plan.out_len);
  if (a.overflow() || a.size() > kSlotSize) return fail(-ENOTSUP, "trampoline too large");
  rc = ix.arena.write(slot, a.data(), a.size());
  if (rc) return fail(rc, strf("cannot write the trampoline: %s", strerror(-rc)));

  if (plen == 5) {
    h->patch[0] = 0xe9;
    const uint32_t rel = uint32_t(entry - (addr + 5));
    memcpy(h->patch + 1, &rel, 4);
  } else {
    static const uint8_t jmp_rip[6] = {0xff, 0x25, 0, 0, 0, 0};
    memcpy(h->patch, jmp_rip, 6);
    memcpy(h->patch + 6, &entry, 8);
  }
  h->patch_len = plen;
  memcpy(h->orig, reinterpret_cast<const void *>(addr), plan.len);
  h->slot = slot;
  h->entry = entry;
  h->reloc_at = reloc_at;
  h->plan = plan;
  h->prot = m.prot;
  ix.hooks[addr] = h;
  *out = h;
  return 0;
}

struct PokeCtx {
  void *dst;
  const void *src;
  size_t n;
  int prot;
};

int poke_cb(void *c, bool gate) {
  auto *p = static_cast<PokeCtx *>(c);
  return poke_paused(p->dst, p->src, p->n, p->prot, gate);
}

// ---- freeing trampolines ----
//
// A retired hook (no link, unpatched, listener set emptied) is freed once a
// pause proves no thread can run in its trampoline.  Its grace period must
// have passed first (grace_passed), so no thread is in its listeners.  What
// remains is a thread (a) in the stub, the shared entry or bh_on_enter on
// its way in or out: a return address into the stub is on its stack, near
// the top, or its rip is in the stub; (b) in the relocated instructions:
// rip in the stub; (c) in the function body called for a return probe: its
// shadow stack has an entry naming the hook; (d) in bh_on_return after
// popping that entry: a return address into the shared return trampoline
// is on its stack.  The pause looks at every thread for (a), (b), (d)
// (QuiesceOp::watch) and at every shadow stack for (c).  One busy thread
// keeps all the watched hooks for a later pause (a thread in any return
// probe counts, and a shadow entry left by a longjmp counts until that
// thread's next probe drops it).  Every patching pause also watches the
// retired hooks, so a dedicated pause (reclaim) is needed only when
// kReclaimAfter hooks wait, or when asked (bh_hook_collect).

constexpr size_t kReclaimAfter = 8;

struct Reclaim {
  std::vector<Hook *> hooks;  // retired hooks the pause watches
};

bool names_watched(const HookCore *core, void *c) {
  for (const Hook *h : static_cast<const Reclaim *>(c)->hooks)
    if (&h->core == core) return true;
  return false;
}

bool pending_return(void *c) { return shadow_refers(names_watched, c); }

// Adds the retired hooks past their grace period to `op`'s watch.
void watch_retired(Interceptor &ix, QuiesceOp &op, Reclaim &r) {
  if (in_probe()) return;  // our own stack may be in a trampoline: not scanned
  for (Hook *h : ix.retired)
    if (grace_passed(h->retired_ticket)) r.hooks.push_back(h);
  if (r.hooks.empty()) return;
  for (const Hook *h : r.hooks) {
    const uint64_t slot = reinterpret_cast<uint64_t>(h->slot);
    op.watch.push_back(Range{slot, slot + kSlotSize});
  }
  op.watch.push_back(Range{ix.ret_lo, ix.shared_hi});
  ix.arena.regions(op.code);
  op.also = pending_return;
  op.also_ctx = &r;
}

// After a pause that watched r.hooks: frees them if it saw nobody in them.
void free_retired(Interceptor &ix, const Reclaim &r, int rc, uint32_t busy) {
  if (r.hooks.empty() || rc || busy) return;
  for (Hook *h : r.hooks) {
    ix.retired.erase(std::find(ix.retired.begin(), ix.retired.end(), h));
    ix.arena.free(h->slot, kSlotSize);
    delete h;
    ix.freed++;
  }
}

// A dedicated pause for the retired hooks; `force` even below kReclaimAfter.
// Returns how many stay retired.
size_t reclaim(Interceptor &ix, bool force) {
  if (in_probe()) {
    std::lock_guard<std::mutex> lk(ix.mu);
    return ix.retired.size();
  }
  bool need_gp = false;
  {
    std::lock_guard<std::mutex> lk(ix.mu);
    if (ix.txn_depth || ix.retired.empty() || (!force && ix.retired.size() < kReclaimAfter)) return ix.retired.size();
    for (const Hook *h : ix.retired) need_gp |= !grace_passed(h->retired_ticket);
  }
  if (need_gp) grace_period();
  std::lock_guard<std::mutex> lk(ix.mu);
  if (ix.txn_depth) return ix.retired.size();
  QuiesceOp op;
  op.check_only = true;
  Reclaim r;
  watch_retired(ix, op, r);
  if (r.hooks.empty()) return ix.retired.size();
  std::string err, warn;
  uint32_t busy = 0;
  const int rc = quiesce_run(op, ix.timeout_ms, &err, &warn, &busy);
  free_retired(ix, r, rc, busy);
  return ix.retired.size();
}

// Whether the function's bytes are what `install` expects to replace.
int check_bytes(const Hook &h, bool install, std::string *msg) {
  const auto *code = reinterpret_cast<const uint8_t *>(h.addr);
  if (install ? memcmp(code, h.orig, h.plan.len) != 0 : memcmp(code, h.patch, h.patch_len) != 0) {
    *msg = install ? "its first bytes changed since they were relocated"
                   : "its first bytes were changed by someone else; leaving them";
    return -EBUSY;
  }
  return 0;
}

// What a pause must know to install h: its bytes, and where a thread
// stopped on one of its later instructions moves to.
void add_install(QuiesceOp &op, const Hook &h) {
  op.patched.push_back(Range{h.addr, h.addr + h.plan.len});
  for (uint32_t i = 1; i < h.plan.n_insns; i++)
    op.fixups.push_back(Fixup{h.addr + h.plan.insn_off[i], h.reloc_at + h.plan.out_off[i]});
}

// Puts the jump in (install) or the original bytes back.
int apply(Interceptor &ix, Hook &h, bool install, std::string *msg, std::string *warn) {
  auto *code = reinterpret_cast<uint8_t *>(h.addr);
  int rc = check_bytes(h, install, msg);
  if (rc) return rc;
  const uint8_t *src = install ? h.patch : h.orig;
  // One instruction under the patch means no thread can be inside it.
  if (poke_is_atomic(code, h.patch_len) && (!install || h.plan.n_insns == 1)) {
    rc = poke_atomic(code, src, h.patch_len, h.prot);
    if (rc) *msg = strf("cannot write the code: %s", strerror(-rc));
  } else {
    QuiesceOp op;
    if (install) add_install(op, h);
    PokeCtx ctx{code, src, h.patch_len, h.prot};
    op.write = poke_cb;
    op.ctx = &ctx;
    Reclaim r;
    watch_retired(ix, op, r);
    uint32_t busy = 0;
    rc = quiesce_run(op, ix.timeout_ms, msg, warn, &busy);
    free_retired(ix, r, rc, busy);
  }
  if (!rc) h.patched = install;
  return rc;
}

// A transaction's writes: hooks[i] gets its patch (install[i]) or its
// original bytes.  All or nothing: a failed write undoes the ones before it.
struct BatchCtx {
  Hook *const *hooks;
  const uint8_t *install;
  size_t n;
};

int batch_cb(void *c, bool gate) {
  auto *b = static_cast<BatchCtx *>(c);
  for (size_t i = 0; i < b->n; i++) {
    Hook &h = *b->hooks[i];
    const int rc =
        poke_paused(reinterpret_cast<void *>(h.addr), b->install[i] ? h.patch : h.orig, h.patch_len, h.prot, gate);
    if (!rc) continue;
    while (i-- > 0) {
      Hook &u = *b->hooks[i];
      poke_paused(reinterpret_cast<void *>(u.addr), b->install[i] ? u.orig : u.patch, u.patch_len, u.prot, gate);
    }
    return rc;
  }
  return 0;
}

// Settles every hook in `hooks` (install[i]: patched or not) with one pause
// at most; all or nothing.  *msg names the first function that refused.
int apply_batch(Interceptor &ix, const std::vector<Hook *> &hooks, const std::vector<uint8_t> &install,
                std::string *msg, std::string *warn) {
  if (hooks.empty()) return 0;
  if (hooks.size() == 1) {
    const int rc = apply(ix, *hooks[0], install[0], msg, warn);
    if (rc) *msg = where(hooks[0]->addr, hooks[0]->name) + ": " + *msg;
    return rc;
  }
  QuiesceOp op;
  for (size_t i = 0; i < hooks.size(); i++) {
    const int rc = check_bytes(*hooks[i], install[i], msg);
    if (rc) {
      *msg = where(hooks[i]->addr, hooks[i]->name) + ": " + *msg;
      return rc;
    }
    if (install[i]) add_install(op, *hooks[i]);
  }
  BatchCtx ctx{hooks.data(), install.data(), hooks.size()};
  op.write = batch_cb;
  op.ctx = &ctx;
  Reclaim r;
  watch_retired(ix, op, r);
  uint32_t busy = 0;
  const int rc = quiesce_run(op, ix.timeout_ms, msg, warn, &busy);
  free_retired(ix, r, rc, busy);
  if (rc) {
    *msg = strf("%zu functions, none patched: ", hooks.size()) + *msg;
    return rc;
  }
  for (size_t i = 0; i < hooks.size(); i++) hooks[i]->patched = install[i];
  return 0;
}

void mark_dirty(Interceptor &ix, Hook *h) {
  if (h->dirty) return;
  h->dirty = true;
  ix.dirty.push_back(h);
}

// h has no link and is unpatched: nothing reaches its trampoline any more
// but threads already inside.  reclaim() frees it.
void retire_hook(Interceptor &ix, Hook *h) {
  h->retired_ticket = grace_ticket();
  ix.hooks.erase(h->addr);
  ix.retired.push_back(h);
}

// A retired hook of `addr`, back in service (its trampoline is still whole).
Hook *revive(Interceptor &ix, uint64_t addr) {
  for (size_t i = 0; i < ix.retired.size(); i++) {
    Hook *h = ix.retired[i];
    if (h->addr != addr) continue;
    ix.retired.erase(ix.retired.begin() + long(i));
    ix.hooks[addr] = h;
    return h;
  }
  return nullptr;
}

uint64_t unwind_flush(void *, struct pt_regs *regs, struct bh_hook_call *);

int init(const bh_hook_engine_opts &o, std::string *err) {
  std::call_once(g_once, [&] {
    threads_init();
    textpoke_init();
    vec_init();
    auto *ix = new Interceptor;
    const int sig = o.patch_signal ? o.patch_signal : SIGRTMAX - 3;
    g_init_rc = quiesce_install(sig, &g_init_err);
    if (g_init_rc) return;
    uint8_t *mem = ix->arena.alloc(1024, reinterpret_cast<uint64_t>(&bh_on_enter), kNearDist);
    if (!mem) mem = ix->arena.alloc(1024, 0, 0);
    if (!mem) {
      g_init_rc = -ENOMEM;
      g_init_err = "cannot map memory for the shared trampolines";
      return;
    }
    Asm a(reinterpret_cast<uint64_t>(mem));
    emit_shared(a, ix->shared);
    ix->shared_lo = reinterpret_cast<uint64_t>(mem);
    ix->shared_hi = ix->shared_lo + a.size();
    ix->ret_lo = ix->shared.ret_tramp;
    if (a.overflow() || a.size() > 1024 || ix->arena.write(mem, a.data(), a.size()) != 0) {
      g_init_rc = -ENOMEM;
      g_init_err = "cannot write the shared trampolines";
      return;
    }
    ix->timeout_ms = o.quiesce_timeout_ms ? o.quiesce_timeout_ms : 1000;
    ix->internal = new bh_hook_engine;
    g_ix = ix;
  });
  if (g_init_rc) {
    *err = g_init_err;
    return g_init_rc;
  }
  if (o.patch_signal && o.patch_signal != quiesce_signal()) {
    *err = strf("the patch signal is already %d", quiesce_signal());
    return -EBUSY;
  }
  if (o.quiesce_timeout_ms) g_ix->timeout_ms = o.quiesce_timeout_ms;
  return 0;
}

int attach(bh_hook_engine *e, void *func, bh_hook_kind kind, bh_hook_fn fn, void *user, const bh_hook_attach_opts &o,
           bh_hook_link **out, std::string *msg) {
  Interceptor &ix = *g_ix;
  const uint64_t addr = reinterpret_cast<uint64_t>(func);
  const std::string name = o.func_name ? o.func_name : "";
  std::string why, warn;
  const ListenerSet *old = nullptr;
  int rc = 0;
  bh_hook_link *l = nullptr;
  {
    std::lock_guard<std::mutex> lk(ix.mu);
    Hook *h = nullptr;
    // A hook this attach created or revived, left without a link by a
    // refusal below, goes (back) to the retired ones.
    auto drop_unused = [&] {
      if (h && h->links.empty() && !h->patched && !h->dirty) retire_hook(ix, h);
    };
    if (o.func_offset && kind != BH_HOOK_ENTRY) {
      rc = -EINVAL;
      why = strf(
          "%s at +0x%zx: only entry probes may sit inside a function (there [rsp] is not "
          "a return address)",
          kind == BH_HOOK_RETURN ? "a return probe" : "a replacement", size_t(o.func_offset));
      goto out;
    }
    auto it = ix.hooks.find(addr);
    if (it != ix.hooks.end() || revive(ix, addr)) {
      h = ix.hooks[addr];
      if (h->mid != (o.func_offset != 0) || (h->mid && h->func_offset != o.func_offset)) {
        rc = -EBUSY;
        why = h->mid ? strf("already hooked as +0x%zx inside a function", size_t(h->func_offset))
                     : std::string("already hooked as a function's entry");
        drop_unused();
        goto out;
      }
    } else {
      rc = create_hook(ix, addr, o, &h, &why);
      if (rc) goto out;
    }
    if (kind == BH_HOOK_REPLACE)
      for (const bh_hook_link *x : h->links)
        if (x->kind == BH_HOOK_REPLACE) {
          rc = -EEXIST;
          why = "it is already replaced";
          drop_unused();
          goto out;
        }
    l = new (std::nothrow) bh_hook_link{e, h, kind, fn, user, o.cookie, o.flags, addr, 0, false};
    if (!l) {
      rc = -ENOMEM;
      drop_unused();
      goto out;
    }
    h->links.push_back(l);
    if (ix.txn_depth) {
      // Its listener joins the set, and the function is patched, at the
      // transaction's end: one set built per function, not per link.
      l->pending = true;
      mark_dirty(ix, h);
      e->links.push_back(l);
      goto out;
    }
    bool ok;
    ListenerSet *s = build_set(*h, &ok);
    if (!ok) {
      h->links.pop_back();
      rc = -ENOMEM;
      drop_unused();
      goto out;
    }
    old = h->core.set.exchange(s, std::memory_order_acq_rel);
    if (!h->patched) {
      rc = apply(ix, *h, true, &why, &warn);
      if (rc) {
        h->links.pop_back();
        ListenerSet *back = build_set(*h, &ok);
        const ListenerSet *mine = h->core.set.exchange(back, std::memory_order_acq_rel);
        // Threads still inside an older trampoline run may have
        // read `mine`: free it after the next grace period.
        if (mine) {
          std::lock_guard<std::mutex> rk(ix.retire_mu);
          ix.deferred.push_back(mine);
        }
        drop_unused();
        goto out;
      }
    }
    e->links.push_back(l);
  }
out:
  if (!warn.empty()) log_msg(e, BH_HOOK_LOG_WARN, "attach " + where(addr, name) + ": " + warn);
  retire(old);
  if (rc) {
    delete l;
    *msg = "attach " + where(addr, name) + ": " + (why.empty() ? strerror(-rc) : why);
    return rc;
  }
  *out = l;
  return 0;
}

int detach(bh_hook_link *l, std::string *msg) {
  Interceptor &ix = *g_ix;
  if (l->error) {  // its transaction failed: nothing is attached
    delete l;
    return 0;
  }
  bh_hook_engine *e = l->engine;
  Hook *h = l->hook;
  std::string why, warn;
  const ListenerSet *old;
  {
    std::lock_guard<std::mutex> lk(ix.mu);
    auto it = std::find(h->links.begin(), h->links.end(), l);
    if (it == h->links.end()) {
      *msg = "detach: link is not attached";
      return -ENOENT;
    }
    const size_t pos = size_t(it - h->links.begin());
    h->links.erase(it);
    bool ok;
    ListenerSet *s = build_set(*h, &ok);
    if (!ok) {
      h->links.insert(h->links.begin() + long(pos), l);
      *msg = "detach: out of memory";
      return -ENOMEM;
    }
    old = h->core.set.exchange(s, std::memory_order_acq_rel);
    e->links.erase(std::remove(e->links.begin(), e->links.end(), l), e->links.end());
    if (h->links.empty() && ix.txn_depth) {
      mark_dirty(ix, h);  // unpatched at the transaction's end
    } else if (h->links.empty()) {
      if (h->patched && apply(ix, *h, false, &why, &warn) != 0)
        log_msg(
            e, BH_HOOK_LOG_WARN,
            "detach " + where(h->addr, h->name) + ": " + why + " (the function keeps its jump to an empty trampoline)");
      if (!h->patched) retire_hook(ix, h);
    }
  }
  if (!warn.empty()) log_msg(e, BH_HOOK_LOG_WARN, "detach " + where(l->addr, "") + ": " + warn);
  retire(old);
  reclaim(ix, false);
  delete l;
  return 0;
}

int begin_txn(std::string *msg) {
  if (!g_ix) {
    *msg = "begin_transaction: no engine was created yet";
    return -EINVAL;
  }
  std::lock_guard<std::mutex> lk(g_ix->mu);
  g_ix->txn_depth++;
  return 0;
}

// The outermost end: every dirty hook gets the listener set and the patch
// state its links ask for, the patches in one pause.  All or nothing: if a
// set cannot be built or the patching fails, nothing is written and every
// link attached in the transaction fails with the error (error set, dropped
// from its hook; the caller's detach frees it); hooks whose last link was
// detached keep their jump to an empty trampoline, as a failed detach does.
int end_txn(std::string *msg) {
  Interceptor &ix = *g_ix;
  std::vector<const ListenerSet *> olds;
  std::string why, warn;
  int rc = 0;
  {
    std::lock_guard<std::mutex> lk(ix.mu);
    if (!ix.txn_depth) {
      *msg = "end_transaction: no transaction is open";
      return -EINVAL;
    }
    if (--ix.txn_depth) return 0;
    std::vector<Hook *> dirty, todo;
    std::vector<uint8_t> install;
    std::vector<ListenerSet *> sets;  // dirty[i]'s set with its new links
    dirty.swap(ix.dirty);
    for (Hook *h : dirty) {
      h->dirty = false;
      bool ok;
      sets.push_back(build_set(*h, &ok, true));
      if (!ok && !rc) {
        rc = -ENOMEM;
        why = where(h->addr, h->name) + ": out of memory for its listener list";
      }
      const bool want = !h->links.empty();
      if (want == h->patched) continue;
      todo.push_back(h);
      install.push_back(want);
    }
    if (!rc) rc = apply_batch(ix, todo, install, &why, &warn);
    for (size_t i = 0; i < dirty.size(); i++) {
      Hook *h = dirty[i];
      if (!rc) {
        for (bh_hook_link *l : h->links) l->pending = false;
        olds.push_back(h->core.set.exchange(sets[i], std::memory_order_acq_rel));
        continue;
      }
      free(sets[i]);  // never published
      // The published set never held the pending links: it stays.
      for (bh_hook_link *l : h->links) {
        if (!l->pending) continue;
        l->error = rc;
        auto &el = l->engine->links;
        el.erase(std::remove(el.begin(), el.end(), l), el.end());
      }
      h->links.erase(std::remove_if(h->links.begin(), h->links.end(), [](const bh_hook_link *l) { return l->pending; }),
                     h->links.end());
    }
    for (Hook *h : dirty)
      if (h->links.empty() && !h->patched) retire_hook(ix, h);
    if (!todo.empty()) ix.txns++;
  }
  if (!warn.empty()) log_msg(nullptr, BH_HOOK_LOG_WARN, "end_transaction: " + warn);
  retire_all(olds);
  reclaim(ix, false);
  if (rc) *msg = "end_transaction: " + why;
  return rc;
}

// C++ exceptions and pthread_exit unwind with libgcc, which cannot unwind
// through the return trampoline.  Entry hooks on its two entry points put
// the real return addresses back into every frame of the thread before it
// starts (those frames' return probes are then not run).
void guard_unwinder() {
  static const char *const names[2] = {"_Unwind_RaiseException", "_Unwind_ForcedUnwind"};
  Interceptor &ix = *g_ix;
  std::lock_guard<std::mutex> lk(ix.guard_mu);
  for (int i = 0; i < 2; i++) {
    if (ix.guarded[i]) continue;
    void *f = dlsym(RTLD_DEFAULT, names[i]);
    if (!f) continue;  // libgcc_s not loaded (yet): try again next time
    ix.guarded[i] = true;
    bh_hook_attach_opts o{};
    o.sz = sizeof o;
    o.func_name = names[i];
    bh_hook_link *l;
    std::string msg;
    if (attach(ix.internal, f, BH_HOOK_ENTRY, unwind_flush, nullptr, o, &l, &msg) != 0)
      log_msg(nullptr, BH_HOOK_LOG_WARN,
              msg +
                  " (C++ exceptions thrown through functions with return probes will "
                  "terminate the program)");
  }
}

uint64_t unwind_flush(void *, struct pt_regs *regs, struct bh_hook_call *) {
  ThreadState *t = tls_state;
  if (!t || t == &g_sentinel) return 0;
  const uint64_t sp = regs->rsp;
  // Deepest first, so that of two entries sharing a slot (a tail call) the
  // outer one writes last.
  for (uint32_t i = t->top; i-- > 0;) {
    const ShadowEntry &e = t->stack[i];
    if (e.rsp <= sp) continue;
    auto *slot = reinterpret_cast<uint64_t *>(e.rsp);
    if (*slot == e.hook->after) *slot = e.ret;
  }
  t->top = 0;
  return 0;
}

}  // namespace
}  // namespace bh

using namespace bh;

extern "C" {

struct bh_hook_engine *bh_hook_engine__new(const struct bh_hook_engine_opts *in) {
  bh_hook_engine_opts o;
  std::string err;
  int rc = opts_load(in, o, "bh_hook_engine_opts", &err);
  if (!rc) rc = init(o, &err);
  if (rc) {
    if (in && in->sz >= offsetof(bh_hook_engine_opts, errbuf_sz) + sizeof(size_t))
      copy_err(in->errbuf, in->errbuf_sz, "engine: " + err);
    errno = -rc;
    return nullptr;
  }
  auto *e = new (std::nothrow) bh_hook_engine;
  if (!e) {
    errno = ENOMEM;
    return nullptr;
  }
  e->log = o.log;
  e->log_ctx = o.log_ctx;
  return e;
}

void bh_hook_engine__destroy(struct bh_hook_engine *e) {
  if (!e) return;
  for (;;) {
    bh_hook_link *l;
    if (g_ix) {
      std::lock_guard<std::mutex> lk(g_ix->mu);
      if (e->links.empty()) break;
      l = e->links.back();
    } else {
      break;
    }
    std::string msg;
    if (detach(l, &msg) != 0) {
      std::lock_guard<std::mutex> lk(g_ix->mu);  // cannot happen; do not loop forever
      e->links.erase(std::remove(e->links.begin(), e->links.end(), l), e->links.end());
      log_msg(e, BH_HOOK_LOG_WARN, msg);
    }
  }
  delete e;
}

int bh_hook_attach(struct bh_hook_engine *e, void *func, enum bh_hook_kind kind, bh_hook_fn fn, void *user,
                   const struct bh_hook_attach_opts *in, struct bh_hook_link **link) {
  bh_hook_attach_opts o;
  std::string msg;
  int rc = opts_load(in, o, "bh_hook_attach_opts", &msg);
  char *errbuf = (in && in->sz >= offsetof(bh_hook_attach_opts, errbuf_sz) + sizeof(size_t)) ? in->errbuf : nullptr;
  const size_t errsz = errbuf ? in->errbuf_sz : 0;
  if (!rc && (!e || !func || !fn || !link || unsigned(kind) > BH_HOOK_REPLACE)) {
    rc = -EINVAL;
    msg = !func   ? "attach: function address is NULL"
          : !fn   ? "attach: listener is NULL"
          : !link ? "attach: link out-pointer is NULL"
          : !e    ? "attach: engine is NULL"
                  : strf("attach: unknown kind %d", int(kind));
  }
  if (!rc && (o.flags & ~(BH_HOOK_ATTACH_F_NO_VECTOR | BH_HOOK_ATTACH_F_SSE_ONLY))) {
    rc = -EINVAL;
    msg = strf("attach: unknown flags 0x%x", o.flags);
  }
  if (!rc) rc = attach(e, func, kind, fn, user, o, link, &msg);
  if (rc) {
    copy_err(errbuf, errsz, msg);
    if (link) *link = nullptr;
    return rc;
  }
  if (kind == BH_HOOK_RETURN) guard_unwinder();
  return 0;
}

int bh_hook_detach(struct bh_hook_link *link) {
  if (!link) return -EINVAL;
  std::string msg;
  const int rc = detach(link, &msg);
  if (rc) log_msg(link->engine, BH_HOOK_LOG_WARN, msg);
  return rc;
}

void *bh_hook_link__func(const struct bh_hook_link *l) { return l ? reinterpret_cast<void *>(l->addr) : nullptr; }

int bh_hook_link__error(const struct bh_hook_link *l) { return l ? l->error : -EINVAL; }

int bh_hook_collect(void) { return g_ix ? int(reclaim(*g_ix, true)) : 0; }

int bh_hook_begin_transaction(void) {
  std::string msg;
  const int rc = begin_txn(&msg);
  if (rc) log_msg(nullptr, BH_HOOK_LOG_WARN, msg);
  return rc;
}

int bh_hook_end_transaction(const struct bh_hook_txn_opts *in) {
  bh_hook_txn_opts o;
  std::string msg;
  int rc = opts_load(in, o, "bh_hook_txn_opts", &msg);
  if (!rc && !g_ix) {
    rc = -EINVAL;
    msg = "end_transaction: no transaction is open";
  }
  if (!rc) rc = end_txn(&msg);
  if (rc) copy_err(o.errbuf, o.errbuf_sz, msg);
  return rc;
}

enum bh_hook_kind bh_hook_link__kind(const struct bh_hook_link *l) { return l ? l->kind : BH_HOOK_ENTRY; }

uint64_t bh_hook_link__missed(const struct bh_hook_link *l) {
  return l && !l->error ? l->hook->core.missed.load(std::memory_order_relaxed) : 0;
}

int bh_hook_get_func_info(const void *func, struct bh_hook_func_info *info) {
  if (!info || info->sz < sizeof(size_t)) return -EINVAL;
  if (!g_ix) return -ENOENT;
  bh_hook_func_info r{};
  {
    std::lock_guard<std::mutex> lk(g_ix->mu);
    auto it = g_ix->hooks.find(reinterpret_cast<uint64_t>(func));
    if (it == g_ix->hooks.end()) return -ENOENT;
    const Hook &h = *it->second;
    r.patched = h.patched;
    r.patch_len = h.patch_len;
    r.reloc_len = h.plan.len;
    r.n_listeners = uint32_t(h.links.size());
    r.trampoline = h.entry;
    memcpy(r.original, h.orig, std::min<size_t>(sizeof r.original, h.plan.len));
  }
  const size_t n = std::min(info->sz, sizeof r);
  r.sz = info->sz;
  memcpy(info, &r, n);
  return 0;
}

int bh_hook_get_stats(struct bh_hook_stats *stats) {
  if (!stats || stats->sz < sizeof(size_t)) return -EINVAL;
  const QuiesceStats q = quiesce_stats();
  bh_hook_stats r{};
  r.sz = stats->sz;
  r.pauses = q.pauses;
  r.threads_paused = q.threads_paused;
  r.threads_moved = q.threads_moved;
  r.threads_unpausable = q.threads_unpausable;
  r.checks = q.checks;
  if (g_ix) {
    std::lock_guard<std::mutex> lk(g_ix->mu);
    r.transactions = g_ix->txns;
    r.trampolines = g_ix->hooks.size() + g_ix->retired.size();
    r.trampolines_retired = g_ix->retired.size();
    r.trampolines_freed = g_ix->freed;
    r.code_bytes = g_ix->arena.bytes_in_use();
  }
  memcpy(stats, &r, std::min(stats->sz, sizeof r));
  return 0;
}

// ---- the running probe ----

struct bh_hook_call *bh_hook_current(void) {
  ThreadState *t = tls_state;
  return t ? t->current : nullptr;
}

uint64_t bh_hook_call__func_ip(const struct bh_hook_call *c) { return c ? c->func_ip : 0; }

uint64_t bh_hook_call__cookie(const struct bh_hook_call *c) { return c ? c->cookie : 0; }

int bh_hook_call__arg(const struct bh_hook_call *c, uint32_t n, uint64_t *value) {
  if (!c || !value || n > 63) return -EINVAL;
  const bool ret = c->flags & BH_HOOK_CALL_RETURN;
  if (n < 6) {
    if (ret) {
      *value = c->entry_args[n];
      return 0;
    }
    const struct pt_regs *r = c->regs;
    const uint64_t regs[6] = {r->rdi, r->rsi, r->rdx, r->rcx, r->r8, r->r9};
    *value = regs[n];
    return 0;
  }
  // Stack arguments start just above the return address.
  const uint64_t ret_slot = ret ? c->regs->rsp - 8 : c->regs->rsp;
  *value = *reinterpret_cast<const uint64_t *>(ret_slot + 8 * (n - 5));
  return 0;
}

int bh_hook_call__ret(const struct bh_hook_call *c, uint64_t *value) {
  if (!c || !value) return -EINVAL;
  if (!(c->flags & BH_HOOK_CALL_RETURN)) return -EOPNOTSUPP;
  *value = c->regs->rax;
  return 0;
}

int bh_hook_call__override_return(struct bh_hook_call *c, uint64_t value) {
  if (!c) return -EINVAL;
  // Inside a function there is no return address at [rsp] to return to.
  if (c->flags & (BH_HOOK_CALL_RETURN | BH_HOOK_CALL_MIDFUNC)) return -EOPNOTSUPP;
  c->retval = value;
  c->flags |= BH_HOOK_CALL_OVERRIDE;
  return 0;
}

int bh_hook_call__set_retval(struct bh_hook_call *c, uint64_t value) {
  if (!c) return -EINVAL;
  if (!(c->flags & BH_HOOK_CALL_RETURN)) return bh_hook_call__override_return(c, value);
  c->retval = value;
  c->regs->rax = value;
  return 0;
}

const void *bh_hook_call__xmm(const struct bh_hook_call *c, uint32_t n) {
  if (!c || !c->xmm) return nullptr;
  const uint32_t max = (c->flags & BH_HOOK_CALL_RETURN) ? 2 : 8;
  return n < max ? static_cast<const uint8_t *>(c->xmm) + size_t(c->xmm_stride ? c->xmm_stride : 16) * n : nullptr;
}

}  // extern "C"
