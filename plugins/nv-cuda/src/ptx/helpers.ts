/**
 * The helpers compiled programs may call, by id: each becomes a call of the
 * device function `bh_helper_<id>` of the PTX runtime (runtime.ts), with the
 * first `args` eBPF argument registers. Ids and names follow bpftime's GPU
 * helpers (501-511) so its programs carry over, plus the kernel helpers that
 * make sense inside a kernel.
 */
export interface GpuHelper {
  readonly id: number;
  readonly name: string;
  /** eBPF argument registers passed (r1..r<args>). */
  readonly args: number;
  readonly description: string;
}

export const GPU_HELPERS: readonly GpuHelper[] = Object.freeze([
  { id: 1, name: "bpf_map_lookup_elem", args: 2, description: "GPU-resident array or hash (runtime.ts layout)" },
  { id: 2, name: "bpf_map_update_elem", args: 4, description: "GPU-resident array or hash" },
  { id: 3, name: "bpf_map_delete_elem", args: 2, description: "GPU-resident hash (arrays: -EINVAL)" },
  { id: 5, name: "bpf_ktime_get_ns", args: 0, description: "%globaltimer (ns)" },
  { id: 6, name: "bpf_trace_printk", args: 5, description: "record in the GPU ring buffer; the host formats it" },
  { id: 8, name: "bpf_get_smp_processor_id", args: 0, description: "%smid" },
  { id: 14, name: "bpf_get_current_pid_tgid", args: 0, description: "tgid from bh_pid_tgid (host fills it) << 32 | global thread index" },
  { id: 25, name: "bpf_perf_event_output", args: 5, description: "record in the GPU ring buffer" },
  { id: 501, name: "ebpf_puts", args: 1, description: "string record in the GPU ring buffer (256 bytes at most)" },
  { id: 502, name: "bpf_get_globaltimer", args: 0, description: "%globaltimer (ns)" },
  { id: 503, name: "bpf_get_block_idx", args: 3, description: "%ctaid.x/y/z into *x, *y, *z" },
  { id: 504, name: "bpf_get_block_dim", args: 3, description: "%ntid.x/y/z into *x, *y, *z" },
  { id: 505, name: "bpf_get_thread_idx", args: 3, description: "%tid.x/y/z into *x, *y, *z" },
  { id: 506, name: "bpf_gpu_membar", args: 0, description: "membar.sys" },
  { id: 507, name: "bpf_cuda_exit", args: 0, description: "exit: ends the thread" },
  { id: 508, name: "bpf_get_grid_dim", args: 3, description: "%nctaid.x/y/z into *x, *y, *z" },
  { id: 509, name: "bpf_get_sm_id", args: 0, description: "%smid" },
  { id: 510, name: "bpf_get_warp_id", args: 0, description: "%warpid" },
  { id: 511, name: "bpf_get_lane_id", args: 0, description: "%laneid" },
]);

export const GPU_HELPER_BY_ID: ReadonlyMap<number, GpuHelper> = new Map(GPU_HELPERS.map((h) => [h.id, h]));

/** The runtime's device function for a helper id. */
export function helperSymbol(id: number): string {
  return `bh_helper_${id}`;
}
