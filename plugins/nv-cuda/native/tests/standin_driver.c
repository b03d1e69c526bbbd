/* A stand-in for the CUDA driver functions the nv-cuda plugin calls itself
 * (bpfhook/nv_cuda_plugin.h's bh_cuda_driver), for machines without a GPU,
 * where no driver can exist. The plugin loads it instead of libcuda.so.1
 * when BPFHOOK_NV_CUDA_DRIVER names it. It runs nothing: every call answers
 * CUDA_SUCCESS and appends a line to the file $BH_CUDA_STANDIN_LOG:
 *
 *   cuModuleLoadData module=<m> ptx=<file>       (the image, saved to <log>.<n>.ptx)
 *   cuModuleGetFunction module=<m> name=<name> fn=<f>
 *   cuModuleGetGlobal name=<name> dptr=<d> size=<bytes>
 *   cuMemAlloc dptr=<d> size=<bytes>
 *   cuMemcpyHtoD dptr=<d> size=<bytes> head=<hex of the first 16 bytes at most>
 *   cuLaunchKernel fn=<f> grid=x,y,z block=x,y,z shmem=<n> stream=<s> params=<v0>,<v1>,...
 *
 * "Device memory" is host memory (cuMemAlloc is calloc, copies both ways are
 * memcpy), so globals (64 KiB per module and name) and maps written by the
 * plugin can be read back. BH_CUDA_STANDIN_SIMULATE=count makes each launch
 * leave what a counting probe and a trace_printk would (simulate() below). Launch
 * parameters: the first $BH_CUDA_STANDIN_NPARAMS (default 0) are printed as
 * the u64 each kernelParams[i] points at. cuCtxGetCurrent reports no context,
 * so the plugin goes through cuInit / cuDeviceGet / cuDevicePrimaryCtxRetain /
 * cuCtxSetCurrent (each logged). cuFuncGetName answers the loaded name.
 * BH_CUDA_STANDIN_FAIL=cuModuleLoadData makes that call fail with
 * CUDA_ERROR_INVALID_PTX (218): the plugin's fallback to the original kernel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logline(const char *fmt, ...) {
  const char *path = getenv("BH_CUDA_STANDIN_LOG");
  if (path == NULL) return;
  FILE *f = fopen(path, "a");
  if (f == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

struct global {
  void *module;
  char name[128];
  void *mem;
  size_t size;
};
static struct global g_globals[64];
static int g_nglobals;
static int g_modules;

#define GLOBAL_SIZE 65536

int cuInit(unsigned flags) {
  logline("cuInit flags=%u", flags);
  return 0;
}
int cuDeviceGet(int *dev, int ordinal) {
  *dev = ordinal;
  logline("cuDeviceGet ordinal=%d", ordinal);
  return 0;
}
int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  *ctx = (void *)0xc0ffee;
  logline("cuDevicePrimaryCtxRetain dev=%d", dev);
  return 0;
}
int cuCtxGetCurrent(void **ctx) {
  *ctx = NULL;
  return 0;
}
int cuCtxSetCurrent(void *ctx) {
  logline("cuCtxSetCurrent ctx=%p", ctx);
  return 0;
}
int cuModuleLoadData(void **module, const void *image) {
  const char *fail = getenv("BH_CUDA_STANDIN_FAIL");
  if (fail != NULL && strcmp(fail, "cuModuleLoadData") == 0) {
    logline("cuModuleLoadData failed on purpose (BH_CUDA_STANDIN_FAIL)");
    return 218; /* CUDA_ERROR_INVALID_PTX */
  }
  /* The module's PTX goes beside the log; without a log, nowhere (a fixed
   * path in /tmp would be left behind). */
  const char *path = getenv("BH_CUDA_STANDIN_LOG");
  char file[4096] = "";
  if (path != NULL) {
    snprintf(file, sizeof file, "%s.%d.ptx", path, g_modules);
    FILE *f = fopen(file, "w");
    if (f != NULL) {
      fputs((const char *)image, f);
      fclose(f);
    }
  }
  *module = (void *)(uintptr_t)(0x1000 + g_modules++);
  logline("cuModuleLoadData module=%p ptx=%s", *module, file);
  return 0;
}
int cuModuleGetFunction(void **fn, void *module, const char *name) {
  /* The "function" is a copy of its name, its module's handle in the word
   * before (never freed: functions live as long as the process). */
  size_t n = strlen(name) + 1;
  void **block = malloc(sizeof(void *) + n);
  if (block == NULL) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  block[0] = module;
  char *copy = (char *)(block + 1);
  memcpy(copy, name, n);
  *fn = copy;
  logline("cuModuleGetFunction module=%p name=%s fn=%p", module, name, *fn);
  return 0;
}
int cuFuncGetName(const char **name, void *fn) {
  *name = (const char *)fn;
  return 0;
}
int cuModuleGetGlobal_v2(uint64_t *dptr, size_t *bytes, void *module, const char *name) {
  for (int i = 0; i < g_nglobals; i++) {
    if (g_globals[i].module == module && strcmp(g_globals[i].name, name) == 0) {
      *dptr = (uint64_t)(uintptr_t)g_globals[i].mem;
      *bytes = g_globals[i].size;
      return 0;
    }
  }
  if (g_nglobals >= 64) return 500;
  struct global *g = &g_globals[g_nglobals++];
  g->module = module;
  snprintf(g->name, sizeof g->name, "%s", name);
  g->mem = calloc(1, GLOBAL_SIZE);
  g->size = GLOBAL_SIZE;
  *dptr = (uint64_t)(uintptr_t)g->mem;
  *bytes = g->size;
  logline("cuModuleGetGlobal name=%s dptr=0x%llx size=%zu", name, (unsigned long long)*dptr, *bytes);
  return 0;
}
int cuMemAlloc_v2(uint64_t *dptr, size_t bytes) {
  void *p = calloc(1, bytes);
  if (p == NULL) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  *dptr = (uint64_t)(uintptr_t)p;
  logline("cuMemAlloc dptr=0x%llx size=%zu", (unsigned long long)*dptr, bytes);
  return 0;
}
int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes) {
  memcpy((void *)(uintptr_t)dst, src, bytes);
  char head[33] = {0};
  for (size_t i = 0; i < bytes && i < 16; i++) snprintf(head + 2 * i, 3, "%02x", ((const unsigned char *)src)[i]);
  logline("cuMemcpyHtoD dptr=0x%llx size=%zu head=%s", (unsigned long long)dst, bytes, head);
  return 0;
}
int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes) {
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return 0;
}
static uint64_t *find_global(void *module, const char *name) {
  for (int i = 0; i < g_nglobals; i++) {
    if (g_globals[i].module == module && strcmp(g_globals[i].name, name) == 0) return g_globals[i].mem;
  }
  return NULL;
}

