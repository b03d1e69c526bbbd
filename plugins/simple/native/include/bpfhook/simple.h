/* The simple plugin's public C API: any library or addon in the process can
 * fire a custom event source. Find it with dlsym(RTLD_DEFAULT,
 * "bh_simple_trigger") (the core loads the plugin with RTLD_GLOBAL) or link
 * against libbpfhook_simple.so. */
#ifndef BPFHOOK_SIMPLE_H
#define BPFHOOK_SIMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of context a program of the simple plugin may read and write (what
 * the verifier proves it against). A trigger with fewer bytes runs its
 * programs on a zero-padded copy of this size; checked mode still faults
 * beyond `len`. */
#define BH_SIMPLE_CONTEXT_SIZE 4096

/* Runs every program attached to `source`, in attach order, with the bytes
 * [data, data+len) as context (programs may write them). Returns the number
 * of programs run (0 when none is attached) and sets *ret (if not NULL) to the
 * last one's r0; a negative errno if a program faulted (the others still
 * ran). */
int bh_simple_trigger(const char *source, void *data, size_t len, uint64_t *ret);

typedef int (*bh_simple_trigger_fn)(const char *source, void *data, size_t len, uint64_t *ret);

#ifdef __cplusplus
}
#endif
#endif
