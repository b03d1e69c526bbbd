/**
 * The nv-cuda plugin: eBPF programs inside CUDA kernels (bpftime's attach
 * types 8, CUDA probe, and 9, CUDA retprobe).
 *
 * Sections: bpftime's `kprobe/<mangled kernel>` and `kretprobe/<mangled kernel>`
 * (and `kprobe/__memcapture`, its memory capture), and ours, `cuda/<kernel>`
 * and `cudaret/<kernel>`, where <kernel> is the mangled name, the base name
 * (`vectorAdd`, `ns::kernel`) or a glob over either.
 *
 * What is here: the fat binary reader (src/fatbin), the eBPF-to-PTX compiler,
 * its runtime and the insertion passes (src/ptx). What is not yet: the
 * interception of the CUDA runtime in the target process, which loads the
 * instrumented module in place of the original; until it exists, attaching
 * fails with a clear error ("interception not built yet") and never
 * pretends.
 */
import path from "node:path";
import { z } from "zod";
import { AttachTypeId, definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, HelperDecl } from "@bpfhook/sdk";
import { CUDA_CTX } from "./ptx/context.js";
import { kernelMatches } from "./ptx/names.js";

export * from "./fatbin/index.js";
export * from "./ptx/index.js";

const schema = z.object({
  /** Mangled name, base name or glob (`cuda/`), or the exact mangled name (`kprobe/`). */
  kernel: z.string().min(1, "kernel name must not be empty").max(4096),
  /** "exact": bpftime's sections (the mangled name as written); "pattern": ours. */
  match: z.enum(["exact", "pattern"]),
  /** Where in the kernel the program runs. */
  at: z.enum(["entry", "exit", "memory"]),
});
export type NvCudaPrivateData = z.infer<typeof schema>;

export const CUDA_CONTEXT_LAYOUT: ContextLayout = Object.freeze({
  name: "cuda probe context",
  size: CUDA_CTX.size,
  readable: Object.freeze([{ offset: 0, size: CUDA_CTX.size }]),
  writable: Object.freeze([]),
});

export const CUDA_PROBE_TYPE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.CUDA_PROBE,
  name: "cuda_probe",
  // "kprobe" only for kernels of the target, in principle; the registry gives a prefix to one plugin,
  // which is why this plugin is opt-in (README).
  sectionPrefixes: Object.freeze(["cuda", "kprobe"]),
  contextSize: CUDA_CTX.size,
  context: "cuda probe context",
  contextLayout: CUDA_CONTEXT_LAYOUT,
});

export const CUDA_RETPROBE_TYPE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.CUDA_RETPROBE,
  name: "cuda_retprobe",
  sectionPrefixes: Object.freeze(["cudaret", "kretprobe"]),
  contextSize: CUDA_CTX.size,
  context: "cuda probe context",
  contextLayout: CUDA_CONTEXT_LAYOUT,
});

const xyz = (id: number, name: string, what: string): HelperDecl => ({
  id,
  name,
  description: `${what} into *x, *y, *z (u64 each); returns 0`,
  signature: { args: ["ptr_to_long", "ptr_to_long", "ptr_to_long"], ret: "scalar" },
});
const none = (id: number, name: string, description: string): HelperDecl => ({ id, name, description, signature: { args: [], ret: "scalar" } });

/** bpftime's GPU helpers, with its ids (kernel-names.ts names them too). */
export const CUDA_HELPERS: readonly HelperDecl[] = Object.freeze([
  { id: 501, name: "ebpf_puts", description: "writes a string (256 bytes at most) to the GPU ring buffer", signature: { args: ["ptr_to_const_str"], ret: "scalar" } },
  none(502, "bpf_get_globaltimer", "the GPU's %globaltimer, ns"),
  xyz(503, "bpf_get_block_idx", "%ctaid"),
  xyz(504, "bpf_get_block_dim", "%ntid"),
  xyz(505, "bpf_get_thread_idx", "%tid"),
  none(506, "bpf_gpu_membar", "membar.sys"),
  none(507, "bpf_cuda_exit", "ends the GPU thread (exit)"),
  xyz(508, "bpf_get_grid_dim", "%nctaid"),
  none(509, "bpf_get_sm_id", "%smid"),
  none(510, "bpf_get_warp_id", "%warpid"),
  none(511, "bpf_get_lane_id", "%laneid"),
]);

/** The section's private data: bpftime's names exactly, ours as patterns. */
export function parseCudaSection(type: AttachTypeSpec, rest: string, section: string): NvCudaPrivateData {
  const ours = section.startsWith("cuda/") || section.startsWith("cudaret/");
  const isRet = type.id === AttachTypeId.CUDA_RETPROBE;
  if (!ours && !isRet && rest === "__memcapture") return { kernel: "*", match: "pattern", at: "memory" };
  return { kernel: rest, match: ours ? "pattern" : "exact", at: isRet ? "exit" : "entry" };
}

/** Whether an attachment's program goes into the kernel with this mangled name. */
export function kernelSelector(data: NvCudaPrivateData): (mangled: string) => boolean {
  return data.match === "exact" ? (mangled) => mangled === data.kernel : (mangled) => kernelMatches(data.kernel, mangled);
}

export const plugin = definePlugin<NvCudaPrivateData>({
  name: "nv-cuda",
  version: "0.1.0",
  abiVersion: PLUGIN_ABI_VERSION,
  attachTypes: [CUDA_PROBE_TYPE, CUDA_RETPROBE_TYPE],
  privateDataSchema: schema,
  // The interception library (later part of issue 13); not built yet.
  nativeLibrary: path.resolve(__dirname, "..", "build", "libbpfhook_nv_cuda.so"),
  helpers: CUDA_HELPERS,
  parseSection: parseCudaSection,
  parseConfig: (type, entry) => ({
    kernel: entry.kernel,
    match: "pattern",
    at: type.id === AttachTypeId.CUDA_RETPROBE ? "exit" : entry.memory === true ? "memory" : "entry",
  }),
  prepare: ({ data, program }) => {
    throw new Error(
      `prog '${program?.name ?? "?"}' on kernel '${data.kernel}': interception not built yet ` +
        "(the CUDA runtime hooks that load the instrumented module are a later part of issue 13; " +
        "`bpfhook ptx` shows the PTX the program compiles to)",
    );
  },
  encode: () => {
    throw new Error("interception not built yet");
  },
  describe: ({ data }) => `CUDA kernel '${data.kernel}' (${data.at})`,
});

export default plugin;
