/**
 * Attach type ids, compatible with bpftime's so that programs and configs
 * carry over. Mirrors `enum bh_attach_type` in include/bpfhook/plugin.h.
 * Third-party plugins pick ids >= THIRD_PARTY_MIN.
 */
export const AttachTypeId = {
  SYSCALL_TRACE: 2,
  UPROBE: 6,
  URETPROBE: 7,
  CUDA_PROBE: 8,
  CUDA_RETPROBE: 9,
  UPROBE_OVERRIDE: 1008,
  UREPLACE: 1009,
  SIMPLE: 2001,
  THIRD_PARTY_MIN: 4096,
} as const;

/** The native ABI version this SDK describes (BH_PLUGIN_ABI_VERSION). */
export const PLUGIN_ABI_VERSION = 1;