/* BH_CUDA_STANDIN_SIMULATE=count: what intercept_probe.bpf.c's count_threads
 * and a trace_printk would leave in device memory (the layouts of
 * src/ptx/runtime.ts), so the host side's mirror and ring drain have data:
 * every thread of the grid adds 1 to entry 0 of map 0 when it is a sharded
 * per-CPU array (shard = global thread index & (shards - 1)), and the launch
 * appends one printk record "stand-in launch %d" (the launch's number) to
 * bh_ring. Nothing of the kernel itself runs. */
static void simulate(void *fn, uint64_t threads) {
  static int launches;
  void *module = ((void **)fn)[-1];
  launches++;
  uint64_t *table = find_global(module, "bh_map_table");
  if (table != NULL && table[0] != 0) {
    const uint64_t *desc = (const uint64_t *)(uintptr_t)table[0];
    const uint64_t stride = (desc[2] + 7) & ~7ull, shards = desc[7];
    if (desc[0] == 6 && shards != 0 && desc[2] >= 8) {
      for (uint64_t g = 0; g < threads; g++) {
        __atomic_fetch_add((uint64_t *)(uintptr_t)(desc[4] + (g & (shards - 1)) * stride), 1, __ATOMIC_RELAXED);
      }
    }
  }
  uint64_t *ring = find_global(module, "bh_ring"); /* data, size, head, dropped */
  if (ring != NULL && ring[0] != 0) {
    static const char fmt[] = "stand-in launch %d";
    const uint32_t len = 16 + 24 + sizeof fmt;
    const uint64_t pos = __atomic_fetch_add(&ring[2], (len + 7) & ~7u, __ATOMIC_RELAXED);
    if (pos + len > ring[1]) {
      __atomic_fetch_add(&ring[3], 1, __ATOMIC_RELAXED);
    } else {
      unsigned char *rec = (unsigned char *)(uintptr_t)(ring[0] + pos);
      const uint32_t kind = 1;
      const uint64_t extra = sizeof fmt, args[3] = {(uint64_t)launches, 0, 0};
      memcpy(rec + 4, &kind, 4);
      memcpy(rec + 8, &extra, 8);
      memcpy(rec + 16, args, sizeof args);
      memcpy(rec + 40, fmt, sizeof fmt);
      __atomic_store_n((uint32_t *)rec, len, __ATOMIC_RELEASE); /* the commit, last */
    }
  }
}

int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shmem, void *stream, void **params, void **extra) {
  (void)extra;
  const char *sim = getenv("BH_CUDA_STANDIN_SIMULATE");
  if (sim != NULL && strcmp(sim, "count") == 0) simulate(fn, (uint64_t)gx * gy * gz * bx * by * bz);
  const char *np = getenv("BH_CUDA_STANDIN_NPARAMS");
  int n = np != NULL ? atoi(np) : 0;
  char buf[1024] = "";
  size_t used = 0;
  for (int i = 0; i < n && params != NULL && used < sizeof buf - 32; i++) {
    uint64_t v = 0;
    memcpy(&v, params[i], sizeof v);
    used += (size_t)snprintf(buf + used, sizeof buf - used, "%s0x%llx", i ? "," : "", (unsigned long long)v);
  }
  logline("cuLaunchKernel fn=%p name=%s grid=%u,%u,%u block=%u,%u,%u shmem=%u stream=%p params=%s", fn,
          (const char *)fn, gx, gy, gz, bx, by, bz, shmem, stream, buf);
  return 0;
}
