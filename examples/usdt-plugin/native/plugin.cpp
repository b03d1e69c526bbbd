// libbpfhook_usdt.so: the USDT plugin's native piece, the C ABI of the SDK's
// bpfhook/plugin.h over the SDK's hook engine (bpfhook/hook.h).
//
// One attachment is one probe (provider:name) with all its sites. The
// TypeScript side found the sites in the module's .note.stapsdt and encoded
// them module-relative (module path + link-time addresses), so this code
// finds the module in its own process (dl_iterate_phdr): the same bytes work
// embedded and in an agent. Each site is a `nop` inside a function; it is
// hooked as an entry probe at function + offset (the engine checks the
// instruction boundary and keeps flags, registers and the red zone). When a
// site fires, the program runs on the engine's struct pt_regs with the
// site's spec id as its attach cookie: libbpf's usdt.bpf.h (with
// LINUX_HAS_BPF_COOKIE, which bpfhook sets) reads the spec from
// __bpf_usdt_specs by that id. Semaphores (u16 counters the probed code
// tests before computing arguments) are incremented while attached.
#include <link.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bpfhook/errmsg.h"
#include "bpfhook/hook.h"
#include "bpfhook/plugin.h"

namespace {

constexpr size_t kPtRegsSize = 168;      // the kernel's x86-64 struct pt_regs
constexpr uint32_t kMagic = 0x54445355;  // "USDT", src/index.ts PRIVATE_MAGIC
constexpr uint32_t kFlagSpecIds = 1;     // sites carry spec ids (the program reads __bpf_usdt_specs)
constexpr uint32_t kFlagNoHelpers = 2;   // the program calls no helper

struct Attachment;

struct Site {
  Attachment *a = nullptr;
  uint64_t address = 0;  // in this process: pt_regs.ip for the program
  uint64_t hook = 0;     // where it is hooked (address - delta: the first of a run of adjacent sites)
  uint64_t cookie = 0;   // the spec id, or the runtime's cookie
  bh_hook_link *link = nullptr;
};

struct Attachment {
  std::string description;  // "provider:name"
  bh_prog_run_fn run = nullptr;
  void *prog = nullptr;
  bh_prog_jit_fn jit = nullptr;
  const bh_probe_api *probe = nullptr;  // NULL: the program reads no attach point
  uint32_t prog_flags = 0;              // BH_PROG_F_*
  std::vector<std::unique_ptr<Site>> sites;
  std::vector<uint16_t *> semaphores;  // each distinct one once
};

struct State {
  std::mutex mu;
  bh_hook_engine *engine = nullptr;
  const bh_host *host = nullptr;
  std::map<int, std::unique_ptr<Attachment>> attachments;
  int next_id = 0;
};

// ---- private data ------------------------------------------------------

struct EncodedSite {
  uint64_t vaddr, hook_vaddr, func_offset, func_size, semaphore;
  uint32_t spec_id;
};

struct Decoded {
  uint32_t flags = 0;
  std::vector<EncodedSite> sites;
  std::string module;
  std::string description;
};

// Bounds-checked reader of the bytes src/index.ts encodeUsdt() writes.
bool decode(const void *data, size_t len, Decoded *out) {
  const auto *p = static_cast<const uint8_t *>(data);
  size_t at = 0;
  auto u32 = [&](uint32_t *v) {
    if (len - at < 4) return false;
    memcpy(v, p + at, 4);
    at += 4;
    return true;
  };
  auto u64 = [&](uint64_t *v) {
    if (len - at < 8) return false;
    memcpy(v, p + at, 8);
    at += 8;
    return true;
  };
  auto cstr = [&](std::string *s) {
    const void *nul = at < len ? memchr(p + at, 0, len - at) : nullptr;
    if (nul == nullptr) return false;
    const size_t n = static_cast<const uint8_t *>(nul) - (p + at);
    s->assign(reinterpret_cast<const char *>(p + at), n);
    at += n + 1;
    return true;
  };
  uint32_t magic = 0, n = 0, pad = 0;
  if (data == nullptr || !u32(&magic) || magic != kMagic || !u32(&n) || !u32(&out->flags) || !u32(&pad)) return false;
  if (n == 0 || n > (len - at) / 48) return false;
  out->sites.resize(n);
  for (EncodedSite &s : out->sites) {
    if (!u64(&s.vaddr) || !u64(&s.hook_vaddr) || s.hook_vaddr > s.vaddr || s.vaddr - s.hook_vaddr > 16 ||
        !u64(&s.func_offset) || !u64(&s.func_size) || !u64(&s.semaphore) || !u32(&s.spec_id) || !u32(&pad))
      return false;
  }
  return cstr(&out->module) && cstr(&out->description) && at == len && !out->module.empty();
}

// ---- the module in this process ------------------------------------------

std::string real_path(const char *path) {
  char buf[PATH_MAX];
  return realpath(path, buf) != nullptr ? std::string(buf) : std::string();
}

struct ModuleSearch {
  const char *path;
  std::string real, exe_real;
  bool by_realpath = false;
  bool found = false;
  uint64_t bias = 0;
  std::vector<ElfW(Phdr)> loads;  // PT_LOAD segments
};

int find_module(struct dl_phdr_info *info, size_t, void *data) {
  auto *m = static_cast<ModuleSearch *>(data);
  const char *name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  bool match;
  if (!m->by_realpath) {
    match = strcmp(name, m->path) == 0;
  } else if (name[0] == '\0') {  // the main program
    match = !m->exe_real.empty() && m->exe_real == m->real;
  } else {
    match = m->real == real_path(name);
  }
  if (!match) return 0;
  m->found = true;
  m->bias = info->dlpi_addr;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_LOAD) m->loads.push_back(info->dlpi_phdr[i]);
  return 1;
}

// Exact path first (no system call per module); realpath() when that fails
// (the loader's name may be a symlink's, "" for the main program).
bool find(const std::string &path, ModuleSearch *m) {
  m->path = path.c_str();
  dl_iterate_phdr(find_module, m);
  if (!m->found) {
    m->by_realpath = true;
    m->real = real_path(path.c_str());
    m->exe_real = real_path("/proc/self/exe");
    if (!m->real.empty()) dl_iterate_phdr(find_module, m);
  }
  return m->found;
}

bool in_segment(const ModuleSearch &m, uint64_t vaddr, uint64_t size, uint32_t flag) {
  for (const ElfW(Phdr) & ph : m.loads)
    if ((ph.p_flags & flag) != 0 && vaddr >= ph.p_vaddr && vaddr - ph.p_vaddr + size <= ph.p_memsz) return true;
  return false;
}

// ---- the listener ---------------------------------------------------------

uint64_t listener(void *user, struct pt_regs *hook_regs, bh_hook_call *) {
  const Site *s = static_cast<const Site *>(user);
  const Attachment *a = s->a;
  struct pt_regs *regs = hook_regs;
  struct pt_regs shifted;
  if (s->hook != s->address) {
    // Hooked at an earlier nop of the run: the same state, but the program
    // must see its own site as ip (sym(%rip) arguments are relative to it).
    shifted = *hook_regs;
    shifted.rip = s->address;
    regs = &shifted;
  }
  bh_probe_ctx pc{};
  if (a->probe != nullptr) {
    pc.func_ip = s->address;  // bpf_get_func_ip: the probe's address, as the kernel's uprobes
    pc.cookie = s->cookie;    // usdt.bpf.h: the spec id
    pc.regs = regs;
    pc.flags = BH_PROBE_F_PT_REGS;
    pc.nr_args = -1;
    a->probe->enter(&pc);
  }
  uint64_t r0 = 0;
  if (a->jit != nullptr) {
    a->jit(regs, kPtRegsSize);
  } else {
    a->run(a->prog, regs, kPtRegsSize, &r0);  // a fault (checked mode) counts as 0
  }
  if (a->probe != nullptr) a->probe->leave();
  return 0;  // a USDT site is a nop: the program's r0 changes nothing
}

// JIT code of a program that calls no helper touches no vector register,
// nor does this listener: the engine may then skip saving the vector state,
// which inside a function is all of it (XSAVE), most of a probe's cost.
__attribute__((target("general-regs-only"))) uint64_t listener_plain(void *user, struct pt_regs *hook_regs,
                                                                     bh_hook_call *) {
  const Site *s = static_cast<const Site *>(user);
  if (s->hook == s->address) {
    s->a->jit(hook_regs, kPtRegsSize);
    return 0;
  }
  struct pt_regs shifted = *hook_regs;
  shifted.rip = s->address;
  s->a->jit(&shifted, kPtRegsSize);
  return 0;
}

void detach_sites(Attachment *a) {
  for (auto &s : a->sites)
    if (s->link != nullptr && bh_hook_detach(s->link) == 0) s->link = nullptr;
}

// ---- plugin ops -------------------------------------------------------------

int plugin_init(void **state, const bh_host *host, char *err, size_t err_len) {
  if (!BH_SZ_HAS(host, bh_host, probe) || host->probe == nullptr) {
    return bh_fail(err, err_len, -EPROTO, "usdt: the host provides no probe context (core too old)");
  }
  auto s = std::make_unique<State>();
  s->host = host;
  char msg[256] = {0};
  bh_hook_engine_opts opts{};
  opts.sz = sizeof opts;
  opts.errbuf = msg;
  opts.errbuf_sz = sizeof msg;
  s->engine = bh_hook_engine__new(&opts);
  if (s->engine == nullptr) return bh_fail(err, err_len, -errno, "usdt: hook engine: %s", msg);
  *state = s.release();
  return 0;
}

void plugin_fini(void *state) {
  auto *s = static_cast<State *>(state);
  for (auto &[id, a] : s->attachments) {
    detach_sites(a.get());
    for (uint16_t *sem : a->semaphores) __atomic_fetch_sub(sem, 1, __ATOMIC_RELAXED);
  }
  bh_hook_engine__destroy(s->engine);
  delete s;
}

int plugin_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog_name) || opts->run == nullptr) {
    return bh_fail(err, err_len, -EINVAL, "usdt: attach options too old or without a program");
  }
  Decoded d;
  if (!decode(opts->private_data, opts->private_data_len, &d)) {
    return bh_fail(err, err_len, -EINVAL, "usdt: malformed private data (%zu bytes)", opts->private_data_len);
  }
  const char *what = d.description.c_str();
  ModuleSearch m;
  if (!find(d.module, &m)) {
    return bh_fail(err, err_len, -ENOENT, "usdt %s: module %s is not loaded in process %d", what, d.module.c_str(),
                   static_cast<int>(getpid()));
  }
  auto a = std::make_unique<Attachment>();
  a->description = d.description;
  a->run = opts->run;
  a->prog = opts->prog;
  a->jit = opts->jit;
  const bool reads_probe =
      !BH_SZ_HAS(opts, bh_attach_opts, prog_flags) || (opts->prog_flags & BH_PROG_F_PROBE_CTX) != 0;
  a->probe = reads_probe ? s->host->probe : nullptr;
  a->prog_flags = BH_SZ_HAS(opts, bh_attach_opts, prog_flags) ? opts->prog_flags : 0u;
  std::set<uint16_t *> semaphores;
  for (size_t i = 0; i < d.sites.size(); i++) {
    const EncodedSite &e = d.sites[i];
    if (!in_segment(m, e.vaddr, 1, PF_X) || !in_segment(m, e.hook_vaddr, 1, PF_X)) {
      return bh_fail(err, err_len, -EFAULT, "usdt %s: site %zu: vaddr 0x%llx is in no executable segment of %s", what,
                     i, static_cast<unsigned long long>(e.vaddr), d.module.c_str());
    }
    if (e.semaphore != 0) {
      if (!in_segment(m, e.semaphore, sizeof(uint16_t), PF_W)) {
        return bh_fail(err, err_len, -EFAULT, "usdt %s: semaphore at vaddr 0x%llx is in no writable segment of %s",
                       what, static_cast<unsigned long long>(e.semaphore), d.module.c_str());
      }
      semaphores.insert(reinterpret_cast<uint16_t *>(m.bias + e.semaphore));
    }
    auto site = std::make_unique<Site>();
    site->a = a.get();
    site->address = m.bias + e.vaddr;
    site->hook = m.bias + e.hook_vaddr;
    site->cookie = (d.flags & kFlagSpecIds) != 0 ? e.spec_id : opts->cookie;
    a->sites.push_back(std::move(site));
  }
  a->semaphores.assign(semaphores.begin(), semaphores.end());

  std::lock_guard<std::mutex> lock(s->mu);
  for (size_t i = 0; i < a->sites.size(); i++) {
    Site &site = *a->sites[i];
    const EncodedSite &e = d.sites[i];
    char msg[384] = {0};
    bh_hook_attach_opts ho{};
    ho.sz = sizeof ho;
    ho.cookie = site.cookie;
    ho.func_offset = e.func_offset;
    ho.func_size = e.func_size;
    ho.errbuf = msg;
    ho.errbuf_sz = sizeof msg;
    bh_hook_fn fn = listener;
    if (a->jit != nullptr && (d.flags & kFlagNoHelpers) != 0) {
      ho.flags |= BH_HOOK_ATTACH_F_NO_VECTOR;
      fn = listener_plain;
    } else if (a->jit != nullptr && (a->prog_flags & BH_PROG_F_VECTOR_CLEAN) != 0) {
      // Helpers the core built to touch at most xmm0-15 (usdt.bpf.h's reads:
      // the spec array, the cookie, probe_read_user), and this listener is
      // baseline C: the engine saves xmm0-15, not the whole state with XSAVE.
      ho.flags |= BH_HOOK_ATTACH_F_SSE_ONLY;
    }
    const int rc =
        bh_hook_attach(s->engine, reinterpret_cast<void *>(site.hook), BH_HOOK_ENTRY, fn, &site, &ho, &site.link);
    if (rc < 0) {
      site.link = nullptr;
      detach_sites(a.get());  // all or nothing
      return bh_fail(err, err_len, rc, "usdt %s: site %zu (vaddr 0x%llx): %s", what, i,
                     static_cast<unsigned long long>(e.vaddr), msg);
    }
  }
  // Only now: a failed attach leaves the program's semaphores as they were.
  for (uint16_t *sem : a->semaphores) __atomic_fetch_add(sem, 1, __ATOMIC_RELAXED);
  const int id = s->next_id++;
  s->attachments[id] = std::move(a);
  return id;
}

int plugin_detach(void *state, int id) {
  auto *s = static_cast<State *>(state);
  std::lock_guard<std::mutex> lock(s->mu);
  auto it = s->attachments.find(id);
  if (it == s->attachments.end()) return -ENOENT;
  Attachment *a = it->second.get();
  detach_sites(a);
  for (auto &site : a->sites)
    if (site->link != nullptr) return -EBUSY;  // still hooked: keep the record, try again later
  for (uint16_t *sem : a->semaphores) __atomic_fetch_sub(sem, 1, __ATOMIC_RELAXED);
  // No thread runs a listener of these links any more: the record can go.
  s->attachments.erase(it);
  return 0;
}

const bh_plugin_ops kOps = {
    sizeof(bh_plugin_ops), BH_PLUGIN_ABI_VERSION, "usdt",  plugin_init, plugin_fini,
    plugin_attach,         plugin_detach,         nullptr, nullptr,
};

}  // namespace

extern "C" BH_PLUGIN_EXPORT const struct bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }
