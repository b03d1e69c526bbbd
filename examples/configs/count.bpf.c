// uprobe counting: counts calls of a function per value of its first
// argument, skipping calls whose first argument is below `min_arg`, a
// `const volatile` knob the config file sets before load (count.yaml).
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __s64 min_arg = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16); /* count.yaml raises it */
  __type(key, __s64);      /* first argument */
  __type(value, __u64);    /* calls */
} calls SEC(".maps");

SEC("uprobe/libbpfhook_targets.so:bh_target_add")
int BPF_UPROBE(count_calls, long a) {
  if (a < min_arg) return 0;
  __s64 key = a;
  __u64 one = 1, *n = bpf_map_lookup_elem(&calls, &key);
  if (n)
    __sync_fetch_and_add(n, 1);
  else
    bpf_map_update_elem(&calls, &key, &one, BPF_NOEXIST);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
