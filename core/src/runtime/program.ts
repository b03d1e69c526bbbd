/**
 * A program loaded into the runtime: a VM, compiled unless the interpreter
 * was asked for. It knows its section, so attach() with no arguments lets the
 * section pick the plugin, as libbpf's auto-attach does.
 */
import type { AttachProgramCode } from "@bpfhook/sdk";
import type { NativeProgram } from "../native/addon-types.js";
import type { AttachOptions, Runtime } from "./runtime.js";
import type { Link } from "./link.js";
import type { ProgramVerification } from "./verification.js";

export class Program {
  /** Helper ids its instructions call, sorted; -1 stands for a call by register (callx). */
  readonly helperIds: readonly number[];

  constructor(
    private readonly runtime: Runtime,
    readonly name: string,
    /** ELF section, or "" for a program given as raw instructions. */
    readonly section: string,
    /** @internal */ readonly native: NativeProgram,
    insns: Uint8Array = new Uint8Array(0),
    /**
     * @internal Strict mode: the verdicts so far. attach() verifies again
     * against the chosen type's context when it differs from the one of the
     * load; run() against the bytes it is given. Absent in checked and off modes.
     */
    readonly verification?: ProgramVerification,
    /** @internal The linked code and the object's maps, handed to plugins at attach (AttachProgramInfo.code). */
    readonly code?: AttachProgramCode,
  ) {
    this.helperIds = helperCalls(insns);
  }

  /** Attaches by section (no options) or by explicit type and private data. */
  attach(options?: AttachOptions): Promise<Link> {
    return this.runtime.attach(this, options);
  }

  /** Runs the program once on `ctx` (tests, custom drivers); returns r0. */
  run(ctx?: Uint8Array): bigint {
    this.verification?.requireRun(ctx?.length ?? 0);
    return this.native.run(ctx);
  }

  /**
   * Runs that faulted and the last fault's message. In checked mode a bad
   * memory access or an exhausted budget ends the run (an attached program's
   * run then counts as returning 0) instead of crashing the process.
   */
  get faults(): { count: number; last?: string } {
    return this.native.faults;
  }

  /** Bytes of x86-64 code, 0 in the interpreter. */
  get jitSize(): number {
    return this.native.jitSize;
  }
}

/**
 * The helpers a program calls: `call imm` with src_reg 0 (1 is a call of a
 * subprogram, 2 a kfunc). `callx` (0x8d) calls a helper chosen at run time,
 * reported as -1.
 */
export function helperCalls(insns: Uint8Array): number[] {
  const ids = new Set<number>();
  const view = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  for (let off = 0; off + 8 <= insns.byteLength; off += 8) {
    const opcode = view.getUint8(off);
    const src = view.getUint8(off + 1) >> 4;
    if (opcode === 0x85 && src === 0) ids.add(view.getInt32(off + 4, true));
    else if (opcode === 0x8d) ids.add(-1);
    else if (opcode === 0x18) off += 8; // lddw: two slots
  }
  return [...ids].sort((a, b) => a - b);
}
