// The native runtime: owns plugins (dlopen'd native pieces), programs (a VM
// each, JIT-compiled) and links (one attachment of one program by one
// plugin). Control calls are serialized by one mutex; the data path (a plugin
// calling bh_program_run or the JIT entry) takes no lock.
#include "bpfhook/runtime.h"
#include "bpfhook/errmsg.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bpfhook/helpers.h"

// What a program's code calls that needs the run bracketed (see
// run_program): found by scanning its instructions once at load.
enum : uint32_t {
  kUsesTailCalls = 1u << 0,  // bpf_tail_call: the runner needs ctx_len, faults travel up
  kWalksStack = 1u << 1,     // bpf_get_stack / bpf_get_stackid: walks start at the run's origin
  kReadsProbe = 1u << 2,     // calls a helper that may read the attach point (bh_probe_ctx)
};

// Helpers known not to look at the attach point. Any other helper (override,
// func args, cookie, stack, tail call, a plugin's custom helper) might, so a
// program calling one gets BH_PROG_F_PROBE_CTX and plugins bracket its runs
// with the probe context; the rest skip that cost.
bool ignores_probe_ctx(int32_t id) {
  switch (id) {
    case 1:
    case 2:
    case 3:  // map lookup / update / delete
    case 4:
    case 5:
    case 6:
    case 7:
    case 8:  // probe_read, ktime, printk, prandom, cpu
    case 14:
    case 15:
    case 16:  // pid_tgid, uid_gid, comm
    case 25:
    case 45:  // perf_event_output, probe_read_str
    case 87:
    case 88:
    case 89:  // push / pop / peek
    case 112:
    case 113:
    case 114:
    case 115:  // probe_read_user / kernel (_str)
    case 125:
    case 130:
    case 131:
    case 132:
    case 133:
    case 134:  // boot ns, ring buffer
    case 160:
    case 165:
    case 177:
    case 182:  // coarse ns, snprintf, vprintk, strncmp
      return true;
    default: return false;
  }
}

struct bh_program {
  std::string name;
  bh_runtime *owner = nullptr;
  bh_vm *vm = nullptr;
  bh_jit_fn fast_jit = nullptr;  // set only in fast (unchecked, unbudgeted) JIT mode
  bool interpreter = false;
  uint32_t features = 0;                           // kUsesTailCalls | kWalksStack
  bool vector_clean = false;                       // BH_PROG_F_VECTOR_CLEAN (plugin.h)
  int (*map_desc)(void *, bh_vm_map *) = nullptr;  // bh_program_opts.map_desc, for the JIT's inline lookup
  std::atomic<int> refs{1};
  std::atomic<uint64_t> faults{0};
  std::mutex fault_mu;  // guards last_fault; taken only when a run faults
  std::string last_fault;
  // Maps for the lddw resolver; valid during load only.
  const bh_program_opts *loading = nullptr;
  // The maps it was loaded with, by map index: handed to plugins at attach
  // (bh_attach_opts.maps) for bh_host.maps.
  std::vector<void *> maps;

  ~bh_program() { bh_vm_destroy(vm); }
};

