/**
 * `bpfhook ptx OBJECT.bpf.o [--program NAME] [--arch sm_90]`: the PTX the
 * nv-cuda plugin compiles a program to, as a module `ptxas` accepts on its
 * own (the runtime, the program's functions and a trivial entry calling
 * each). The compiler lives in @bpfhook/plugin-nv-cuda, loaded when the
 * command runs so that core does not depend on the plugin.
 */
import { BpfhookError } from "../errors.js";
import { loadObject } from "../loader/index.js";
import type { MapSpec, ProgramSpec } from "../loader/index.js";

const PLUGIN = "@bpfhook/plugin-nv-cuda";

/** The part of the plugin this command uses. */
interface NvCudaCompiler {
  standaloneModule(programs: readonly ProgramSpec[], options: { arch?: string; maps?: readonly MapSpec[] }): string;
  parseArch(arch: string): number;
}

function loadCompiler(): NvCudaCompiler {
  try {
    return require(PLUGIN) as NvCudaCompiler;
  } catch (err) {
    throw new BpfhookError("PLUGIN_NOT_FOUND", `the PTX compiler is in ${PLUGIN}, which cannot be loaded: ${(err as Error).message}`);
  }
}

export function ptxCommand(file: string, opts: { program?: string; arch?: string }): string {
  const compiler = loadCompiler();
  const arch = opts.arch ?? "sm_90";
  try {
    compiler.parseArch(arch);
  } catch (err) {
    throw new BpfhookError("BAD_ARGUMENT", `--arch: ${(err as Error).message}`);
  }
  const obj = loadObject(file);
  const progs = opts.program ? obj.programs.filter((p) => p.name === opts.program) : obj.programs;
  if (progs.length === 0) {
    throw new BpfhookError(
      "NOT_FOUND",
      opts.program
        ? `${file}: no program '${opts.program}' (programs: ${obj.programs.map((p) => p.name).join(", ")})`
        : `${file}: has no programs`,
    );
  }
  try {
    return compiler.standaloneModule(progs, { arch, maps: obj.maps });
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code === "PTX_COMPILE") throw new BpfhookError("VM_COMPILE", `${file}: ${e.message}`);
    throw err;
  }
}
