/* The nv-cuda plugin's probe context and GPU helpers, for eBPF programs that
 * run inside CUDA kernels (sections kprobe/<mangled kernel>, kretprobe/...,
 * cuda/<kernel>, cudaret/<kernel>, kprobe/__memcapture).
 *
 * r1 points at a struct bh_cuda_ctx: each GPU thread has its own copy in
 * local memory, filled at the kernel's entry, read-only for the program
 * (plugins/nv-cuda/src/ptx/context.ts is the same layout). */
#ifndef BPFHOOK_CUDA_H
#define BPFHOOK_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

struct bh_cuda_ctx {
  unsigned long long block_idx[3];  /* 0: %ctaid.x, .y, .z */
  unsigned long long block_dim[3];  /* 24: %ntid */
  unsigned long long thread_idx[3]; /* 48: %tid */
  unsigned long long grid_dim[3];   /* 72: %nctaid */
  unsigned long long nparams;       /* 96: parameters the kernel declares */
  /* Memory capture (kprobe/__memcapture): the global load or store that ran. */
  unsigned long long mem_addr;  /* 104: its address */
  unsigned long long mem_size;  /* 112: bytes (a .v4.f32 load: 16) */
  unsigned long long mem_flags; /* 120: BH_CUDA_MEM_STORE, or 0 for a load */
  /* 128: the kernel's first 16 parameters, the n-th in params[n]
   * zero-extended (pointers as their address); an aggregate passed by value
   * gives its first 8 bytes when it is 8-aligned and at least that large,
   * else 0. */
  unsigned long long params[16];
};

#define BH_CUDA_CTX_SIZE 256
#define BH_CUDA_MEM_STORE 1ull
/* PT_REGS_PARMn's counterpart: the n-th parameter, counted from 1. */
#define BH_CUDA_PARM(ctx, n) ((ctx)->params[(n)-1])

#ifdef __bpf__
/* GPU helpers with bpftime's ids, so that its CUDA programs carry over. */
static void (*const ebpf_puts)(const char *s) = (void *)501;
static unsigned long long (*const bpf_get_globaltimer)(void) = (void *)502;
static unsigned long long (*const bpf_get_block_idx)(unsigned long long *x, unsigned long long *y,
                                                     unsigned long long *z) = (void *)503;
static unsigned long long (*const bpf_get_block_dim)(unsigned long long *x, unsigned long long *y,
                                                     unsigned long long *z) = (void *)504;
static unsigned long long (*const bpf_get_thread_idx)(unsigned long long *x, unsigned long long *y,
                                                      unsigned long long *z) = (void *)505;
static unsigned long long (*const bpf_gpu_membar)(void) = (void *)506;
static unsigned long long (*const bpf_cuda_exit)(void) = (void *)507;
static unsigned long long (*const bpf_get_grid_dim)(unsigned long long *x, unsigned long long *y,
                                                    unsigned long long *z) = (void *)508;
static unsigned long long (*const bpf_get_sm_id)(void) = (void *)509;
static unsigned long long (*const bpf_get_warp_id)(void) = (void *)510;
static unsigned long long (*const bpf_get_lane_id)(void) = (void *)511;
#endif

#ifdef __cplusplus
}
#endif

#endif /* BPFHOOK_CUDA_H */
