/* The private data of the frida-uprobe plugin: what its TypeScript side's
 * encode() (plugins/frida-uprobe/src/encode.ts) writes and its native piece's
 * attach() reads from bh_attach_opts.private_data.
 *
 * Layout, little-endian, no padding:
 *
 *   offset  size  field
 *   0       8     address      absolute address to hook in this process, or
 *                              with BH_UPROBE_F_MODULE_RELATIVE the link-time
 *                              vaddr in the module (address - load bias)
 *   8       4     attach_type  BH_ATTACH_UPROBE / _URETPROBE / _UPROBE_OVERRIDE / _UREPLACE
 *   12      4     flags        BH_UPROBE_F_*; unknown bits must be refused
 *   16      8     func_offset  bytes from the function's start to `address`
 *                              (symbol+offset); 0 at an entry or when unknown
 *   24      8     func_size    the function's size (its symbol's st_size), 0
 *                              if unknown: the hook engine then decodes and
 *                              scans the whole function
 *   32      n+1   description  "module:symbol[+0xoff]" and a NUL, for messages
 *   33+n    m+1   module_path  only with BH_UPROBE_F_MODULE_RELATIVE: the
 *                              module's absolute path as mapped, and a NUL
 *
 * Absolute form: the TypeScript side has already resolved the symbol in the
 * process that runs the hook engine, so `address` needs no further lookup,
 * except when BH_UPROBE_F_IFUNC_RESOLVER is set (see there).
 *
 * Module-relative form (agent mode: resolved in the controller, attached in
 * another process or a later image): nothing process-local is encoded. The
 * native piece finds module_path among the modules loaded in its own process
 * (dl_iterate_phdr) and hooks load bias + vaddr, which must fall in one of
 * the module's executable PT_LOAD segments. An IFUNC resolver's vaddr is
 * relative the same way.
 *
 * Attach types (ids from plugin.h; the program's context is struct pt_regs,
 * 168 bytes, in the kernel's layout):
 *   uprobe           runs the program at function entry (or at an
 *                    instruction boundary inside it); return ignored.
 *   uretprobe        runs it when the function returns (pt_regs.rax is the
 *                    return value).
 *   uprobe_override  runs it at entry; if it called bpf_override_return(ctx,
 *                    rc) (helper 58) the function is skipped and returns rc,
 *                    else the function runs normally.
 *   ureplace         the program replaces the function: the original never
 *                    runs and the caller gets the program's r0.
 * Only uprobe may have a non-zero func_offset: the other three need [rsp]
 * to be the return address (the kernel refuses them too).
 */
#ifndef BPFHOOK_UPROBE_PLUGIN_H
#define BPFHOOK_UPROBE_PLUGIN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* `address` is an IFUNC resolver (glibc's strlen, memcpy...), not the
 * function: call it as `void *(*)(void)` in the target process, as dlsym()
 * does, and hook the implementation it returns. Set only at entry points
 * (no offset). */
#define BH_UPROBE_F_IFUNC_RESOLVER (1u << 0)
/* The program calls no helper (the TypeScript side read its instructions):
 * run from JIT code it touches no vector register, so the hook engine need
 * not save vector state around it (BH_HOOK_ATTACH_F_NO_VECTOR). */
#define BH_UPROBE_F_NO_HELPERS (1u << 1)
/* `address` is the link-time vaddr in a module, and the module's path
 * follows the description (see the layout above). */
#define BH_UPROBE_F_MODULE_RELATIVE (1u << 2)
/* Every flag this version knows; attach() refuses others with -EINVAL. */
#define BH_UPROBE_F_KNOWN (BH_UPROBE_F_IFUNC_RESOLVER | BH_UPROBE_F_NO_HELPERS | BH_UPROBE_F_MODULE_RELATIVE)

/* Size of the fixed part; the description follows it. */
#define BH_UPROBE_PRIVATE_DATA_FIXED 32u

struct bh_uprobe_private_data {
  uint64_t address;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t func_offset;
  uint64_t func_size;
  char description[]; /* NUL-terminated */
};

#if defined(__cplusplus)
static_assert(sizeof(struct bh_uprobe_private_data) == BH_UPROBE_PRIVATE_DATA_FIXED, "layout");
static_assert(offsetof(struct bh_uprobe_private_data, description) == BH_UPROBE_PRIVATE_DATA_FIXED, "layout");
#else
_Static_assert(sizeof(struct bh_uprobe_private_data) == BH_UPROBE_PRIVATE_DATA_FIXED, "layout");
_Static_assert(offsetof(struct bh_uprobe_private_data, description) == BH_UPROBE_PRIVATE_DATA_FIXED, "layout");
#endif

/* The private data, decoded; `description` and `module_path` point into the
 * caller's bytes. */
struct bh_uprobe_target {
  uint64_t address; /* with BH_UPROBE_F_MODULE_RELATIVE: the vaddr in module_path */
  uint32_t attach_type;
  uint32_t flags;
  uint64_t func_offset;
  uint64_t func_size;
  const char *description;
  const char *module_path; /* NULL unless BH_UPROBE_F_MODULE_RELATIVE */
};

/* Decodes private data: long enough, description NUL-terminated within
 * `len`, no unknown flags; with BH_UPROBE_F_MODULE_RELATIVE also a non-empty
 * absolute module path NUL-terminated within `len` after the description.
 * Returns 0, or -EINVAL (attach() then fails with it). Reads fields with
 * memcpy, so `data` needs no alignment. */
static inline int bh_uprobe_private_data_decode(const void *data, size_t len, struct bh_uprobe_target *out) {
  const char *bytes = (const char *)data;
  if (data == NULL || out == NULL || len <= BH_UPROBE_PRIVATE_DATA_FIXED) return -EINVAL;
  const char *desc_end = (const char *)memchr(bytes + BH_UPROBE_PRIVATE_DATA_FIXED, 0, len - BH_UPROBE_PRIVATE_DATA_FIXED);
  if (desc_end == NULL) return -EINVAL;
  memcpy(&out->address, bytes + offsetof(struct bh_uprobe_private_data, address), sizeof out->address);
  memcpy(&out->attach_type, bytes + offsetof(struct bh_uprobe_private_data, attach_type), sizeof out->attach_type);
  memcpy(&out->flags, bytes + offsetof(struct bh_uprobe_private_data, flags), sizeof out->flags);
  memcpy(&out->func_offset, bytes + offsetof(struct bh_uprobe_private_data, func_offset), sizeof out->func_offset);
  memcpy(&out->func_size, bytes + offsetof(struct bh_uprobe_private_data, func_size), sizeof out->func_size);
  if ((out->flags & ~BH_UPROBE_F_KNOWN) != 0) return -EINVAL;
  out->description = bytes + BH_UPROBE_PRIVATE_DATA_FIXED;
  out->module_path = NULL;
  if ((out->flags & BH_UPROBE_F_MODULE_RELATIVE) != 0) {
    const char *path = desc_end + 1;
    const size_t left = len - (size_t)(path - bytes); /* 0 when the description ends the data */
    if (left == 0 || memchr(path, 0, left) == NULL || path[0] != '/') return -EINVAL;
    out->module_path = path;
  }
  return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_UPROBE_PLUGIN_H */
