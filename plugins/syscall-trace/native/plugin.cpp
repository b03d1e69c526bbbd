// The syscall-trace plugin's C ABI (sdk/include/bpfhook/plugin.h): attach
// type syscall_trace (2). An attachment is one program on the enter or exit
// of one syscall number, or of every one (raw_syscalls); the dispatcher
// (dispatch.cpp) runs it from the text transformer's hooks
// (plugins/text-transformer), which this library links statically.
//
// The transformer is process-wide: installed on the first attach of any
// plugin state, told after every change which numbers are wanted
// (bh_tt_set_interest), uninstalled after the last detach and in fini.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "bpfhook/errmsg.h"
#include "bpfhook/plugin.h"
#include "dispatch.h"

namespace {

struct State {
  const bh_host *host;
};

// Process-wide: who installed the transformer, and how.
std::mutex g_mu;
bool g_installed = false;
bool g_dispatch_only = false;  // call "dispatch_only": tests drive the hooks themselves
uint32_t g_mechanisms = 0;     // call "set_mechanisms" / BPFHOOK_SYSCALL_MECHANISMS; 0 = automatic
const bh_host *g_log_host = nullptr;

void host_log(const bh_host *h, int level, const char *msg) {
  if (h != nullptr && BH_SZ_HAS(h, bh_host, host_ctx) && h->log != nullptr) h->log(h->host_ctx, level, msg);
}

void tt_log(void *ctx, int level, const char *msg) {
  std::string line = std::string("text transformer: ") + msg;
  host_log(static_cast<const bh_host *>(ctx), level, line.c_str());
}

const char *mech_names(uint32_t m, char *buf, size_t len) {
  snprintf(buf, len, "%s%s%s%s", (m & BH_TT_MECH_REL32) ? "rel32 " : "", (m & BH_TT_MECH_PAGE0) ? "page0 " : "",
           (m & BH_TT_MECH_SUD) ? "sud " : "", m == 0 ? "none " : "");
  size_t n = strlen(buf);
  if (n > 0) buf[n - 1] = '\0';
  return buf;
}

// "rel32,sud" -> bits; unknown words are ignored with a warning.
uint32_t mechanisms_from_env(const bh_host *h) {
  const char *v = getenv("BPFHOOK_SYSCALL_MECHANISMS");
  if (v == nullptr || *v == '\0') return 0;
  uint32_t m = 0;
  std::string s(v);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    std::string w = s.substr(pos, end - pos);
    if (w == "rel32")
      m |= BH_TT_MECH_REL32;
    else if (w == "page0")
      m |= BH_TT_MECH_PAGE0;
    else if (w == "sud")
      m |= BH_TT_MECH_SUD;
    else if (!w.empty() && w != "auto")
      host_log(h, BH_LOG_WARN, ("BPFHOOK_SYSCALL_MECHANISMS: unknown mechanism '" + w + "' ignored").c_str());
    pos = end + 1;
  }
  return m;
}

void update_interest() {
  uint32_t nrs[BH_SC_MAX_NR];
  size_t n = 0;
  bool all = false;
  sc::interest(nrs, &n, &all);
  // Exit interest first: a number that becomes wanted must not run without
  // the exit hook its program needs.
  uint32_t exit_nrs[BH_SC_MAX_NR];
  size_t exit_n = 0;
  bool exit_all = false;
  sc::exit_interest(exit_nrs, &exit_n, &exit_all);
  bh_tt_set_exit_interest(exit_nrs, exit_n, exit_all ? 1 : 0);
  bh_tt_set_interest(nrs, n, all ? 1 : 0);
}

