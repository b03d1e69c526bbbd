/**
 * The bpf_conformance suite on a GPU (npm run test:gpu): one module with
 * every program and, per program, `.visible .entry bh_conf_<i>(.param .u64
 * mem, .param .u64 out)` that calls it with r1 = the device copy of its
 * `-- mem` bytes and stores r0 at `out`; a manifest the runner
 * (native/tests/conformance_runner.c) reads: one line per program,
 * `<entry> <name> <mem hex or -> <expected r0 hex>`.
 */
import { compileProgram, type BpfProgramInput } from "./compile.js";
import { functionsPtx, ptxVersionFor } from "./module.js";

export interface ConformanceProgram extends BpfProgramInput {
  /** The `-- mem` bytes (r1 points at a device copy), empty when none. */
  readonly mem: Uint8Array;
  readonly expected: bigint;
}

export interface ConformanceModule {
  readonly ptx: string;
  readonly manifest: string;
  /** Programs left out, with the compiler's reason. */
  readonly refused: readonly string[];
}

export function conformanceModule(programs: readonly ConformanceProgram[], arch: number): ConformanceModule {
  const compiled = [];
  const kept: ConformanceProgram[] = [];
  const refused: string[] = [];
  for (const p of programs) {
    try {
      compiled.push(compileProgram(p, { symbol: `bh_conf_prog_${kept.length}` }));
      kept.push(p);
    } catch (e) {
      refused.push(`${p.name}: ${(e as Error).message}`);
    }
  }
  const parts = [`// bpfhook: the bpf_conformance suite on the device`, `.version ${ptxVersionFor(arch)}`, `.target sm_${arch}`, ".address_size 64", "", functionsPtx(compiled)];
  const lines: string[] = [];
  compiled.forEach((c, i) => {
    parts.push(
      `.visible .entry bh_conf_${i}(.param .u64 mem, .param .u64 out)`,
      "{",
      "\t.reg .b64 %m, %o, %r;",
      "\tld.param.u64 %m, [mem];",
      "\tld.param.u64 %o, [out];",
      "\t{",
      "\t.param .b64 a;",
      "\t.param .b64 r;",
      "\tst.param.b64 [a], %m;",
      `\tcall (r), ${c.symbol}, (a);`,
      "\tld.param.b64 %r, [r];",
      "\t}",
      "\tst.global.u64 [%o], %r;",
      "\tret;",
      "}",
      "",
    );
    const p = kept[i]!;
    const mem = p.mem.length > 0 ? Buffer.from(p.mem).toString("hex") : "-";
    lines.push(`bh_conf_${i} ${p.name} ${mem} ${BigInt.asUintN(64, p.expected).toString(16)}`);
  });
  return { ptx: parts.join("\n"), manifest: `${lines.join("\n")}\n`, refused };
}
