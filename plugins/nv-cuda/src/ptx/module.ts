/**
 * Whole modules: the runtime plus compiled programs, either on their own
 * (`bpfhook ptx`: a module `ptxas` accepts by itself, with a trivial entry per
 * program) or inserted into a kernel module's PTX (instrumentPtx).
 */
import { compileProgram, type BpfMapInput, type BpfProgramInput, type CompiledProgram } from "./compile.js";
import { instrumentModule, type InstrumentResult, type ProbeInsertion } from "./insert.js";
import { runtimePtx } from "./runtime.js";

/** The PTX ISA version a standalone module declares for an arch (the lowest the arch accepts). */
export function ptxVersionFor(arch: number): string {
  if (arch >= 120) return "8.7";
  if (arch >= 100) return "8.6";
  if (arch >= 90) return "7.8";
  if (arch >= 89) return "7.8";
  if (arch >= 80) return "7.0";
  if (arch >= 75) return "6.3";
  return "6.0";
}

/** The archs a module can target: the runtime's instructions (%globaltimer, 64-bit atomics) need sm_30. */
export const MIN_ARCH = 30;
export const MAX_ARCH = 999;

/** "sm_90" or "90" to 90. */
export function parseArch(arch: string): number {
  const m = /^(?:sm_|compute_)?(\d+)[a-z]?$/.exec(arch);
  if (!m) throw new Error(`arch '${arch}' is not sm_<number>`);
  const n = Number(m[1]);
  if (n < MIN_ARCH || n > MAX_ARCH) throw new Error(`arch '${arch}' is out of range (sm_${MIN_ARCH} to sm_${MAX_ARCH})`);
  return n;
}

/** The shared functions text of several compiled programs: one runtime (the helpers they call) and each program. */
export function functionsPtx(compiled: readonly CompiledProgram[]): string {
  const helpers = [...new Set(compiled.flatMap((c) => c.helpers))].sort((a, b) => a - b);
  const slots = Math.max(1, ...compiled.map((c) => c.mapSlots));
  return [runtimePtx({ mapSlots: slots, helpers }), ...compiled.map((c) => c.ptx)].join("\n");
}

export interface StandaloneOptions {
  readonly arch?: string;
  readonly maps?: readonly BpfMapInput[];
  /** Add `.visible .entry bh_entry_<prog>(.param .u64 ctx)` calling each program (default true). */
  readonly entries?: boolean;
}

/** A module with the programs and the runtime that `ptxas -arch <arch>` accepts on its own. */
export function standaloneModule(programs: readonly BpfProgramInput[], options: StandaloneOptions = {}): string {
  const arch = parseArch(options.arch ?? "sm_90");
  const compiled = programs.map((p) => compileProgram(p, { maps: options.maps, visible: true }));
  const parts = [
    `// bpfhook ptx: ${programs.map((p) => p.name).join(", ")}`,
    `.version ${ptxVersionFor(arch)}`,
    `.target sm_${arch}`,
    ".address_size 64",
    "",
    functionsPtx(compiled),
  ];
  if (options.entries !== false) {
    for (const c of compiled) {
      parts.push(
        `.visible .entry bh_entry_${c.symbol}(.param .u64 ctx)`,
        "{",
        "\t.reg .b64 %c;",
        "\tld.param.u64 %c, [ctx];",
        "\t{",
        "\t.param .b64 a;",
        "\t.param .b64 r;",
        "\tst.param.b64 [a], %c;",
        `\tcall (r), ${c.symbol}, (a);`,
        "\t}",
        "\tret;",
        "}",
        "",
      );
    }
  }
  return parts.join("\n");
}

/** One program to insert, with its kind and kernel selector. */
export interface ProgramInsertion {
  readonly program: BpfProgramInput;
  readonly kind: ProbeInsertion["kind"];
  readonly kernel: (mangled: string) => boolean;
}

/**
 * A guard around each inserted program: `bh_prog_off[i]` (a `.visible`
 * global, zero at load) turned non-zero by the host switches program `i` off
 * in a loaded module (detach of one attachment while the others stay): one
 * uniform global load and branch per probe call.
 */
export function guardsPtx(symbols: readonly string[]): string {
  const out = [`.visible .global .align 4 .u32 bh_prog_off[${Math.max(1, symbols.length)}];`, ""];
  symbols.forEach((symbol, i) => {
    out.push(
      `.func (.param .b64 r) bh_guard_${i}(.param .b64 c)`,
      "{",
      "\t.reg .pred %p;",
      "\t.reg .b32 %o;",
      "\t.reg .b64 %c;",
      `\tld.global.u32 %o, [bh_prog_off+${4 * i}];`,
      "\tsetp.ne.u32 %p, %o, 0;",
      "\t@%p bra $__bh_off;",
      "\tld.param.u64 %c, [c];",
      "\t{",
      "\t.param .b64 a;",
      "\t.param .b64 rr;",
      "\tst.param.b64 [a], %c;",
      `\tcall (rr), ${symbol}, (a);`,
      "\t}",
      "$__bh_off:",
      "\tst.param.b64 [r], 0;",
      "\tret;",
      "}",
      "",
    );
  });
  return out.join("\n");
}

/** Compiles the programs and inserts them into a kernel module's PTX (one object's maps); program i is behind guard slot i. */
export function instrumentPtx(ptx: string, insertions: readonly ProgramInsertion[], maps?: readonly BpfMapInput[]): InstrumentResult {
  const compiled = insertions.map((ins, i) =>
    compileProgram(ins.program, { maps, symbol: `bpf_prog_${i}_${ins.program.name.replace(/[^A-Za-z0-9_$]/g, "_")}` }),
  );
  return instrumentModule(ptx, {
    functions: `${functionsPtx(compiled)}\n${guardsPtx(compiled.map((c) => c.symbol))}`,
    probes: insertions.map((ins, i) => ({
      symbol: `bh_guard_${i}`,
      kind: ins.kind,
      kernel: ins.kernel,
      contextReads: compiled[i]!.contextReads,
    })),
  });
}
