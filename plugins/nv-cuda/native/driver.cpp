// The CUDA driver functions the plugin calls itself, resolved by name from a
// library: libcuda.so.1, or the file BPFHOOK_NV_CUDA_DRIVER names (tests: a
// stand-in that records calls, since no driver can exist without a GPU).
#include "driver.h"

#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>

#include "bpfhook/errmsg.h"

namespace bh_nv_cuda {

namespace {

template <typename Fn>
bool resolve(void *lib, const char *name, Fn *out) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  return *out != nullptr;
}

}  // namespace

int load_driver(bh_cuda_driver *table, std::string *path_out, char *err, size_t err_len) {
  const char *env = getenv("BPFHOOK_NV_CUDA_DRIVER");
  const char *path = env != nullptr && env[0] != '\0' ? env : "libcuda.so.1";
  *path_out = path;
  // Never unloaded: the module handles and functions it returns live as long as the process.
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char *why = dlerror();
    return bh_fail(err, err_len, -ENOENT, "CUDA driver %s cannot be loaded: %s", path, why != nullptr ? why : "?");
  }
  bh_cuda_driver t{};
  t.sz = sizeof t;
  // The versioned names are what the driver's headers map the plain ones to.
  const char *missing = nullptr;
  if (!resolve(lib, "cuInit", &t.cuInit))
    missing = "cuInit";
  else if (!resolve(lib, "cuDeviceGet", &t.cuDeviceGet))
    missing = "cuDeviceGet";
  else if (!resolve(lib, "cuDevicePrimaryCtxRetain", &t.cuDevicePrimaryCtxRetain))
    missing = "cuDevicePrimaryCtxRetain";
  else if (!resolve(lib, "cuCtxGetCurrent", &t.cuCtxGetCurrent))
    missing = "cuCtxGetCurrent";
  else if (!resolve(lib, "cuCtxSetCurrent", &t.cuCtxSetCurrent))
    missing = "cuCtxSetCurrent";
  else if (!resolve(lib, "cuModuleLoadData", &t.cuModuleLoadData))
    missing = "cuModuleLoadData";
  else if (!resolve(lib, "cuModuleGetFunction", &t.cuModuleGetFunction))
    missing = "cuModuleGetFunction";
  else if (!resolve(lib, "cuModuleGetGlobal_v2", &t.cuModuleGetGlobal))
    missing = "cuModuleGetGlobal_v2";
  else if (!resolve(lib, "cuMemAlloc_v2", &t.cuMemAlloc))
    missing = "cuMemAlloc_v2";
  else if (!resolve(lib, "cuMemcpyHtoD_v2", &t.cuMemcpyHtoD))
    missing = "cuMemcpyHtoD_v2";
  else if (!resolve(lib, "cuMemcpyDtoH_v2", &t.cuMemcpyDtoH))
    missing = "cuMemcpyDtoH_v2";
  else if (!resolve(lib, "cuLaunchKernel", &t.cuLaunchKernel))
    missing = "cuLaunchKernel";
  if (missing != nullptr) {
    return bh_fail(err, err_len, -ENOSYS, "CUDA driver %s has no %s", path, missing);
  }
  resolve(lib, "cuFuncGetName", &t.cuFuncGetName);  // CUDA 12.3+; optional
  *table = t;
  return 0;
}

}  // namespace bh_nv_cuda
