/** BH_SC_MAX_NR in include/bpfhook/syscall_trace.h: per-number lists exist below it. */
export const SYSCALL_MAX_NR = 512;
/** BH_SC_F_* */
export const ScFlags = Object.freeze({ ALL: 0x1, ALLOW_OVERRIDE: 0x2, NO_HELPERS: 0x4 });
/** sizeof(struct bh_sc_private_data) */
export const PRIVATE_DATA_SIZE = 16;
