/**
 * A program loaded into the runtime: a VM, compiled unless the interpreter
 * was asked for. It knows its section, so attach() with no arguments lets the
 * section pick the plugin, as libbpf's auto-attach does.
 */
import type { NativeProgram } from "../native/addon-types.js";
import type { AttachOptions, Runtime } from "./runtime.js";
import type { Link } from "./link.js";

export class Program {
  constructor(
    private readonly runtime: Runtime,
    readonly name: string,
    /** ELF section, or "" for a program given as raw instructions. */
    readonly section: string,
    /** @internal */ readonly native: NativeProgram,
  ) {}

  /** Attaches by section (no options) or by explicit type and private data. */
  attach(options?: AttachOptions): Promise<Link> {
    return this.runtime.attach(this, options);
  }

  /** Runs the program once on `ctx` (tests, custom drivers); returns r0. */
  run(ctx?: Uint8Array): bigint {
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