namespace {

struct HelperReg {
  uint32_t id;
  std::string name;
  bh_helper_fn fn;
  uint32_t flags;
};

struct Plugin {
  std::string name;
  std::string path;
  void *handle = nullptr;
  const bh_plugin_ops *ops = nullptr;
  void *state = nullptr;
};

struct Link {
  int plugin = -1;
  int plugin_id = -1;  // the id the plugin returned
  bh_program *prog = nullptr;
  bool live = false;
};

bool is_prog_array(bh_runtime *rt, const void *map);

int resolve_lddw(void *cookie, uint32_t pc, uint8_t src, int32_t imm, int32_t next_imm, uint64_t *out, char *err,
                 size_t err_len) {
  auto *prog = static_cast<bh_program *>(cookie);
  const bh_program_opts *o = prog->loading;
  const bool by_value = src == BH_PSEUDO_MAP_VALUE || src == BH_PSEUDO_MAP_IDX_VALUE;
  if (src != BH_PSEUDO_MAP_FD && src != BH_PSEUDO_MAP_IDX && !by_value) {
    return bh_fail(err, err_len, -1, "pc %u: unsupported lddw source %u", pc, src);
  }
  if (imm < 0 || static_cast<size_t>(imm) >= o->nmaps || o->maps[imm] == nullptr) {
    return bh_fail(err, err_len, -1, "pc %u: lddw refers to map %d, but the program has %zu maps", pc, imm, o->nmaps);
  }
  if (!by_value) {
    *out = reinterpret_cast<uint64_t>(o->maps[imm]);
    return 0;
  }
  if (is_prog_array(prog->owner, o->maps[imm])) {
    return bh_fail(err, err_len, -1, "pc %u: map %d is a program array, which has no value to address", pc, imm);
  }
  if (o->map_value_addr == nullptr)
    return bh_fail(err, err_len, -1, "pc %u: map value loads are not supported here", pc);
  uint64_t addr = o->map_value_addr(o->maps[imm], static_cast<uint32_t>(next_imm));
  if (addr == 0) {
    return bh_fail(err, err_len, -1, "pc %u: map %d has no value at offset %d (not an array map, or out of range)", pc,
                   imm, next_imm);
  }
  *out = addr;
  return 0;
}

void default_log(void *, int level, const char *msg) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  fprintf(stderr, "bpfhook %s: %s\n", names[level & 3], msg);
}

}  // namespace

struct bh_runtime {
  std::mutex mu;
  bh_runtime_opts opts{};
  bh_host host{};
  std::vector<HelperReg> helpers;  // from plugins, applied to every program loaded after
  std::vector<std::unique_ptr<Plugin>> plugins;
  std::vector<Link> links;
  // Programs that were ever attached or put into a program array: a probe or
  // a tail call may still be running one after detach or after its slot
  // changed, so they are freed with the runtime, not before.
  std::vector<bh_program *> retired;
  // BPF_MAP_TYPE_PROG_ARRAY maps: programs hold their address, so they live
  // as long as the runtime.
  std::vector<bh_prog_array *> prog_arrays;
};

