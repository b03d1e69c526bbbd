// bench:agent's programs: the same shapes bench:uprobe attaches embedded.
// Each "empty" program counts its hits with one plain add to its own slot
// of the global `hits` (.bss: lddw of a map value, no helper call, as
// bench:uprobe's assembled programs; the loop is single-threaded), so the
// bench can check that it fired once per call; hash_counter does a lookup
// and an atomic add.
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 hits[16] = {};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

#define T "libbpfhook_targets.so:bh_target_empty"
#define COUNT(slot) (hits[(slot)] += 1)

SEC("uprobe/" T) int up(void *ctx) { COUNT(0); return 0; }
SEC("uretprobe/" T) int uret(void *ctx) { COUNT(1); return 0; }
SEC("uprobe/" T) int up2(void *ctx) { COUNT(2); return 0; }
SEC("uretprobe/" T) int uret2(void *ctx) { COUNT(3); return 0; }
SEC("uprobe.override/" T) int override(void *ctx) { COUNT(4); return 0; }

SEC("uprobe/" T)
int hash_counter(void *ctx) {
  __u32 k = 0;
  __u64 *n = bpf_map_lookup_elem(&counts, &k);
  if (n) __sync_fetch_and_add(n, 1);
  else {
    __u64 one = 1;
    bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST);
  }
  return 0;
}

/* Ten programs for the start-up figure. */
#define TEN(i) SEC("uprobe/" T) int start##i(void *ctx) { COUNT(6 + (i) % 8); return 0; }
TEN(0) TEN(1) TEN(2) TEN(3) TEN(4) TEN(5) TEN(6) TEN(7) TEN(8) TEN(9)

char LICENSE[] SEC("license") = "GPL";
