// override: calls of a function with a negative argument return `fallback`
// (a const volatile knob) without running the function's body; the others
// run as usual.
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile long fallback = -1;

SEC("uprobe.override")
int guard(struct pt_regs *ctx) {
  if ((long)PT_REGS_PARM1(ctx) < 0) bpf_override_return(ctx, fallback);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
