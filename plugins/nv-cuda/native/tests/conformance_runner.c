/* Runs the bpf_conformance suite on a GPU (npm run test:gpu): loads the
 * module conformanceModule() builds (src/ptx/conformance.ts), launches each
 * bh_conf_<i> on one thread with a device copy of the program's `-- mem`
 * bytes, and compares r0 with the expected value.
 *
 *   conformance_runner MODULE.ptx MANIFEST
 *
 * The driver comes from dlopen: $BPFHOOK_NV_CUDA_DRIVER, else libcuda.so.1
 * (nothing to link, so it builds where no driver is). Prints one line per
 * failure and "conformance on the device: P passed, F failed"; exit 0 only
 * when every program passed. A program that faults poisons the context: the
 * runner resets the device's primary context and loads the module again. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*fn_init)(unsigned);
typedef int (*fn_dev_get)(int *, int);
typedef int (*fn_retain)(void **, int);
typedef int (*fn_set)(void *);
typedef int (*fn_reset)(int);
typedef int (*fn_load)(void **, const void *);
typedef int (*fn_get_fn)(void **, void *, const char *);
typedef int (*fn_alloc)(uint64_t *, size_t);
typedef int (*fn_free)(uint64_t);
typedef int (*fn_htod)(uint64_t, const void *, size_t);
typedef int (*fn_dtoh)(void *, uint64_t, size_t);
typedef int (*fn_launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **,
                         void **);
typedef int (*fn_sync)(void);

static struct {
  fn_init init;
  fn_dev_get dev_get;
  fn_retain retain;
  fn_set set;
  fn_reset reset;
  fn_load load;
  fn_get_fn get_fn;
  fn_alloc alloc;
  fn_free free_;
  fn_htod htod;
  fn_dtoh dtoh;
  fn_launch launch;
  fn_sync sync;
} cu;

static void *need(void *lib, const char *name) {
  void *f = dlsym(lib, name);
  if (f == NULL) {
    fprintf(stderr, "conformance_runner: the driver has no %s\n", name);
    exit(2);
  }
  return f;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "%s: cannot read\n", path);
    exit(2);
  }
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void *g_module;

static int setup(const char *ptx) {
  int dev = 0;
  void *ctx = NULL;
  int rc = cu.init(0);
  if (rc == 0) rc = cu.dev_get(&dev, 0);
  if (rc == 0) rc = cu.retain(&ctx, dev);
  if (rc == 0) rc = cu.set(ctx);
  if (rc == 0) rc = cu.load(&g_module, ptx);
  if (rc != 0) fprintf(stderr, "conformance_runner: setting up the device and loading the module: CUresult %d\n", rc);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: conformance_runner MODULE.ptx MANIFEST\n");
    return 2;
  }
  const char *path = getenv("BPFHOOK_NV_CUDA_DRIVER");
  void *lib = dlopen(path != NULL && path[0] != 0 ? path : "libcuda.so.1", RTLD_NOW);
  if (lib == NULL) {
    fprintf(stderr, "conformance_runner: no CUDA driver: %s\n", dlerror());
    return 2;
  }
  cu.init = (fn_init)need(lib, "cuInit");
  cu.dev_get = (fn_dev_get)need(lib, "cuDeviceGet");
  cu.retain = (fn_retain)need(lib, "cuDevicePrimaryCtxRetain");
  cu.set = (fn_set)need(lib, "cuCtxSetCurrent");
  cu.reset = (fn_reset)dlsym(lib, "cuDevicePrimaryCtxReset_v2");
  cu.load = (fn_load)need(lib, "cuModuleLoadData");
  cu.get_fn = (fn_get_fn)need(lib, "cuModuleGetFunction");
  cu.alloc = (fn_alloc)need(lib, "cuMemAlloc_v2");
  cu.free_ = (fn_free)dlsym(lib, "cuMemFree_v2");
  cu.htod = (fn_htod)need(lib, "cuMemcpyHtoD_v2");
  cu.dtoh = (fn_dtoh)need(lib, "cuMemcpyDtoH_v2");
  cu.launch = (fn_launch)need(lib, "cuLaunchKernel");
  cu.sync = (fn_sync)dlsym(lib, "cuCtxSynchronize");
  char *ptx = read_file(argv[1]);
  char *manifest = read_file(argv[2]);
  if (setup(ptx) != 0) return 2;
  int passed = 0, failed = 0;
  for (char *line = strtok(manifest, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    char entry[64], name[256], memhex[8192], want_hex[32];
    if (sscanf(line, "%63s %255s %8191s %31s", entry, name, memhex, want_hex) != 4) continue;
    const uint64_t want = strtoull(want_hex, NULL, 16);
    size_t mem_len = strcmp(memhex, "-") == 0 ? 0 : strlen(memhex) / 2;
    unsigned char mem[4096];
    for (size_t i = 0; i < mem_len && i < sizeof mem; i++) sscanf(memhex + 2 * i, "%2hhx", &mem[i]);
    uint64_t dmem = 0, dout = 0, got = 0;
    void *fn = NULL;
    int rc = cu.get_fn(&fn, g_module, entry);
    if (rc == 0) rc = cu.alloc(&dmem, mem_len > 0 ? mem_len : 8);
    if (rc == 0 && mem_len > 0) rc = cu.htod(dmem, mem, mem_len);
    if (rc == 0) rc = cu.alloc(&dout, 8);
    if (rc == 0) rc = cu.htod(dout, &got, 8);
    void *params[2] = {&dmem, &dout};
    if (rc == 0) rc = cu.launch(fn, 1, 1, 1, 1, 1, 1, 0, NULL, params, NULL);
    if (rc == 0 && cu.sync != NULL) rc = cu.sync();
    if (rc == 0) rc = cu.dtoh(&got, dout, 8);
    if (cu.free_ != NULL) {
      if (dmem != 0) cu.free_(dmem);
      if (dout != 0) cu.free_(dout);
    }
    if (rc != 0) {
      failed++;
      printf("ERROR %s: CUresult %d\n", name, rc);
      /* A fault leaves the context unusable: start again with a fresh one. */
      if (cu.reset != NULL) cu.reset(0);
      if (setup(ptx) != 0) return 2;
      continue;
    }
    if (got == want) {
      passed++;
    } else {
      failed++;
      printf("FAIL %s: r0 0x%llx, expected 0x%llx\n", name, (unsigned long long)got, (unsigned long long)want);
    }
  }
  printf("conformance on the device: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