namespace {

int register_helper_cb(void *reg_ctx, uint32_t id, const char *name,
                       uint64_t (*fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t), uint32_t flags) {
  auto *rt = static_cast<bh_runtime *>(reg_ctx);
  if (fn == nullptr || name == nullptr) return -EINVAL;
  rt->helpers.push_back({id, name, fn, flags});
  return 0;
}

void release(bh_program *prog) {
  if (prog != nullptr && prog->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete prog;
}

bool is_prog_array(bh_runtime *rt, const void *map) {
  if (rt == nullptr) return false;
  std::lock_guard<std::mutex> lock(rt->mu);
  return std::find(rt->prog_arrays.begin(), rt->prog_arrays.end(), map) != rt->prog_arrays.end();
}

// BH_PROG_F_VECTOR_CLEAN: every helper the program calls is one of the
// core's that leaves AVX/AVX-512 state alone (bh_helper_vector_clean), not
// replaced by a plugin's, and, if it calls a map helper, every map it names
// is of a type whose paths are clean too. Unknown means not clean.
// A plugin registered helper `id` (replacing the core's of that id, if any).
bool plugin_helper(bh_runtime *rt, uint32_t id) {
  std::lock_guard<std::mutex> lock(rt->mu);
  for (const HelperReg &h : rt->helpers)
    if (h.id == id) return true;
  return false;
}

bool scan_vector_clean(bh_runtime *rt, const bh_vm *vm, const bh_program_opts &o) {
  size_t n = 0;
  const bh_inst *insts = bh_vm_insts(vm, &n);
  bool uses_maps = false;
  for (size_t pc = 0; pc < n; pc++) {
    const bh_inst &i = insts[pc];
    if (i.opcode == BH_OP_CALLX) return false;
    if (i.opcode != BH_OP_CALL || i.src != BH_CALL_HELPER) continue;
    if (!bh_helper_vector_clean(i.imm) || plugin_helper(rt, uint32_t(i.imm))) return false;
    if (i.imm >= 1 && i.imm <= 3) uses_maps = true;
  }
  if (!uses_maps) return true;
  // The maps the program can hand a helper: those its lddw instructions load
  // as map pointers (as loaded, before the resolver rewrote them).
  const auto *raw = static_cast<const bh_inst *>(o.insns);
  const size_t nraw = o.insns_len / sizeof(bh_inst);
  for (size_t pc = 0; pc < nraw; pc++) {
    const bh_inst &i = raw[pc];
    if (i.opcode != BH_OP_LDDW) continue;
    pc++;  // the second half
    if (i.src != BH_PSEUDO_MAP_FD && i.src != BH_PSEUDO_MAP_IDX) continue;
    if (i.imm < 0 || size_t(i.imm) >= o.nmaps || o.maps[i.imm] == nullptr || is_prog_array(rt, o.maps[i.imm]))
      return false;
    bh_vm_map m{};
    m.sz = sizeof m;
    if (o.map_desc == nullptr || o.map_desc(o.maps[i.imm], &m) != 0 || !bh_map_type_vector_clean(m.type)) return false;
  }
  return true;
}

// The JIT's inline array lookup (bh_vm_set_inline_lookup): a map's layout
// as the maps library describes it; never a program array, which is ours.
int inline_layout(void *cookie, const void *map, bh_vm_map *out) {
  auto *prog = static_cast<bh_program *>(cookie);
  if (prog->map_desc == nullptr || is_prog_array(prog->owner, map)) return -1;
  return prog->map_desc(const_cast<void *>(map), out);
}

uint32_t scan_features(const bh_vm *vm) {
  size_t n = 0;
  const bh_inst *insts = bh_vm_insts(vm, &n);
  uint32_t features = 0;
  for (size_t pc = 0; pc < n; pc++) {
    const bh_inst &i = insts[pc];
    if (i.opcode == BH_OP_CALLX) return kUsesTailCalls | kWalksStack | kReadsProbe;  // id in a register: anything
    if (i.opcode != BH_OP_CALL || i.src != BH_CALL_HELPER) continue;
    if (!ignores_probe_ctx(i.imm)) features |= kReadsProbe;
    if (i.imm == BH_FN_TAIL_CALL) features |= kUsesTailCalls;
    if (i.imm == BH_FN_GET_STACK || i.imm == BH_FN_GET_STACKID) features |= kWalksStack;
  }
  return features;
}

// The run a tail call continues, per thread. bpf_tail_call's runner gets
// (prog, ctx) only: runs of programs that tail-call note their context here
// so the target gets the same ctx_len, and a target's fault waits here for
// its caller to report it (the helper can only end the caller with an r0).
struct TailRun {
  void *ctx;
  size_t ctx_len;
  bool pending;  // `fault` is a tail-call target's, not yet reported by its caller
  bh_fault fault;
};
thread_local TailRun t_tail;

// bh_runtime_thread_fault's message. A fixed array: set on the (cold) fault
// path only, never allocated.
thread_local char t_last_fault[256];

void note_fault(bh_program *prog, const bh_fault &fault) {
  prog->faults.fetch_add(1, std::memory_order_relaxed);
  snprintf(t_last_fault, sizeof t_last_fault, "prog '%s': %s", prog->name.c_str(), fault.message);
  std::lock_guard<std::mutex> lock(prog->fault_mu);
  prog->last_fault = fault.message;
}

int run_vm(bh_program *prog, void *ctx, size_t ctx_len, uint64_t *ret, bh_fault *fault) {
  if (prog->fast_jit != nullptr) {
    *ret = prog->fast_jit(ctx, ctx_len);
    return 0;
  }
  // Attached programs run with no caller to report to (fault == NULL): their
  // faults are still counted and the last one kept for bh_program_faults.
  bh_fault local;
  bh_fault *f = fault != nullptr ? fault : &local;
  int rc =
      prog->interpreter ? bh_vm_exec(prog->vm, ctx, ctx_len, ret, f) : bh_vm_exec_jit(prog->vm, ctx, ctx_len, ret, f);
  if (rc < 0) {
    note_fault(prog, *f);
    return -EFAULT;
  }
  return 0;
}

// Runs of programs with features, bracketed. `tail`: a tail call's target,
// which continues its caller's run (same origin for stack walks).
__attribute__((noinline)) int run_program(bh_program *prog, void *ctx, size_t ctx_len, uint64_t *ret, bh_fault *fault,
                                          bool tail) {
  bh_stack_origin origin{};
  TailRun &t = t_tail;
  if (!tail) {
    origin = bh_stack_origin_mark();
    // A pending fault belongs to the run that is ending when it is set; none
    // can be left for a run that starts (a caller that ran outside this
    // function, say a plugin calling fast JIT code directly, leaves one).
    t.pending = false;
  }
  void *const saved_ctx = t.ctx;
  const size_t saved_len = t.ctx_len;
  t.ctx = ctx;
  t.ctx_len = ctx_len;
  int rc = run_vm(prog, ctx, ctx_len, ret, fault);
  t.ctx = saved_ctx;
  t.ctx_len = saved_len;
  if (!tail) bh_stack_origin_restore(origin);
  if (rc == 0 && t.pending) {
    // A tail-called program faulted and the helper ended us with its r0:
    // the run as a whole faulted.
    t.pending = false;
    note_fault(prog, t.fault);
    if (fault != nullptr) *fault = t.fault;
    *ret = 0;
    return -EFAULT;
  }
  return rc;
}

// bh_prog_array's runner: the target runs on the caller's context, with the
// caller's ctx_len when the context is the caller's own (a program could pass
// another pointer as r1; then nothing is known about its length, and checked
// mode admits no access to it).
uint64_t tail_call_run(void *target, void *ctx) {
  auto *prog = static_cast<bh_program *>(target);
  TailRun &t = t_tail;
  const size_t ctx_len = ctx == t.ctx ? t.ctx_len : 0;
  uint64_t r0 = 0;
  bh_fault f{};
  if (run_program(prog, ctx, ctx_len, &r0, &f, true) == 0) return r0;
  // Name the target once, at the innermost tail call of a chain.
  static constexpr char kPrefix[] = "tail call to '";
  if (strncmp(f.message, kPrefix, sizeof kPrefix - 1) != 0) {
    const std::string msg = kPrefix + prog->name + "': " + f.message;
    snprintf(f.message, sizeof f.message, "%s", msg.c_str());  // truncated to the field
  }
  t.fault = f;
  t.pending = true;
  return 0;
}

}  // namespace

extern "C" {

bh_runtime *bh_runtime_create(const struct bh_runtime_opts *opts) {
  auto *rt = new bh_runtime();
  if (opts != nullptr) {
    memcpy(&rt->opts, opts, std::min(opts->sz, sizeof(rt->opts)));
  }
  rt->opts.sz = sizeof(rt->opts);
  rt->host.sz = sizeof(rt->host);
  rt->host.abi_version = BH_PLUGIN_ABI_VERSION;
  rt->host.log = rt->opts.log != nullptr ? rt->opts.log : default_log;
  rt->host.host_ctx = rt->opts.log_ctx;
  rt->host.probe = rt->opts.probe;
  rt->host.maps = rt->opts.maps;
  return rt;
}

void bh_runtime_destroy(bh_runtime *rt) {
  if (rt == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(rt->mu);
    // Detach in reverse order of attach, then finalize plugins.
    for (size_t i = rt->links.size(); i-- > 0;) {
      Link &l = rt->links[i];
      if (!l.live) continue;
      const Plugin &p = *rt->plugins[l.plugin];
      p.ops->detach(p.state, l.plugin_id);
      l.live = false;
    }
    for (auto &p : rt->plugins) {
      if (p->ops->fini != nullptr) p->ops->fini(p->state);
      // No dlclose: a thread may still be returning through a plugin's code.
    }
    for (bh_program *prog : rt->retired) release(prog);
    for (bh_prog_array *arr : rt->prog_arrays) bh_prog_array_destroy(arr);
  }
  delete rt;
}

namespace {
// Closes a plugin library on every failure path of open_plugin; released
// once the plugin is kept.
struct DlHandle {
  void *h = nullptr;
  explicit DlHandle(void *handle) : h(handle) {}
  ~DlHandle() {
    if (h != nullptr) dlclose(h);
  }
  DlHandle(const DlHandle &) = delete;
  DlHandle &operator=(const DlHandle &) = delete;
  void *release() {
    void *r = h;
    h = nullptr;
    return r;
  }
};
}  // namespace

int bh_runtime_open_plugin(bh_runtime *rt, const char *path, const char *expect_name, unsigned flags, char *err,
                           size_t err_len) {
  std::lock_guard<std::mutex> lock(rt->mu);
  for (size_t i = 0; i < rt->plugins.size(); i++) {
    if (rt->plugins[i]->path == path) return static_cast<int>(i);
  }
  // RTLD_LOCAL unless the plugin asked otherwise: a plugin's symbols must not
  // interpose on libraries loaded later. A plugin whose public C API others
  // find through dlsym(RTLD_DEFAULT, ...) (the simple plugin's trigger) asks
  // for RTLD_GLOBAL.
  const int mode = RTLD_NOW | ((flags & BH_RUNTIME_PLUGIN_GLOBAL) != 0 ? RTLD_GLOBAL : RTLD_LOCAL);
  DlHandle handle(dlopen(path, mode));
  if (handle.h == nullptr) return bh_fail(err, err_len, -ENOENT, "cannot load plugin library %s: %s", path, dlerror());
  auto entry = reinterpret_cast<bh_plugin_entry_fn>(dlsym(handle.h, BH_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    return bh_fail(err, err_len, -EINVAL, "%s does not export %s, so it is not a bpfhook plugin", path,
                   BH_PLUGIN_ENTRY_SYMBOL);
  }
  const bh_plugin_ops *ops = entry();
  if (ops == nullptr || ops->sz < offsetof(bh_plugin_ops, register_helpers)) {
    return bh_fail(err, err_len, -EINVAL, "%s: %s returned no usable operations table", path, BH_PLUGIN_ENTRY_SYMBOL);
  }
  if (ops->abi_version != BH_PLUGIN_ABI_VERSION) {
    return bh_fail(err, err_len, -EPROTO, "%s: plugin ABI %u, core speaks ABI %u; rebuild the plugin", path,
                   ops->abi_version, BH_PLUGIN_ABI_VERSION);
  }
  if (expect_name != nullptr && (ops->name == nullptr || strcmp(ops->name, expect_name) != 0)) {
    return bh_fail(err, err_len, -EINVAL, "%s: native piece is named '%s', the TypeScript side '%s'", path,
                   ops->name != nullptr ? ops->name : "(null)", expect_name);
  }
  if (ops->attach == nullptr || ops->detach == nullptr) {
    return bh_fail(err, err_len, -EINVAL, "%s: plugin '%s' lacks attach or detach", path, ops->name);
  }
  auto p = std::make_unique<Plugin>();
  p->name = ops->name;
  p->path = path;
  p->ops = ops;
  char msg[1024] = {0};
  if (ops->init != nullptr) {
    int rc = ops->init(&p->state, &rt->host, msg, sizeof msg);
    if (rc < 0) return bh_fail(err, err_len, rc, "[%s] init failed: %s", p->name.c_str(), msg);
  }
  if (BH_SZ_HAS(ops, bh_plugin_ops, register_helpers) && ops->register_helpers != nullptr) {
    size_t before = rt->helpers.size();
    int rc = ops->register_helpers(p->state, register_helper_cb, rt);
    if (rc < 0) {
      rt->helpers.resize(before);
      if (ops->fini != nullptr) ops->fini(p->state);
      return bh_fail(err, err_len, rc, "[%s] register_helpers failed (%d)", p->name.c_str(), rc);
    }
  }
  p->handle = handle.release();
  rt->plugins.push_back(std::move(p));
  return static_cast<int>(rt->plugins.size() - 1);
}

int64_t bh_runtime_plugin_call(bh_runtime *rt, int plugin, const char *name, const void *in, size_t in_len, void *out,
                               size_t out_len) {
  const Plugin *p;
  {
    std::lock_guard<std::mutex> lock(rt->mu);
    if (plugin < 0 || static_cast<size_t>(plugin) >= rt->plugins.size()) return -ENOENT;
    p = rt->plugins[plugin].get();
  }
  if (!BH_SZ_HAS(p->ops, bh_plugin_ops, call) || p->ops->call == nullptr) return -ENOSYS;
  t_last_fault[0] = '\0';
  // Not under the lock: a call may run programs (the simple plugin's trigger).
  return p->ops->call(p->state, name, in, in_len, out, out_len);
}

bh_program *bh_runtime_load_program(bh_runtime *rt, const struct bh_program_opts *opts, char *err, size_t err_len) {
  if (opts == nullptr || opts->sz < offsetof(bh_program_opts, maps)) {
    bh_fail(err, err_len, -EINVAL, "bad program options");
    return nullptr;
  }
  bh_program_opts o{};
  memcpy(&o, opts, std::min(opts->sz, sizeof o));
  const char *name = o.name != nullptr ? o.name : "(anonymous)";
  auto prog = std::make_unique<bh_program>();
  prog->name = name;
  prog->owner = rt;
  prog->interpreter = o.interpreter != 0;
  prog->vm = bh_vm_create();
  if (prog->vm == nullptr) {
    bh_fail(err, err_len, -ENOMEM, "prog '%s': out of memory", name);
    return nullptr;
  }
  char msg[1024] = {0};
  if (rt->opts.register_defaults != nullptr &&
      rt->opts.register_defaults(rt->opts.register_defaults_cookie, prog->vm) < 0) {
    bh_fail(err, err_len, -EINVAL, "prog '%s': registering the standard helpers failed", name);
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(rt->mu);
    for (const HelperReg &h : rt->helpers) {
      if (bh_vm_register_helper(prog->vm, h.id, h.name.c_str(), h.fn, h.flags) < 0) {
        bh_fail(err, err_len, -EINVAL, "prog '%s': cannot register helper %u '%s'", name, h.id, h.name.c_str());
        return nullptr;
      }
    }
  }
  bh_vm_set_lddw_resolver(prog->vm, resolve_lddw, prog.get());
  bh_vm_set_checked(prog->vm, o.checked);
  bh_vm_set_budget(prog->vm, o.budget);
  if (o.region_base != nullptr && o.region_len > 0) bh_vm_add_region(prog->vm, o.region_base, o.region_len, 1);
  if (o.checked) {
    // The maps helper arguments may name (BH_ARG_CONST_MAP_PTR): this
    // program's own, with their types and sizes.
    for (size_t i = 0; i < o.nmaps; i++) {
      if (o.maps[i] == nullptr) continue;
      bh_vm_map m{};
      if (is_prog_array(rt, o.maps[i])) {
        m.type = 3;  // BPF_MAP_TYPE_PROG_ARRAY: u32 index -> program
        m.key_size = 4;
        m.value_size = 4;
      } else if (o.map_desc == nullptr || o.map_desc(o.maps[i], &m) != 0) {
        continue;
      }
      m.sz = sizeof m;
      m.handle = o.maps[i];
      if (bh_vm_add_map(prog->vm, &m) != 0) {
        bh_fail(err, err_len, -ENOMEM, "prog '%s': out of memory", name);
        return nullptr;
      }
    }
  }
  if (o.maps != nullptr) prog->maps.assign(o.maps, o.maps + o.nmaps);
  prog->loading = &o;
  int rc = bh_vm_load(prog->vm, o.insns, o.insns_len, msg, sizeof msg);
  prog->loading = nullptr;
  if (rc < 0) {
    bh_fail(err, err_len, -EINVAL, "prog '%s': %s", name, msg);
    return nullptr;
  }
  prog->features = scan_features(prog->vm);
  prog->vector_clean = scan_vector_clean(rt, prog->vm, o);
  if (!prog->interpreter) {
    // Helper 1 is the core's lookup unless a plugin registered its own.
    prog->map_desc = o.map_desc;
    if (!plugin_helper(rt, 1) && o.map_desc != nullptr) bh_vm_set_inline_lookup(prog->vm, inline_layout, prog.get());
    bh_jit_fn fn = bh_vm_compile(prog->vm, msg, sizeof msg);
    if (fn == nullptr) {
      bh_fail(err, err_len, -EINVAL, "prog '%s': JIT: %s", name, msg);
      return nullptr;
    }
    if (!o.checked && o.budget == 0) prog->fast_jit = fn;
  }
  return prog.release();
}

void bh_program_release(bh_program *prog) { release(prog); }

int bh_program_run_fault(bh_program *prog, void *ctx, size_t ctx_len, uint64_t *ret, bh_fault *fault) {
  if (__builtin_expect(prog->features != 0, 0)) return run_program(prog, ctx, ctx_len, ret, fault, false);
  return run_vm(prog, ctx, ctx_len, ret, fault);
}

int bh_program_run(void *prog, void *ctx, size_t ctx_len, uint64_t *ret) {
  return bh_program_run_fault(static_cast<bh_program *>(prog), ctx, ctx_len, ret, nullptr);
}

const bh_vm *bh_program_vm(const bh_program *prog) { return prog->vm; }

size_t bh_runtime_thread_fault(char *buf, size_t len) {
  if (buf != nullptr && len > 0) snprintf(buf, len, "%s", t_last_fault);
  return strlen(t_last_fault);
}

uint64_t bh_program_faults(bh_program *prog, char *last, size_t last_len) {
  if (last != nullptr && last_len > 0) {
    std::lock_guard<std::mutex> lock(prog->fault_mu);
    snprintf(last, last_len, "%s", prog->last_fault.c_str());
  }
  return prog->faults.load(std::memory_order_relaxed);
}

const char *bh_program_name(const bh_program *prog) { return prog->name.c_str(); }

bh_prog_array *bh_runtime_prog_array_create(bh_runtime *rt, uint32_t max_entries, char *err, size_t err_len) {
  if (max_entries == 0) {
    bh_fail(err, err_len, -EINVAL, "program array: max_entries must be at least 1");
    return nullptr;
  }
  bh_prog_array *arr = bh_prog_array_create(max_entries, tail_call_run);
  if (arr == nullptr) {
    bh_fail(err, err_len, -ENOMEM, "program array of %u slots: out of memory", max_entries);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(rt->mu);
  rt->prog_arrays.push_back(arr);
  return arr;
}

int bh_runtime_prog_array_update(bh_runtime *rt, bh_prog_array *arr, uint32_t index, bh_program *prog) {
  if (arr == nullptr || prog == nullptr) return -EINVAL;
  std::lock_guard<std::mutex> lock(rt->mu);
  if (std::find(rt->prog_arrays.begin(), rt->prog_arrays.end(), arr) == rt->prog_arrays.end()) return -ENOENT;
  if (prog->owner != rt) return -EXDEV;
  if (index >= bh_prog_array_max_entries(arr)) return -E2BIG;
  // Kept until the runtime goes: once in a slot, a tail call may be running
  // it on some thread whatever happens to the slot later.
  if (std::find(rt->retired.begin(), rt->retired.end(), prog) == rt->retired.end()) {
    prog->refs.fetch_add(1, std::memory_order_relaxed);
    rt->retired.push_back(prog);
  }
  return bh_prog_array_update(arr, index, prog);
}

int bh_runtime_prog_array_delete(bh_runtime *rt, bh_prog_array *arr, uint32_t index) {
  std::lock_guard<std::mutex> lock(rt->mu);
  if (std::find(rt->prog_arrays.begin(), rt->prog_arrays.end(), arr) == rt->prog_arrays.end()) return -ENOENT;
  return bh_prog_array_delete(arr, index);
}

bh_program *bh_runtime_prog_array_lookup(bh_runtime *rt, bh_prog_array *arr, uint32_t index) {
  std::lock_guard<std::mutex> lock(rt->mu);
  if (std::find(rt->prog_arrays.begin(), rt->prog_arrays.end(), arr) == rt->prog_arrays.end()) return nullptr;
  return static_cast<bh_program *>(bh_prog_array_lookup(arr, index));
}

int bh_runtime_attach(bh_runtime *rt, int plugin, bh_program *prog, const struct bh_runtime_attach_opts *opts,
                      char *err, size_t err_len) {
  if (opts == nullptr || prog == nullptr) return bh_fail(err, err_len, -EINVAL, "attach: missing program or options");
  std::lock_guard<std::mutex> lock(rt->mu);
  if (plugin < 0 || static_cast<size_t>(plugin) >= rt->plugins.size()) {
    return bh_fail(err, err_len, -ENOENT, "attach: no plugin %d", plugin);
  }
  const Plugin &p = *rt->plugins[plugin];
  bh_attach_opts a{};
  a.sz = sizeof a;
  a.attach_type = opts->attach_type;
  a.private_data = opts->private_data;
  a.private_data_len = opts->private_data_len;
  a.run = bh_program_run;
  a.prog = prog;
  a.jit = prog->fast_jit;
  a.cookie = opts->cookie;
  a.prog_name = prog->name.c_str();
  a.prog_flags =
      ((prog->features & kReadsProbe) != 0 ? BH_PROG_F_PROBE_CTX : 0u) |
      (prog->vector_clean && prog->fast_jit != nullptr ? BH_PROG_F_VECTOR_CLEAN : 0u) |
      (prog->fast_jit != nullptr && !bh_vm_jit_reaches_c(prog->vm) ? BH_PROG_F_GENERAL_REGS | BH_PROG_F_VECTOR_CLEAN
                                                                   : 0u);
  a.maps = prog->maps.data();
  a.nmaps = prog->maps.size();
  char msg[1024] = {0};
  int id = p.ops->attach(p.state, &a, msg, sizeof msg);
  if (id < 0) return bh_fail(err, err_len, id, "[%s] prog '%s': %s", p.name.c_str(), prog->name.c_str(), msg);
  prog->refs.fetch_add(1, std::memory_order_relaxed);
  rt->retired.push_back(prog);
  rt->links.push_back({plugin, id, prog, true});
  return static_cast<int>(rt->links.size() - 1);
}

int bh_runtime_detach(bh_runtime *rt, int link) {
  std::lock_guard<std::mutex> lock(rt->mu);
  if (link < 0 || static_cast<size_t>(link) >= rt->links.size() || !rt->links[link].live) return -ENOENT;
  Link &l = rt->links[link];
  const Plugin &p = *rt->plugins[l.plugin];
  int rc = p.ops->detach(p.state, l.plugin_id);
  l.live = false;
  return rc < 0 ? rc : 0;
}

size_t bh_runtime_link_count(const bh_runtime *rt) {
  size_t n = 0;
  for (const Link &l : rt->links) n += l.live ? 1 : 0;
  return n;
}

}  // extern "C"
