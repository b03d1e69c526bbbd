/* BPF_UPROBE / BPF_URETPROBE for libbpf older than 1.2 (Debian 12 ships
 * 1.1.2, which has only the BPF_KPROBE forms). For user-space pt_regs both
 * expand the same way, so the U forms are defined as the K forms; macros
 * expand at use, so this may be included before <bpf/bpf_tracing.h>.
 * bpfhook's compile helper force-includes it only when the installed
 * bpf_tracing.h lacks BPF_UPROBE. */
#ifndef BPFHOOK_BPF_UPROBE_COMPAT_H
#define BPFHOOK_BPF_UPROBE_COMPAT_H
#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif
#endif