// With g_mu held. Installs the transformer if it is not yet.
int ensure_installed(const bh_host *host, char *err, size_t err_len) {
  if (g_installed || g_dispatch_only) return 0;
  bh_tt_opts opts{};
  opts.sz = sizeof opts;
  opts.mechanisms = g_mechanisms != 0 ? g_mechanisms : mechanisms_from_env(host);
  opts.watch_new_code = 1;
  opts.log = tt_log;
  opts.log_ctx = const_cast<bh_host *>(host);
  // The dispatcher keeps every vector register (dispatch.cpp), so calls
  // that need only enter save none.
  static const bh_tt_hooks hooks = {sizeof(bh_tt_hooks), sc::hook_enter, sc::hook_exit, BH_TT_HOOKS_F_KEEP_VECTORS};
  char msg[512] = "";
  // Nothing is wanted until the first list is published: install with the
  // interest as it is (empty on a first attach), so the scan patches nothing
  // it need not.
  update_interest();
  const int rc = bh_tt_install(&opts, &hooks, nullptr, msg, sizeof msg);
  if (rc < 0) return bh_fail(err, err_len, rc, "syscall_trace: text transformer not installed: %s", msg);
  g_installed = true;
  g_log_host = host;
  bh_tt_stats st{};
  st.sz = sizeof st;
  if (bh_tt_get_stats(&st) == 0) {
    char names[64];
    char line[400];
    snprintf(line, sizeof line,
             "text transformer installed: mechanisms %s; %u modules, %llu syscall sites (%llu rel32, %llu page0, "
             "%llu sud, %llu untouched), %llu undecodable bytes skipped",
             mech_names(st.mechanisms_active, names, sizeof names), st.modules_scanned,
             (unsigned long long)st.sites_found, (unsigned long long)st.sites_rel32, (unsigned long long)st.sites_page0,
             (unsigned long long)st.sites_sud, (unsigned long long)st.sites_untouched,
             (unsigned long long)st.bytes_undecodable);
    host_log(host, BH_LOG_INFO, line);
  }
  return 0;
}

void uninstall_locked() {
  if (!g_installed) return;
  bh_tt_uninstall();
  g_installed = false;
  host_log(g_log_host, BH_LOG_INFO, "text transformer uninstalled: no syscall_trace attachment left");
}

int sc_init(void **state, const bh_host *host, char *, size_t) {
  auto *s = new State{host};
  if (BH_SZ_HAS(host, bh_host, probe)) sc::set_probe_api(host->probe);
  *state = s;
  return 0;
}

void sc_fini(void *state) {
  auto *s = static_cast<State *>(state);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    // The core detaches every id first; anything left (a control plane that
    // stopped half-way) is detached here, so that no hook runs it later.
    bool empty = false;
    const int left = sc::remove_all(s, &empty);
    if (left > 0) host_log(s->host, BH_LOG_WARN, "syscall_trace: fini detached attachments the core had not");
    uint32_t nrs[BH_SC_MAX_NR];
    size_t n = 0;
    bool all = false;
    sc::interest(nrs, &n, &all);
    if (n == 0 && !all)
      uninstall_locked();
    else if (g_installed)
      update_interest();
  }
  delete s;
}

int sc_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog_name) || opts->run == nullptr)
    return bh_fail(err, err_len, -EINVAL, "syscall_trace: attach options too old or without a program");
  const char *name = opts->prog_name != nullptr ? opts->prog_name : "?";
  if (opts->attach_type != BH_ATTACH_SYSCALL_TRACE)
    return bh_fail(err, err_len, -EINVAL, "syscall_trace: prog '%s': unknown attach type %u", name, opts->attach_type);
  if (opts->private_data == nullptr || opts->private_data_len != sizeof(bh_sc_private_data))
    return bh_fail(err, err_len, -EINVAL, "syscall_trace: prog '%s': private data must be %zu bytes, got %zu", name,
                   sizeof(bh_sc_private_data), opts->private_data_len);
  bh_sc_private_data pd;
  memcpy(&pd, opts->private_data, sizeof pd);
  sc::Attachment a{};
  a.run = opts->run;
  a.prog = opts->prog;
  a.jit = opts->jit;
  a.cookie = opts->cookie;
  // Every program gets the bracket unless the core says it reads no attach
  // point; override needs it.
  a.reads_probe = !BH_SZ_HAS(opts, bh_attach_opts, prog_flags) || (opts->prog_flags & BH_PROG_F_PROBE_CTX) != 0;
  a.allow_override = (pd.flags & BH_SC_F_ALLOW_OVERRIDE) != 0;
  // No vector state to keep when the JIT code calls no helper, or only
  // helpers the core built to leave it alone.
  const bool vector_clean =
      BH_SZ_HAS(opts, bh_attach_opts, prog_flags) && (opts->prog_flags & BH_PROG_F_VECTOR_CLEAN) != 0;
  a.no_vector = a.jit != nullptr && ((pd.flags & BH_SC_F_NO_HELPERS) != 0 || vector_clean);
  // Not even xmm0-15: JIT code that reaches no C at all.
  a.general_regs = a.jit != nullptr && BH_SZ_HAS(opts, bh_attach_opts, prog_flags) &&
                   (opts->prog_flags & BH_PROG_F_GENERAL_REGS) != 0;
  std::lock_guard<std::mutex> lock(g_mu);
  int rc = ensure_installed(s->host, err, err_len);
  if (rc < 0) return rc;
  std::string msg;
  const int id = sc::add(a, pd, s, &msg);
  if (id < 0) {
    bh_fail(err, err_len, id, "syscall_trace: prog '%s': %s", name, msg.c_str());
    uint32_t nrs[BH_SC_MAX_NR];
    size_t n = 0;
    bool all = false;
    sc::interest(nrs, &n, &all);
    if (n == 0 && !all) uninstall_locked();
    return id;
  }
  if (g_installed) update_interest();
  return id;
}

