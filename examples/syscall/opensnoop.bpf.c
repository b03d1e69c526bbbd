/* opensnoop in user space: every openat of the traced program, with the path,
 * the result, the thread and its name, as libbpf-tools' opensnoop reports
 * them. Written for the kernel's tracepoints; bpfhook's syscall-trace plugin
 * runs it unmodified (no root needed). `bpfhook run -c opensnoop.yaml -- CMD`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The kernel's tracepoint contexts, as vmlinux.h spells them. */
struct trace_entry {
  unsigned short type;
  unsigned char flags;
  unsigned char preempt_count;
  int pid;
};
struct trace_event_raw_sys_enter {
  struct trace_entry ent;
  long id;
  unsigned long args[6];
};
struct trace_event_raw_sys_exit {
  struct trace_entry ent;
  long id;
  long ret;
};

/* Set from the config's rodata: report failed opens only. */
const volatile _Bool failed_only = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);   /* thread id */
  __type(value, __u64); /* the path's address, between enter and exit */
} paths SEC(".maps");

struct event {
  __u32 pid;
  __u32 tid;
  __s32 ret;
  __u32 pad;
  char comm[16];
  char path[128];
};

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 16);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int on_enter(struct trace_event_raw_sys_enter *ctx) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  __u64 path = ctx->args[1];
  bpf_map_update_elem(&paths, &tid, &path, BPF_ANY);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int on_exit(struct trace_event_raw_sys_exit *ctx) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)id;
  __u64 *path = bpf_map_lookup_elem(&paths, &tid);
  if (!path) return 0;
  if (!failed_only || ctx->ret < 0) {
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (e) {
      e->pid = id >> 32;
      e->tid = tid;
      e->ret = (__s32)ctx->ret;
      e->pad = 0;
      bpf_get_current_comm(&e->comm, sizeof(e->comm));
      bpf_probe_read_user_str(&e->path, sizeof(e->path), (const void *)*path);
      bpf_ringbuf_submit(e, 0);
    }
  }
  bpf_map_delete_elem(&paths, &tid);
  return 0;
}

/* So that bpfhook decodes the ring's records by their BTF type. */
const struct event *unused_event __attribute__((unused));

char LICENSE[] SEC("license") = "GPL";
