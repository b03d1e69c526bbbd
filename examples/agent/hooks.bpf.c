// The agent-mode example's program: counts calls of the app's hash_word by
// word length, and prints the first call's word with bpf_printk.
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 max_printed = 1; /* set in hooks.yaml */

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u32);   /* word length */
  __type(value, __u64); /* calls */
} by_length SEC(".maps");

__u64 printed = 0;

SEC("uprobe/app:hash_word")
int BPF_UPROBE(on_hash_word, const char *word) {
  char buf[32] = {};
  long n = bpf_probe_read_user_str(buf, sizeof buf, word);
  if (n <= 0) return 0;
  __u32 len = n - 1;
  __u64 one = 1, *count = bpf_map_lookup_elem(&by_length, &len);
  if (count)
    __sync_fetch_and_add(count, 1);
  else
    bpf_map_update_elem(&by_length, &len, &one, BPF_NOEXIST);
  if (__sync_fetch_and_add(&printed, 1) < max_printed) bpf_printk("hash_word(\"%s\")", buf);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