int sc_detach(void *state, int id) {
  std::lock_guard<std::mutex> lock(g_mu);
  bool empty = false;
  const int rc = sc::remove(id, state, &empty);
  if (rc < 0) return rc;
  if (empty)
    uninstall_locked();
  else if (g_installed)
    update_interest();
  return 0;
}

// Layout of call "stats"'s out (96 bytes, little-endian).
struct StatsOut {
  uint32_t installed, mechanisms_active, modules_scanned, dispatch_only;
  uint64_t sites_found, sites_rel32, sites_page0, sites_sud, sites_untouched, bytes_undecodable;
  uint64_t missed, grace_timeouts, threads, guarded;
};
static_assert(sizeof(StatsOut) == 96, "stats layout");

int64_t sc_call(void *, const char *name, const void *in, size_t in_len, void *out, size_t out_len) {
  if (strcmp(name, "dispatch") == 0) {
    // Drives the hooks as the transformer would, for tests: in = u64 nr,
    // u64 args[6], i64 the call's own result; out = i32 action (BH_TT_*),
    // i32 0, i64 the result the caller would see.
    if (in == nullptr || in_len < 64 || out == nullptr || out_len < 16) return -EINVAL;
    bh_tt_call_frame cf{};
    bh_tt_call &call = cf.call;
    memcpy(&call.nr, in, 8);
    memcpy(call.args, static_cast<const char *>(in) + 8, 48);
    int64_t result;
    memcpy(&result, static_cast<const char *>(in) + 56, 8);
    int64_t ret = 0;
    const int32_t action = sc::hook_enter(nullptr, &call, &ret);
    if (action == BH_TT_RUN) ret = result;
    sc::hook_exit(nullptr, &call, &ret);
    memset(out, 0, 16);
    memcpy(out, &action, 4);
    memcpy(static_cast<char *>(out) + 8, &ret, 8);
    return 0;
  }
  if (strcmp(name, "dispatch_only") == 0 || strcmp(name, "set_mechanisms") == 0) {
    if (in == nullptr || in_len < 4) return -EINVAL;
    uint32_t v;
    memcpy(&v, in, 4);
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_installed) return -EBUSY;  // takes effect at the next install
    if (name[0] == 'd')
      g_dispatch_only = v != 0;
    else
      g_mechanisms = v;
    return 0;
  }
  if (strcmp(name, "stats") == 0) {
    if (out == nullptr || out_len < sizeof(StatsOut)) return -EINVAL;
    StatsOut o{};
    std::lock_guard<std::mutex> lock(g_mu);
    o.installed = g_installed;
    o.dispatch_only = g_dispatch_only;
    bh_tt_stats st{};
    st.sz = sizeof st;
    if (g_installed && bh_tt_get_stats(&st) == 0) {
      o.mechanisms_active = st.mechanisms_active;
      o.modules_scanned = st.modules_scanned;
      o.sites_found = st.sites_found;
      o.sites_rel32 = st.sites_rel32;
      o.sites_page0 = st.sites_page0;
      o.sites_sud = st.sites_sud;
      o.sites_untouched = st.sites_untouched;
      o.bytes_undecodable = st.bytes_undecodable;
    }
    const sc::Stats d = sc::stats();
    o.missed = d.missed;
    o.grace_timeouts = d.grace_timeouts;
    o.threads = d.threads;
    o.guarded = d.guarded;
    memcpy(out, &o, sizeof o);
    return 0;
  }
  return -ENOSYS;
}

const bh_plugin_ops kOps = {
    sizeof(bh_plugin_ops),
    BH_PLUGIN_ABI_VERSION,
    "syscall-trace",
    sc_init,
    sc_fini,
    sc_attach,
    sc_detach,
    nullptr,
    sc_call,
};

}  // namespace

extern "C" BH_PLUGIN_EXPORT const bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }
