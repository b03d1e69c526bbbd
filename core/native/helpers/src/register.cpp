// The helper table and bh_helpers_register_all.

#include <errno.h>
#include <string.h>

#include <cstddef>

#include "internal.h"

namespace {

// Sorted by id. Aliases (probe_read_user / _kernel and their _str forms) are
// the same functions: one address space in user space.
const bh_helper_desc kHelpers[] = {
    {BH_FN_PROBE_READ, "bpf_probe_read", bh_helper_probe_read, 0},
    {BH_FN_KTIME_GET_NS, "bpf_ktime_get_ns", bh_helper_ktime_get_ns, 0},
    {BH_FN_TRACE_PRINTK, "bpf_trace_printk", bh_helper_trace_printk, 0},
    {BH_FN_GET_PRANDOM_U32, "bpf_get_prandom_u32", bh_helper_get_prandom_u32, 0},
    {BH_FN_GET_SMP_PROCESSOR_ID, "bpf_get_smp_processor_id", bh_helper_get_smp_processor_id, 0},
    {BH_FN_TAIL_CALL, "bpf_tail_call", bh_helper_tail_call, BH_HELPER_MAY_EXIT},
    {BH_FN_GET_CURRENT_PID_TGID, "bpf_get_current_pid_tgid", bh_helper_get_current_pid_tgid, 0},
    {BH_FN_GET_CURRENT_UID_GID, "bpf_get_current_uid_gid", bh_helper_get_current_uid_gid, 0},
    {BH_FN_GET_CURRENT_COMM, "bpf_get_current_comm", bh_helper_get_current_comm, 0},
    {BH_FN_PROBE_READ_STR, "bpf_probe_read_str", bh_helper_probe_read_str, 0},
    {BH_FN_OVERRIDE_RETURN, "bpf_override_return", bh_helper_override_return, 0},
    {BH_FN_GET_STACK, "bpf_get_stack", bh_helper_get_stack, 0},
    {BH_FN_PROBE_READ_USER, "bpf_probe_read_user", bh_helper_probe_read, 0},
    {BH_FN_PROBE_READ_KERNEL, "bpf_probe_read_kernel", bh_helper_probe_read, 0},
    {BH_FN_PROBE_READ_USER_STR, "bpf_probe_read_user_str", bh_helper_probe_read_str, 0},
    {BH_FN_PROBE_READ_KERNEL_STR, "bpf_probe_read_kernel_str", bh_helper_probe_read_str, 0},
    {BH_FN_KTIME_GET_BOOT_NS, "bpf_ktime_get_boot_ns", bh_helper_ktime_get_boot_ns, 0},
    {BH_FN_KTIME_GET_COARSE_NS, "bpf_ktime_get_coarse_ns", bh_helper_ktime_get_coarse_ns, 0},
    {BH_FN_SNPRINTF, "bpf_snprintf", bh_helper_snprintf, 0},
    {BH_FN_GET_FUNC_IP, "bpf_get_func_ip", bh_helper_get_func_ip, 0},
    {BH_FN_GET_ATTACH_COOKIE, "bpf_get_attach_cookie", bh_helper_get_attach_cookie, 0},
    {BH_FN_TRACE_VPRINTK, "bpf_trace_vprintk", bh_helper_trace_vprintk, 0},
    {BH_FN_LOOP, "bpf_loop", bh_helper_loop, BH_HELPER_CALLS_BACK},
    {BH_FN_STRNCMP, "bpf_strncmp", bh_helper_strncmp, 0},
    {BH_FN_GET_FUNC_ARG, "bpf_get_func_arg", bh_helper_get_func_arg, 0},
    {BH_FN_GET_FUNC_RET, "bpf_get_func_ret", bh_helper_get_func_ret, 0},
    {BH_FN_GET_FUNC_ARG_CNT, "bpf_get_func_arg_cnt", bh_helper_get_func_arg_cnt, 0},
    {BH_FN_GET_RETVAL, "bpf_get_retval", bh_helper_get_retval, 0},
    {BH_FN_SET_RETVAL, "bpf_set_retval", bh_helper_set_retval, 0},
};

// Argument prototypes for checked mode, as the kernel's bpf_func_proto of
// each helper. Pointers the helper reads with its own fault guard
// (probe_read's source, printk's %s arguments) are ANYTHING.
constexpr uint8_t kAny = BH_ARG_ANYTHING, kCtx = BH_ARG_PTR_TO_CTX, kMem = BH_ARG_PTR_TO_MEM,
                  kMemOrNull = BH_ARG_PTR_TO_MEM_OR_NULL, kOut = BH_ARG_PTR_TO_UNINIT_MEM, kSize = BH_ARG_CONST_SIZE,
                  kSize0 = BH_ARG_CONST_SIZE_OR_ZERO, kLong = BH_ARG_PTR_TO_LONG, kStr = BH_ARG_PTR_TO_CONST_STR,
                  kMap = BH_ARG_CONST_MAP_PTR, kFunc = BH_ARG_PTR_TO_FUNC, kStackOrNull = BH_ARG_PTR_TO_STACK_OR_NULL;

struct Proto {
  uint32_t id;
  bh_helper_proto proto;
};

constexpr uint64_t kProgArray = uint64_t(1) << 3;

#define BH_PROTO(ID, A1, N1, A2, N2, A3, N3, A4, N4, A5, N5, MAPS)                \
  {                                                                               \
    ID, {                                                                         \
      sizeof(bh_helper_proto), {A1, A2, A3, A4, A5}, MAPS, { N1, N2, N3, N4, N5 } \
    }                                                                             \
  }
#define BH_NOARGS(ID) BH_PROTO(ID, 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0)

const Proto kProtos[] = {
    BH_PROTO(BH_FN_PROBE_READ, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_NOARGS(BH_FN_KTIME_GET_NS),
    BH_PROTO(BH_FN_TRACE_PRINTK, kMem, "fmt", kSize, "fmt_size", kAny, "arg1", kAny, "arg2", kAny, "arg3", 0),
    BH_NOARGS(BH_FN_GET_PRANDOM_U32),
    BH_NOARGS(BH_FN_GET_SMP_PROCESSOR_ID),
    BH_PROTO(BH_FN_TAIL_CALL, kCtx, "ctx", kMap, "prog_array", kAny, "index", 0, nullptr, 0, nullptr, kProgArray),
    BH_NOARGS(BH_FN_GET_CURRENT_PID_TGID),
    BH_NOARGS(BH_FN_GET_CURRENT_UID_GID),
    BH_PROTO(BH_FN_GET_CURRENT_COMM, kOut, "buf", kSize, "size", 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_PROBE_READ_STR, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_OVERRIDE_RETURN, kCtx, "ctx", kAny, "rc", 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_GET_STACK, kCtx, "ctx", kOut, "buf", kSize0, "size", kAny, "flags", 0, nullptr, 0),
    BH_PROTO(BH_FN_PROBE_READ_USER, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_PROBE_READ_KERNEL, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_PROBE_READ_USER_STR, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_PROBE_READ_KERNEL_STR, kOut, "dst", kSize0, "size", kAny, "unsafe_ptr", 0, nullptr, 0, nullptr, 0),
    BH_NOARGS(BH_FN_KTIME_GET_BOOT_NS),
    BH_NOARGS(BH_FN_KTIME_GET_COARSE_NS),
    BH_PROTO(BH_FN_SNPRINTF, kOut, "str", kSize0, "str_size", kStr, "fmt", kMemOrNull, "data", kSize0, "data_len", 0),
    BH_PROTO(BH_FN_GET_FUNC_IP, kCtx, "ctx", 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_GET_ATTACH_COOKIE, kCtx, "ctx", 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_TRACE_VPRINTK, kMem, "fmt", kSize, "fmt_size", kMemOrNull, "data", kSize0, "data_len", 0, nullptr,
             0),
    BH_PROTO(BH_FN_LOOP, kAny, "nr_loops", kFunc, "callback_fn", kStackOrNull, "callback_ctx", kAny, "flags", 0,
             nullptr, 0),
    BH_PROTO(BH_FN_STRNCMP, kMem, "s1", kSize, "s1_sz", kStr, "s2", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_GET_FUNC_ARG, kCtx, "ctx", kAny, "n", kLong, "value", 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_GET_FUNC_RET, kCtx, "ctx", kLong, "value", 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_PROTO(BH_FN_GET_FUNC_ARG_CNT, kCtx, "ctx", 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0),
    BH_NOARGS(BH_FN_GET_RETVAL),
    BH_PROTO(BH_FN_SET_RETVAL, kAny, "retval", 0, nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0),
};
#undef BH_PROTO
#undef BH_NOARGS

// libbpf's OPTS_VALID: the caller's struct may be newer than ours, provided
// everything past what we know is zero.
bool opts_valid(const bh_helpers_opts *o) {
  if (o == nullptr) return true;
  if (o->sz < sizeof(size_t)) return false;
  const auto *bytes = reinterpret_cast<const unsigned char *>(o);
  for (size_t k = sizeof(bh_helpers_opts); k < o->sz; k++)
    if (bytes[k] != 0) return false;
  return true;
}

// A field is present if the caller's struct is long enough to hold it.
#define BH_OPT(o, field, dflt) \
  ((o) != nullptr && (o)->sz >= offsetof(bh_helpers_opts, field) + sizeof((o)->field) ? (o)->field : (dflt))

}  // namespace

extern "C" {

const bh_helper_proto *bh_helpers_proto(uint32_t id) {
  for (const Proto &p : kProtos) {
    if (p.id == id) return &p.proto;
  }
  return nullptr;
}

const bh_helper_desc *bh_helpers_table(size_t *count) {
  if (count != nullptr) *count = sizeof kHelpers / sizeof kHelpers[0];
  return kHelpers;
}

int bh_helpers_register_all(bh_vm *vm, const bh_helpers_opts *opts) {
  if (vm == nullptr || !opts_valid(opts)) return -EINVAL;
  const int safe_read = BH_OPT(opts, safe_read, 0);
  const bh_trace_sink_fn sink = BH_OPT(opts, trace_sink, nullptr);
  void *const sink_cookie = BH_OPT(opts, trace_sink_cookie, nullptr);
  const uint32_t *skip = BH_OPT(opts, skip_ids, nullptr);
  const size_t skip_cnt = skip != nullptr ? BH_OPT(opts, skip_cnt, size_t(0)) : 0;

  if (safe_read != 0) {
    const int rc = bh_helpers_set_safe_read(safe_read);
    if (rc < 0) return rc;
  } else {
    // Settle the backend now, at load time, rather than inside the first probe.
    bh_helpers_safe_read_mode();
  }
  if (sink != nullptr) bh_helpers_set_trace_sink(sink, sink_cookie);

  for (const bh_helper_desc &h : kHelpers) {
    bool skipped = false;
    for (size_t k = 0; k < skip_cnt && !skipped; k++) skipped = skip[k] == h.id;
    if (skipped) continue;
    if (bh_vm_register_helper(vm, h.id, h.name, h.fn, h.flags) != 0) return -EINVAL;
    const bh_helper_proto *proto = bh_helpers_proto(h.id);
    if (proto != nullptr && bh_vm_set_helper_proto(vm, h.id, proto) != 0) return -EINVAL;
  }
  return 0;
}

int bh_helper_vector_clean(int32_t id) {
  switch (id) {
    case 1:
    case 2:
    case 3:  // map lookup / update / delete: on the map types of bh_map_type_vector_clean
    case BH_FN_KTIME_GET_NS:
    case BH_FN_GET_PRANDOM_U32:
    case BH_FN_GET_SMP_PROCESSOR_ID:  // sched_getcpu: the rseq area or the vDSO
    case BH_FN_GET_CURRENT_PID_TGID:
    case BH_FN_GET_CURRENT_UID_GID:
    case BH_FN_KTIME_GET_BOOT_NS:
    case BH_FN_KTIME_GET_COARSE_NS:  // clock_gettime: the vDSO
    case 131:
    case 132:
    case 133:  // ring buffer reserve / submit / discard: no copy
    case BH_FN_PROBE_READ:
    case BH_FN_PROBE_READ_STR:
    case BH_FN_PROBE_READ_USER:
    case BH_FN_PROBE_READ_KERNEL:
    case BH_FN_PROBE_READ_USER_STR:
    case BH_FN_PROBE_READ_KERNEL_STR:  // the guarded copies are general-register assembly (safe_read.cpp)
    case BH_FN_GET_ATTACH_COOKIE: return 1;
    default: return 0;
  }
}

}  // extern "C"
