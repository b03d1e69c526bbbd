// The driver table (bpfhook/nv_cuda_plugin.h) and where it comes from.
#ifndef BH_NV_CUDA_DRIVER_H
#define BH_NV_CUDA_DRIVER_H

#include <string>

#include "bpfhook/nv_cuda_plugin.h"

namespace bh_nv_cuda {

// Fills `table` from libcuda.so.1 (or $BPFHOOK_NV_CUDA_DRIVER); 0, or a
// negative errno and a message naming the library and the missing function.
int load_driver(bh_cuda_driver *table, std::string *path, char *err, size_t err_len);

}  // namespace bh_nv_cuda

#endif
