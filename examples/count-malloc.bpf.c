// Counts calls to libc's malloc and the bytes they ask for, per power-of-two
// size class. Plain libbpf-style eBPF C; compileBpfC() from @bpfhook/core
// builds it with `clang -O2 -g -target bpf` and the flags these machines need
// (with libbpf < 1.2, BPF_UPROBE comes from sdk/include/bpfhook/bpf_uprobe_compat.h).
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u32);   /* size class: log2 of the size, rounded up */
  __type(value, __u64); /* calls */
} calls SEC(".maps");

__u64 total_bytes = 0;

SEC("uprobe/libc.so.6:malloc")
int BPF_UPROBE(count_malloc, __u64 size) {
  __u32 cls = 0;
  while (cls < 63 && (1ull << cls) < size) cls++;
  __u64 one = 1, *n = bpf_map_lookup_elem(&calls, &cls);
  if (n)
    __sync_fetch_and_add(n, 1);
  else
    bpf_map_update_elem(&calls, &cls, &one, BPF_NOEXIST);
  __sync_fetch_and_add(&total_bytes, size);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
