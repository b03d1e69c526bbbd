// The frida-uprobe plugin's native piece: the C ABI of sdk/include/bpfhook/
// plugin.h over the SDK's inline-hook engine
// (sdk/native/hook/include/bpfhook/hook.h).
//
// One listener per attachment. A listener brackets the program run with the
// host's probe context so the core's helpers (get_func_arg, get_func_ret,
// override_return, set_retval, get_func_ip, get_attach_cookie, get_stack)
// reach this probe; the context's ops forward to the engine's bh_hook_call.
#include <climits>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <link.h>
#include <unistd.h>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "bpfhook/hook.h"
#include "bpfhook/plugin.h"
#include "bpfhook/errmsg.h"
#include "bpfhook/uprobe_plugin.h"

namespace {

constexpr size_t kPtRegsSize = sizeof(struct pt_regs);
static_assert(kPtRegsSize == 168, "the uprobe context is the kernel's x86-64 pt_regs");

struct Attachment {
  int id = -1;
  uint32_t type = 0;
  uint64_t func = 0;
  std::string description;
  bh_prog_run_fn run = nullptr;
  void *prog = nullptr;
  bh_prog_jit_fn jit = nullptr;
  uint64_t cookie = 0;
  const bh_probe_api *probe = nullptr;  // NULL: the program reads no attach point
  bh_hook_link *link = nullptr;
};

struct State {
  std::mutex mu;
  bh_hook_engine *engine = nullptr;
  const bh_host *host = nullptr;
  std::map<int, std::unique_ptr<Attachment>> attachments;
  // Functions with an override or replace: at most one each, whatever came first.
  std::map<uint64_t, int> exclusive;
  int next_id = 0;
};

// ---- probe-context ops over the engine's per-call state -------------------

int op_get_arg(void *opaque, uint32_t n, uint64_t *value) {
  return bh_hook_call__arg(static_cast<bh_hook_call *>(opaque), n, value);
}
int op_get_ret(void *opaque, uint64_t *value) { return bh_hook_call__ret(static_cast<bh_hook_call *>(opaque), value); }
int op_override(void *opaque, uint64_t value) {
  return bh_hook_call__override_return(static_cast<bh_hook_call *>(opaque), value);
}
int op_get_retval(void *opaque, uint64_t *value) {
  auto *call = static_cast<bh_hook_call *>(opaque);
  if ((call->flags & (BH_HOOK_CALL_RETURN | BH_HOOK_CALL_OVERRIDE)) == 0) return -EOPNOTSUPP;
  *value = call->retval;
  return 0;
}
int op_set_retval(void *opaque, uint64_t value) {
  return bh_hook_call__set_retval(static_cast<bh_hook_call *>(opaque), value);
}

// uprobe and ureplace: the program may read, not redirect.
const bh_probe_ops kReadOnlyOps = {sizeof(bh_probe_ops), op_get_arg, op_get_ret, nullptr, op_get_retval};
// uprobe_override: bpf_override_return / bpf_set_retval skip the function.
const bh_probe_ops kOverrideOps = {sizeof(bh_probe_ops), op_get_arg, op_get_ret, op_override, op_get_retval};
// uretprobe: bpf_set_retval changes what the caller receives.
const bh_probe_ops kReturnOps = {sizeof(bh_probe_ops), op_get_arg, op_get_ret, op_set_retval, op_get_retval};

inline uint64_t run_program(const Attachment *a, struct pt_regs *regs) {
  uint64_t r0 = 0;
  if (a->jit != nullptr) {
    r0 = a->jit(regs, kPtRegsSize);
  } else if (a->run(a->prog, regs, kPtRegsSize, &r0) < 0) {
    r0 = 0;  // a faulting program (checked mode) returns 0, as the kernel's would
  }
  return r0;
}

template <uint32_t Type>
uint64_t listener(void *user, struct pt_regs *regs, bh_hook_call *call) {
  auto *a = static_cast<Attachment *>(user);
  // The hot path: the program calls no helper that reads the attach point.
  if (a->probe == nullptr) return run_program(a, regs);
  bh_probe_ctx pc{};
  pc.func_ip = a->func;
  pc.cookie = a->cookie;
  pc.regs = regs;
  pc.flags = BH_PROBE_F_PT_REGS | (Type == BH_ATTACH_URETPROBE ? BH_PROBE_F_RETURN : 0u);
  pc.nr_args = -1;
  pc.ops = Type == BH_ATTACH_UPROBE_OVERRIDE ? &kOverrideOps
           : Type == BH_ATTACH_URETPROBE     ? &kReturnOps
                                             : &kReadOnlyOps;
  pc.opaque = call;
  a->probe->enter(&pc);
  uint64_t r0 = run_program(a, regs);
  a->probe->leave();
  return r0;
}

// For JIT-compiled programs that call no helper: nothing reads the attach
// point, and this code must not touch vector registers (NO_VECTOR).
__attribute__((target("general-regs-only"))) uint64_t listener_plain(void *user, struct pt_regs *regs, bh_hook_call *) {
  auto *a = static_cast<Attachment *>(user);
  return a->jit(regs, kPtRegsSize);
}

bh_hook_fn listener_for(uint32_t type) {
  switch (type) {
    case BH_ATTACH_UPROBE: return listener<BH_ATTACH_UPROBE>;
    case BH_ATTACH_URETPROBE: return listener<BH_ATTACH_URETPROBE>;
    case BH_ATTACH_UPROBE_OVERRIDE: return listener<BH_ATTACH_UPROBE_OVERRIDE>;
    case BH_ATTACH_UREPLACE: return listener<BH_ATTACH_UREPLACE>;
    default: return nullptr;
  }
}

bh_hook_kind kind_for(uint32_t type) {
  switch (type) {
    case BH_ATTACH_URETPROBE: return BH_HOOK_RETURN;
    case BH_ATTACH_UREPLACE: return BH_HOOK_REPLACE;
    default: return BH_HOOK_ENTRY;
  }
}

const char *type_name(uint32_t type) {
  switch (type) {
    case BH_ATTACH_UPROBE: return "uprobe";
    case BH_ATTACH_URETPROBE: return "uretprobe";
    case BH_ATTACH_UPROBE_OVERRIDE: return "uprobe_override";
    case BH_ATTACH_UREPLACE: return "ureplace";
    default: return "?";
  }
}

// ---- module-relative targets ---------------------------------------------

// realpath() into a std::string; empty when the path does not resolve.
std::string real_path(const char *path) {
  char buf[PATH_MAX];
  return realpath(path, buf) != nullptr ? std::string(buf) : std::string();
}

struct ModuleSearch {
  const char *path;      // the module's path as mapped (absolute, canonical in /proc/<pid>/maps)
  std::string real;      // realpath(path), second pass only
  std::string exe_real;  // realpath("/proc/self/exe"), for the main program's empty dlpi_name
  bool by_realpath = false;
  uint64_t vaddr = 0;
  bool found = false;
  bool in_exec = false;  // vaddr lies in a PF_X PT_LOAD segment
  uint64_t bias = 0;
};

bool module_matches(const ModuleSearch &m, const char *name) {
  if (!m.by_realpath) return strcmp(name, m.path) == 0;
  // The main program is "" and the vdso has a name that is no file.
  if (name[0] == '\0') return !m.exe_real.empty() && m.exe_real == m.real;
  return m.real == real_path(name);
}

int find_module(struct dl_phdr_info *info, size_t, void *data) {
  auto *m = static_cast<ModuleSearch *>(data);
  if (!module_matches(*m, info->dlpi_name != nullptr ? info->dlpi_name : "")) return 0;
  m->found = true;
  m->bias = info->dlpi_addr;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    if (m->vaddr >= ph.p_vaddr && m->vaddr - ph.p_vaddr < ph.p_memsz) m->in_exec = true;
  }
  return 1;
}

