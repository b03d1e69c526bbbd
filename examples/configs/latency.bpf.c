// uretprobe latency histogram: an entry probe stores the start time per
// thread, the return probe adds the call's duration to a log2 histogram.
// The sections name no function: latency.yaml says which one to time.
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);   /* thread id */
  __type(value, __u64); /* start, ns */
} start SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 64);
  __type(key, __u32);   /* log2 of the duration in ns */
  __type(value, __u64); /* calls */
} hist SEC(".maps");

SEC("uprobe")
int timed_entry(struct pt_regs *ctx) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  __u64 now = bpf_ktime_get_ns();
  bpf_map_update_elem(&start, &tid, &now, BPF_ANY);
  return 0;
}

SEC("uretprobe")
int timed_return(struct pt_regs *ctx) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  __u64 *t0 = bpf_map_lookup_elem(&start, &tid);
  if (!t0) return 0;
  __u64 delta = bpf_ktime_get_ns() - *t0;
  bpf_map_delete_elem(&start, &tid);
  __u32 slot = 0;
  while (slot < 63 && (1ull << slot) < delta) slot++;
  __u64 *n = bpf_map_lookup_elem(&hist, &slot);
  if (n) __sync_fetch_and_add(n, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
