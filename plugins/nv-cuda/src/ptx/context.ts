/**
 * The probe's context: what r1 points at when an inserted program runs
 * (sdk/include/bpfhook/cuda.h, struct bh_cuda_ctx). Each kernel thread has its
 * own copy in `.local` memory, filled at the kernel's entry.
 */
export const CUDA_CTX = Object.freeze({
  blockIdx: 0, // u64 x, y, z
  blockDim: 24,
  threadIdx: 48,
  gridDim: 72,
  nparams: 96, // parameters the kernel declares
  memAddr: 104, // memory capture: the global address accessed
  memSize: 112, // bytes accessed
  memFlags: 120, // bit 0: store
  params: 128, // u64 params[16]: the n-th parameter, zero-extended (PT_REGS_PARMn)
  maxParams: 16,
  size: 256,
});