// The absolute address of a module-relative target in this process: the
// module's load bias (dl_iterate_phdr) + the vaddr, inside an executable
// PT_LOAD segment. Exact path first (no system call per module); realpath()
// only when that finds nothing (dlpi_name is the path the loader opened,
// /lib/... for a /usr/lib/... file, "" for the main program).
int resolve_module_relative(const bh_uprobe_target &t, uint32_t type, uint64_t *address, char *err, size_t err_len) {
  ModuleSearch m;
  m.path = t.module_path;
  m.vaddr = t.address;
  dl_iterate_phdr(find_module, &m);
  if (!m.found) {
    m.by_realpath = true;
    m.real = real_path(t.module_path);
    m.exe_real = real_path("/proc/self/exe");
    if (!m.real.empty()) dl_iterate_phdr(find_module, &m);
  }
  if (!m.found) {
    return bh_fail(err, err_len, -ENOENT, "%s '%s': module %s is not loaded in process %d", type_name(type),
                   t.description, t.module_path, static_cast<int>(getpid()));
  }
  if (!m.in_exec) {
    return bh_fail(err, err_len, -EFAULT,
                   "%s '%s': vaddr 0x%llx is in no executable segment of module %s (loaded at bias 0x%llx in process "
                   "%d)",
                   type_name(type), t.description, static_cast<unsigned long long>(t.address), t.module_path,
                   static_cast<unsigned long long>(m.bias), static_cast<int>(getpid()));
  }
  *address = m.bias + t.address;
  return 0;
}

// ---- plugin ops -------------------------------------------------------------

