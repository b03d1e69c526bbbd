/* The nv-cuda plugin's native piece: its private data (what the TypeScript
 * side's encodeModule(), plugins/nv-cuda/src/intercept.ts, writes) and the table of
 * CUDA driver functions the plugin calls itself.
 *
 * Private data, little-endian, no padding (version 2):
 *
 *   offset  size          field
 *   0       4             magic BH_NV_CUDA_MAGIC
 *   4       4             version BH_NV_CUDA_VERSION
 *   8       4             attach_type (8 cuda_probe, 9 cuda_retprobe)
 *   12      4             flags (none defined; must be 0)
 *   16      4             n_paths: the target's files with CUDA code (the executable first)
 *   20      4             n_hooks
 *   24      4             n_maps
 *   28      4             n_modules: instrumented modules, one per fat binary with selected kernels
 *   32      16 x n_hooks  { u64 vaddr; u32 hook (enum bh_nv_cuda_hook); u32 path }:
 *                         link-time vaddrs in paths[path] (found in its .symtab,
 *                         local symbols of nvcc's static runtime included: one
 *                         copy of the runtime per file)
 *   ..      16 x n_maps   { u32 type, key_size, value_size, max_entries }, by the
 *                         object's map index (bh_map_table's slots)
 *   ..      strings       description\0 program\0 (this attachment's program, as
 *                         the modules' slots name it) path\0 x n_paths
 *   ..      modules       n_modules x {
 *                           u32 path, n_kernels, n_vars, n_slots, ptx_len;
 *                           where\0
 *                           n_kernels x { u64 stub; u64 handle; name\0 }: the host
 *                             stub and its static cudaKernel_t (CUDA 13), link-time
 *                             vaddrs in paths[path], 0 when unknown (late attach
 *                             redirects the stub without its registration)
 *                           n_vars x { u64 host_var; name\0 }: host shadows of the
 *                             module's __device__ variables
 *                           n_slots x { program\0 }: the program behind guard
 *                             slot i (bh_prog_off[i]; detach turns it off)
 *                           ptx_len + 1 bytes: the PTX and a NUL }
 *
 * A hook the TS side found no vaddr for is looked up with dlsym(RTLD_DEFAULT)
 * (libcudart.so's exports with `-cudart shared`). */
#ifndef BPFHOOK_NV_CUDA_PLUGIN_H
#define BPFHOOK_NV_CUDA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_NV_CUDA_MAGIC 0x434e4842u /* "BHNC" */
#define BH_NV_CUDA_VERSION 2u
#define BH_NV_CUDA_FIXED 32u

/* The runtime functions hooked; the TS side's HOOK_NAMES lists them in this order. */
enum bh_nv_cuda_hook {
  BH_NVH_REGISTER_FATBINARY = 0,      /* __cudaRegisterFatBinary */
  BH_NVH_REGISTER_FATBINARY_END = 1,  /* __cudaRegisterFatBinaryEnd */
  BH_NVH_REGISTER_FUNCTION = 2,       /* __cudaRegisterFunction */
  BH_NVH_REGISTER_VAR = 3,            /* __cudaRegisterVar */
  BH_NVH_GET_KERNEL = 4,              /* __cudaGetKernel */
  BH_NVH_LAUNCH_KERNEL = 5,           /* __cudaLaunchKernel */
  BH_NVH_LAUNCH_KERNEL_PTSZ = 6,      /* __cudaLaunchKernel_ptsz */
  BH_NVH_CUDA_LAUNCH_KERNEL = 7,      /* cudaLaunchKernel */
  BH_NVH_CUDA_LAUNCH_KERNEL_PTSZ = 8, /* cudaLaunchKernel_ptsz */
  BH_NVH_CUDA_LAUNCH_KERNEL_EXC = 9,  /* cudaLaunchKernelExC */
  BH_NVH_MEMCPY_TO_SYMBOL = 10,       /* cudaMemcpyToSymbol */
  BH_NVH_COUNT = 11,
};

typedef int bh_cu_result; /* CUresult: 0 is CUDA_SUCCESS */

/* The driver functions the plugin calls itself (all through this table, so
 * that tests can stand in for a driver that cannot exist without a GPU).
 * Filled from dlopen(path) by name (the driver's versioned names: _v2). */
struct bh_cuda_driver {
  size_t sz;
  bh_cu_result (*cuInit)(unsigned flags);
  bh_cu_result (*cuDeviceGet)(int *dev, int ordinal);
  bh_cu_result (*cuDevicePrimaryCtxRetain)(void **ctx, int dev);
  bh_cu_result (*cuCtxGetCurrent)(void **ctx);
  bh_cu_result (*cuCtxSetCurrent)(void *ctx);
  bh_cu_result (*cuModuleLoadData)(void **module, const void *image);
  bh_cu_result (*cuModuleGetFunction)(void **fn, void *module, const char *name);
  bh_cu_result (*cuModuleGetGlobal)(uint64_t *dptr, size_t *bytes, void *module, const char *name);
  bh_cu_result (*cuMemAlloc)(uint64_t *dptr, size_t bytes);
  bh_cu_result (*cuMemcpyHtoD)(uint64_t dst, const void *src, size_t bytes);
  bh_cu_result (*cuMemcpyDtoH)(void *dst, uint64_t src, size_t bytes);
  bh_cu_result (*cuLaunchKernel)(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                 unsigned shmem, void *stream, void **params, void **extra);
  /* Optional (NULL when absent): names the function of a driver launch. */
  bh_cu_result (*cuFuncGetName)(const char **name, void *fn);
};

#ifdef __cplusplus
}
#endif
#endif /* BPFHOOK_NV_CUDA_PLUGIN_H */
