// The simple plugin: named custom event sources, each with the programs
// attached to it. Private data is the source name as a NUL-terminated string.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bpfhook/plugin.h"
#include "bpfhook/errmsg.h"
#include "bpfhook/simple.h"

namespace {

struct Attachment {
  int id;
  bh_prog_run_fn run;
  void *prog;
  uint64_t cookie;
  bool reads_probe;  // the program may read the attach point (its cookie)
};

struct State {
  const bh_probe_api *probe = nullptr;  // so bpf_get_attach_cookie sees the cookie
  std::shared_mutex mu;                 // triggers read, attach/detach write
  std::map<std::string, std::vector<Attachment>, std::less<>> sources;
  int next_id = 0;
};

// Every live plugin state (one per runtime). The trigger API is a plain C
// function any code can call, so it needs a process-wide way to reach them.
std::shared_mutex g_states_mu;  // triggers share it; init and fini take it alone
std::vector<State *> g_states;

int simple_init(void **state, const bh_host *host, char *, size_t) {
  auto *s = new State();
  if (BH_SZ_HAS(host, bh_host, probe)) s->probe = host->probe;
  std::unique_lock<std::shared_mutex> lock(g_states_mu);
  g_states.push_back(s);
  *state = s;
  return 0;
}

void simple_fini(void *state) {
  auto *s = static_cast<State *>(state);
  {
    std::unique_lock<std::shared_mutex> lock(g_states_mu);
    for (auto it = g_states.begin(); it != g_states.end(); ++it) {
      if (*it == s) {
        g_states.erase(it);
        break;
      }
    }
  }
  delete s;
}

int simple_attach(void *state, const bh_attach_opts *opts, char *err, size_t err_len) {
  auto *s = static_cast<State *>(state);
  if (!BH_SZ_HAS(opts, bh_attach_opts, prog_name) || opts->run == nullptr) {
    return bh_fail(err, err_len, -EINVAL, "simple: attach options too old or without a program");
  }
  if (opts->attach_type != BH_ATTACH_SIMPLE) return bh_fail(err, err_len, -EINVAL, "simple: unknown attach type");
  const char *data = static_cast<const char *>(opts->private_data);
  size_t n = opts->private_data_len;
  if (data == nullptr || n < 2 || data[n - 1] != '\0' || strlen(data) != n - 1) {
    return bh_fail(err, err_len, -EINVAL, "simple: private data must be a non-empty NUL-terminated source name");
  }
  const bool reads_probe =
      !BH_SZ_HAS(opts, bh_attach_opts, prog_flags) || (opts->prog_flags & BH_PROG_F_PROBE_CTX) != 0;
  std::unique_lock<std::shared_mutex> lock(s->mu);
  int id = s->next_id++;
  s->sources[std::string(data, n - 1)].push_back({id, opts->run, opts->prog, opts->cookie, reads_probe});
  return id;
}

int simple_detach(void *state, int id) {
  auto *s = static_cast<State *>(state);
  std::unique_lock<std::shared_mutex> lock(s->mu);
  for (auto it = s->sources.begin(); it != s->sources.end(); ++it) {
    auto &list = it->second;
    for (auto a = list.begin(); a != list.end(); ++a) {
      if (a->id == id) {
        list.erase(a);
        if (list.empty()) s->sources.erase(it);
        return 0;
      }
    }
  }
  return -ENOENT;
}

int trigger_state(State *s, const char *source, void *data, size_t len, uint64_t *ret, int *count) {
  std::shared_lock<std::shared_mutex> lock(s->mu);
  auto it = s->sources.find(source);
  if (it == s->sources.end()) return 0;
  // The verifier proves programs against BH_SIMPLE_CONTEXT_SIZE bytes
  // (the TS side's contextLayout), and fast mode does not check bounds at
  // run time: a shorter context is run from a zero-padded copy, so every
  // byte a verified program may touch exists. The run is still told the
  // caller's length: checked mode faults beyond it, as before. Writes come
  // back to the caller's bytes below.
  alignas(16) unsigned char padded[BH_SIMPLE_CONTEXT_SIZE];
  void *caller_data = data;
  const bool pad = len < sizeof padded;
  if (pad) {
    if (len > 0) memcpy(padded, data, len);
    memset(padded + len, 0, sizeof padded - len);
    data = padded;
  }
  int rc = 0;
  for (const Attachment &a : it->second) {
    uint64_t r0 = 0;
    bh_probe_ctx pc{};
    pc.cookie = a.cookie;
    pc.regs = data;
    pc.nr_args = -1;
    const bool bracket = a.reads_probe && s->probe != nullptr;
    if (bracket) s->probe->enter(&pc);
    int run_rc = a.run(a.prog, data, len, &r0);
    if (bracket) s->probe->leave();
    if (run_rc < 0) {
      rc = run_rc;
      continue;
    }
    if (ret != nullptr) *ret = r0;
    (*count)++;
  }
  if (pad && len > 0) memcpy(caller_data, padded, len);
  return rc;
}

// call("trigger"): in = source name, NUL, then the context bytes; out = u64 r0.
int64_t simple_call(void *state, const char *name, const void *in, size_t in_len, void *out, size_t out_len) {
  if (strcmp(name, "trigger") != 0) return -ENOSYS;
  const char *bytes = static_cast<const char *>(in);
  const void *nul = in != nullptr ? memchr(in, '\0', in_len) : nullptr;
  if (nul == nullptr) return -EINVAL;
  size_t name_len = static_cast<const char *>(nul) - bytes;
  // The context is a private copy: programs may write it, `in` is const.
  std::vector<char> ctx(bytes + name_len + 1, bytes + in_len);
  uint64_t r0 = 0;
  int count = 0;
  int rc = trigger_state(static_cast<State *>(state), bytes, ctx.data(), ctx.size(), &r0, &count);
  if (out != nullptr && out_len >= sizeof r0) memcpy(out, &r0, sizeof r0);
  if (out != nullptr && out_len >= sizeof r0 + ctx.size())
    memcpy(static_cast<char *>(out) + sizeof r0, ctx.data(), ctx.size());
  return rc < 0 ? rc : count;
}

const bh_plugin_ops kOps = {
    sizeof(bh_plugin_ops), BH_PLUGIN_ABI_VERSION, "simple", simple_init, simple_fini,
    simple_attach,         simple_detach,         nullptr,  simple_call,
};

}  // namespace

extern "C" {

BH_PLUGIN_EXPORT const bh_plugin_ops *bh_plugin_entry(void) { return &kOps; }

BH_PLUGIN_EXPORT int bh_simple_trigger(const char *source, void *data, size_t len, uint64_t *ret) {
  if (source == nullptr) return -EINVAL;
  int count = 0;
  int rc = 0;
  std::shared_lock<std::shared_mutex> lock(g_states_mu);
  for (State *s : g_states) {
    int r = trigger_state(s, source, data, len, ret, &count);
    if (r < 0) rc = r;
  }
  return rc < 0 ? rc : count;
}

}  // extern "C"