int plugin_init(void **state, const bh_host *host, char *err, size_t err_len) {
  if (!BH_SZ_HAS(host, bh_host, probe) || host->probe == nullptr) {
    return bh_fail(err, err_len, -EPROTO, "frida-uprobe: the host provides no probe context (core too old)");
  }
  auto s = std::make_unique<State>();
  s->host = host;
  char msg[256] = {0};
  bh_hook_engine_opts opts{};
  opts.sz = sizeof opts;
  opts.errbuf = msg;
  opts.errbuf_sz = sizeof msg;
  s->engine = bh_hook_engine__new(&opts);
  if (s->engine == nullptr) return bh_fail(err, err_len, -errno, "frida-uprobe: hook engine: %s", msg);
  *state = s.release();
  return 0;
}

void plugin_fini(void *state) {
  auto *s = static_cast<State *>(state);
  bh_hook_engine__destroy(s->engine);  // detaches what is left
  delete s;
}

int plugin_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog_name) || opts->run == nullptr) {
    return bh_fail(err, err_len, -EINVAL, "attach options too old or without a program");
  }
  bh_uprobe_target target{};
  if (bh_uprobe_private_data_decode(opts->private_data, opts->private_data_len, &target) < 0) {
    return bh_fail(err, err_len, -EINVAL, "malformed private data (%zu bytes)", opts->private_data_len);
  }
  const uint32_t type = opts->attach_type;
  bh_hook_fn fn = listener_for(type);
  if (fn == nullptr || target.attach_type != type) {
    return bh_fail(err, err_len, -EINVAL, "%s: attach type %u does not match the private data's %u", target.description,
                   type, target.attach_type);
  }
  if (target.func_offset != 0 && type != BH_ATTACH_UPROBE) {
    // Inside a function [rsp] is not a return address: a return probe,
    // override or replacement there would return into garbage.
    return bh_fail(err, err_len, -EINVAL,
                   "%s %s: offset 0x%llx: a %s must be at the function's entry (offset 0); only uprobe may probe "
                   "inside a function",
                   type_name(type), target.description, static_cast<unsigned long long>(target.func_offset),
                   type_name(type));
  }
  if (target.func_size != 0 && target.func_offset >= target.func_size) {
    return bh_fail(err, err_len, -EINVAL, "%s %s: offset 0x%llx is past the function's 0x%llx bytes", type_name(type),
                   target.description, static_cast<unsigned long long>(target.func_offset),
                   static_cast<unsigned long long>(target.func_size));
  }
  uint64_t address = target.address;
  if ((target.flags & BH_UPROBE_F_MODULE_RELATIVE) != 0) {
    const int rc = resolve_module_relative(target, type, &address, err, err_len);
    if (rc < 0) return rc;
  }
  uint64_t func = address;
  if ((target.flags & BH_UPROBE_F_IFUNC_RESOLVER) != 0) {
    // As dlsym does: the resolver returns the implementation for this CPU.
    auto resolver = reinterpret_cast<void *(*)(void)>(address);
    func = reinterpret_cast<uint64_t>(resolver());
  }
  auto a = std::make_unique<Attachment>();
  a->type = type;
  a->func = func;
  a->description = target.description;
  a->run = opts->run;
  a->prog = opts->prog;
  a->jit = opts->jit;
  a->cookie = opts->cookie;
  const bool reads_probe =
      !BH_SZ_HAS(opts, bh_attach_opts, prog_flags) || (opts->prog_flags & BH_PROG_F_PROBE_CTX) != 0;
  a->probe = reads_probe ? s->host->probe : nullptr;

  std::lock_guard<std::mutex> lock(s->mu);
  const bool exclusive = type == BH_ATTACH_UPROBE_OVERRIDE || type == BH_ATTACH_UREPLACE;
  if (exclusive) {
    auto it = s->exclusive.find(func);
    if (it != s->exclusive.end()) {
      const Attachment &other = *s->attachments.at(it->second);
      return bh_fail(err, err_len, -EEXIST, "%s %s (0x%llx): already has %s by prog attachment %d", type_name(type),
                     a->description.c_str(), static_cast<unsigned long long>(func), type_name(other.type), other.id);
    }
  }
  char msg[512] = {0};
  bh_hook_attach_opts ho{};
  ho.sz = sizeof ho;
  ho.cookie = opts->cookie;
  // No func_name: our own prefix names the target already, and the message
  // must fit the host's buffer (the engine then says "attach 0x7f...:").
  ho.func_offset = target.func_offset;
  // An IFUNC's implementation is another function than the symbol sized.
  ho.func_size = (target.flags & BH_UPROBE_F_IFUNC_RESOLVER) != 0 ? 0 : target.func_size;
  // JIT code of a program that calls no helper (the TS side's reading, or
  // the core's after the JIT inlined what it could: an array lookup) touches
  // no vector register, nor does the listener on that path (listener_plain):
  // the engine may skip saving vector state, the largest part of a probe's
  // cost.
  const bool general_regs =
      BH_SZ_HAS(opts, bh_attach_opts, prog_flags) && (opts->prog_flags & BH_PROG_F_GENERAL_REGS) != 0;
  if (a->jit != nullptr && ((target.flags & BH_UPROBE_F_NO_HELPERS) != 0 || general_regs)) {
    ho.flags |= BH_HOOK_ATTACH_F_NO_VECTOR;
    fn = listener_plain;
  } else if (a->jit != nullptr && BH_SZ_HAS(opts, bh_attach_opts, prog_flags) &&
             (opts->prog_flags & BH_PROG_F_VECTOR_CLEAN) != 0) {
    // Helpers that touch at most xmm0-15, and this listener (baseline C that
    // calls no libc string function): the engine saves those alone, with
    // moves, instead of the whole state with XSAVE inside a function.
    ho.flags |= BH_HOOK_ATTACH_F_SSE_ONLY;
  }
  ho.errbuf = msg;
  ho.errbuf_sz = sizeof msg;
  int rc = bh_hook_attach(s->engine, reinterpret_cast<void *>(func), kind_for(type), fn, a.get(), &ho, &a->link);
  if (rc < 0) return bh_fail(err, err_len, rc, "%s %s: %s", type_name(type), a->description.c_str(), msg);
  a->id = s->next_id++;
  if (exclusive) s->exclusive[func] = a->id;
  int id = a->id;
  s->attachments[id] = std::move(a);
  return id;
}

int plugin_detach(void *state, int id) {
  auto *s = static_cast<State *>(state);
  std::lock_guard<std::mutex> lock(s->mu);
  auto it = s->attachments.find(id);
  if (it == s->attachments.end()) return -ENOENT;
  int rc = bh_hook_detach(it->second->link);
  if (rc < 0) return rc;  // still attached: keep the record
  auto ex = s->exclusive.find(it->second->func);
  if (ex != s->exclusive.end() && ex->second == id) s->exclusive.erase(ex);
  // The engine guarantees no thread runs the listener after detach returns,
  // so the attachment (the listener's user data) can go.
  s->attachments.erase(it);
  return 0;
}

// call("begin_batch"): opens an engine transaction (nests).
// call("end_batch"): closes it; the outermost patches every function the
// batch touched in one pause.  out = int32 rc, then the error message
// (NUL-terminated); the call itself returns 0 so the caller gets the message.
// On failure the links attached in the batch are dead (bh_hook_link__error):
// the runtime detaches them, which only frees them.
// call("hook_stats"): out = bh_hook_stats (tests: pauses, transactions,
// trampolines).
// call("func_info"): in = u64 address; out = bh_hook_func_info. For tests and
// diagnostics: whether a function is patched and its original bytes.
int64_t plugin_call(void *, const char *name, const void *in, size_t in_len, void *out, size_t out_len) {
  if (strcmp(name, "begin_batch") == 0) return bh_hook_begin_transaction();
  if (strcmp(name, "end_batch") == 0) {
    if (out == nullptr || out_len < sizeof(int32_t) + 1) return -EINVAL;
    char *msg = static_cast<char *>(out) + sizeof(int32_t);
    msg[0] = 0;
    bh_hook_txn_opts o{};
    o.sz = sizeof o;
    o.errbuf = msg;
    o.errbuf_sz = out_len - sizeof(int32_t);
    const int32_t rc = bh_hook_end_transaction(&o);
    memcpy(out, &rc, sizeof rc);
    return 0;
  }
  if (strcmp(name, "hook_stats") == 0) {
    if (out == nullptr || out_len < sizeof(struct bh_hook_stats)) return -EINVAL;
    struct bh_hook_stats st {};
    st.sz = sizeof st;
    const int rc = bh_hook_get_stats(&st);
    if (rc < 0) return rc;
    memcpy(out, &st, sizeof st);
    return 0;
  }
  if (strcmp(name, "func_info") == 0) {
    uint64_t addr = 0;
    if (in == nullptr || in_len != sizeof addr || out == nullptr || out_len < sizeof(struct bh_hook_func_info))
      return -EINVAL;
    memcpy(&addr, in, sizeof addr);
    struct bh_hook_func_info info {};
    info.sz = sizeof info;
    int rc = bh_hook_get_func_info(reinterpret_cast<const void *>(addr), &info);
    if (rc < 0) return rc;
    memcpy(out, &info, sizeof info);
    return 0;
  }
  return -ENOSYS;
}

const bh_plugin_ops kOps = {
    sizeof(bh_plugin_ops), BH_PLUGIN_ABI_VERSION, "frida-uprobe", plugin_init, plugin_fini,
    plugin_attach,         plugin_detach,         nullptr,        plugin_call,
};

}  // namespace

extern "C" BH_PLUGIN_EXPORT const bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }
