/**
 * The nv-cuda plugin: eBPF programs inside CUDA kernels (bpftime's attach
 * types 8, CUDA probe, and 9, CUDA retprobe).
 *
 * Sections: bpftime's `kprobe/<mangled kernel>` and `kretprobe/<mangled kernel>`
 * (and `kprobe/__memcapture`, its memory capture), and ours, `cuda/<kernel>`
 * and `cudaret/<kernel>`, where <kernel> is the mangled name, the base name
 * (`vectorAdd`, `ns::kernel`) or a glob over either.
 *
 * The fat binary reader (src/fatbin), the eBPF-to-PTX compiler, its runtime
 * and the insertion passes (src/ptx); prepare() builds the instrumented module
 * for the target (src/intercept.ts) and the native piece (native/plugin.cpp)
 * hooks the CUDA runtime in the target and launches it. src/gpu-maps.ts reads
 * the GPU-resident maps' layouts on the host.
 */
import path from "node:path";
import { z } from "zod";
import { AttachTypeId, definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, HelperDecl } from "@bpfhook/sdk";
import { CUDA_CTX } from "./ptx/context.js";
import { kernelMatches } from "./ptx/names.js";
import { encodeModule, prepareModule, targetKernels, targetObjects, type PreparedModule, type ProgramToInsert } from "./intercept.js";

/** Programs attached so far per object (its maps array) and executable: one module holds them all. */
const objectPrograms = new WeakMap<object, Map<string, ProgramToInsert[]>>();

export * from "./fatbin/index.js";
export * from "./ptx/index.js";
export * from "./intercept.js";
export * from "./gpu-maps.js";

const schema = z.object({
  /** Mangled name, base name or glob (`cuda/`), or the exact mangled name (`kprobe/`). */
  kernel: z.string().min(1, "kernel name must not be empty").max(4096),
  /** "exact": bpftime's sections (the mangled name as written); "pattern": ours. */
  match: z.enum(["exact", "pattern"]),
  /** Where in the kernel the program runs. */
  at: z.enum(["entry", "exit", "memory"]),
});
/** The section's data, and after prepare() the instrumented module for the target. */
export type NvCudaPrivateData = z.infer<typeof schema> & { readonly prepared?: PreparedModule };

export const CUDA_CONTEXT_LAYOUT: ContextLayout = Object.freeze({
  name: "cuda probe context",
  size: CUDA_CTX.size,
  readable: Object.freeze([{ offset: 0, size: CUDA_CTX.size }]),
  writable: Object.freeze([]),
});

export const CUDA_PROBE_TYPE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.CUDA_PROBE,
  name: "cuda_probe",
  // bpftime's "kprobe/<kernel>" is shared: taken when the name is a CUDA kernel of the target
  // (claimsSection), so a kernel-kprobe plugin keeps the others.
  sectionPrefixes: Object.freeze(["cuda"]),
  sharedPrefixes: Object.freeze(["kprobe"]),
  contextSize: CUDA_CTX.size,
  context: "cuda probe context",
  contextLayout: CUDA_CONTEXT_LAYOUT,
});

export const CUDA_RETPROBE_TYPE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.CUDA_RETPROBE,
  name: "cuda_retprobe",
  sectionPrefixes: Object.freeze(["cudaret"]),
  sharedPrefixes: Object.freeze(["kretprobe"]),
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

/**
 * Whether bpftime's `kprobe/<name>` / `kretprobe/<name>` is a CUDA probe: the
 * name is a kernel (mangled, exactly) of the target's executable or shared
 * objects, or `kprobe/__memcapture` in a target with kernels. A target that
 * cannot be read claims nothing.
 */
export function claimsCudaSection(type: AttachTypeSpec, rest: string, pid: number | undefined): boolean {
  try {
    const kernels = targetKernels(pid);
    if (rest === "__memcapture" && type.id === AttachTypeId.CUDA_PROBE) return kernels.size > 0;
    return kernels.has(rest);
  } catch {
    return false;
  }
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
  nativeLibrary: path.resolve(__dirname, "..", "build", "libbpfhook_nv_cuda.so"),
  helpers: CUDA_HELPERS,
  parseSection: parseCudaSection,
  claimsSection: (type, rest, _section, target) => claimsCudaSection(type, rest, target?.pid),
  parseConfig: (type, entry) => ({
    kernel: entry.kernel,
    match: "pattern",
    at: type.id === AttachTypeId.CUDA_RETPROBE ? "exit" : entry.memory === true ? "memory" : "entry",
  }),
  // The target's executable (agent mode: the process the agent runs in;
  // embedded: this one): its fat binary's PTX with the program inserted, and
  // where its runtime functions are.
  prepare: ({ data, program }, host) => {
    const where = `prog '${program?.name ?? "?"}' on kernel '${data.kernel}'`;
    if (!program?.code) throw new Error(`${where}: the program's instructions were not given (load it from an object)`);
    // The executable and the shared objects with kernels mapped in the target.
    const files = targetObjects(host.target?.pid);
    const exe = files[0]!;
    const insertion: ProgramToInsert = {
      name: program.name,
      section: program.section,
      code: program.code,
      kind: data.at,
      kernel: kernelSelector(data),
      kernelPattern: data.kernel,
    };
    // The object's programs attached to this executable so far share its module (keyed by the object's maps array).
    const byExe = objectPrograms.get(program.code.maps) ?? new Map<string, ProgramToInsert[]>();
    objectPrograms.set(program.code.maps, byExe);
    const sameAttach = (p: ProgramToInsert): boolean => p.name === insertion.name && p.kind === insertion.kind && p.kernelPattern === insertion.kernelPattern;
    const programs = [...(byExe.get(exe) ?? []).filter((p) => !sameAttach(p)), insertion];
    try {
      const prepared = prepareModule({ exe: files, programs });
      for (const w of prepared.warnings) host.log("warn", `${where}: ${w}`);
      byExe.set(exe, programs);
      return { ...data, prepared };
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
  },
  encode: ({ type, data }) => {
    if (!data.prepared) throw new Error(`kernel '${data.kernel}': encode() before prepare(); the module is not built yet`);
    return encodeModule(type.id, data.prepared);
  },
  describe: ({ data }) =>
    data.prepared ? `CUDA ${data.prepared.description} in ${data.prepared.modules.map((m) => m.where).join("; ")}` : `CUDA kernel '${data.kernel}' (${data.at})`,
});

export default plugin;
