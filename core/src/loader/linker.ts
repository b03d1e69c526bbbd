/**
 * Builds each program's instruction stream the way libbpf does: the
 * program's own function first, then every subprogram it reaches
 * (transitively) appended once, with calls and function addresses rewritten
 * to point at the appended copies, and map / global data references
 * rewritten into lddw src 5 / 6 that name a map by index.
 */
import { unsupportedCoreKind, type CoreRelocation } from "./btf-ext.js";
import type { LoadContext } from "./context.js";
import type { BpfFunction, FunctionTable } from "./functions.js";
import {
  BPF_PSEUDO_CALL,
  BPF_PSEUDO_FUNC,
  BPF_PSEUDO_KFUNC_CALL,
  BPF_PSEUDO_MAP_IDX,
  BPF_PSEUDO_MAP_IDX_VALUE,
  INSN_SIZE,
  InsnView,
} from "./insn.js";
import type { InsnTarget, RelocationResolver } from "./relocations.js";
import type { LinkedFunction, ProgramSpec } from "./types.js";

/** CO-RE records by "section name" + instruction byte offset. */
export type CoreIndex = Map<string, CoreRelocation>;

export function indexCoreRelocations(records: readonly CoreRelocation[]): CoreIndex {
  return new Map(records.map((r) => [`${r.section}:${r.insnOffset}`, r]));
}

export class Linker {
  constructor(
    private readonly functions: FunctionTable,
    private readonly resolver: RelocationResolver,
    private readonly core: CoreIndex,
    private readonly ctx: LoadContext,
  ) {}

  /** The program being linked, so errors in a subprogram can name who uses it. */
  private program: BpfFunction | undefined;

  link(program: BpfFunction): ProgramSpec {
    this.program = program;
    // Functions get their place in the output when first referenced, so a
    // call can be patched before its target's instructions are copied.
    const placed = new Map<BpfFunction, number>();
    const order: BpfFunction[] = [];
    let length = 0;
    const place = (fn: BpfFunction): number => {
      let start = placed.get(fn);
      if (start === undefined) {
        start = length;
        placed.set(fn, start);
        order.push(fn);
        length += fn.count;
      }
      return start;
    };
    place(program);

    const chunks: Uint8Array[] = [];
    // `order` grows while we walk it: that is the transitive closure.
    for (let i = 0; i < order.length; i++) {
      const fn = order[i]!;
      chunks.push(this.relocate(fn, placed.get(fn)!, place));
    }

    const insns = new Uint8Array(length * INSN_SIZE);
    let at = 0;
    for (const chunk of chunks) {
      insns.set(chunk, at);
      at += chunk.byteLength;
    }
    const functions: LinkedFunction[] = order.map((fn) => ({ name: fn.name, section: fn.section.name, start: placed.get(fn)!, count: fn.count }));
    return {
      name: program.name,
      section: program.section.name,
      insns,
      offset: program.start * INSN_SIZE,
      size: program.count * INSN_SIZE,
      functions,
    };
  }

  /** A patched copy of one function's instructions, placed at instruction `base` of the output. */
  private relocate(fn: BpfFunction, base: number, place: (fn: BpfFunction) => number): Uint8Array {
    const from = fn.start * INSN_SIZE;
    const code = fn.section.data.slice(from, from + fn.count * INSN_SIZE);
    // Output position of a code target: its function's place plus the distance into it.
    const positionOf = (target: Extract<InsnTarget, { kind: "code" }>, local: number): number => {
      const callee = this.functions.at(target.section.index, target.index);
      if (callee === undefined) {
        this.ctx.invalid(`call or function address leads to instruction ${target.index} of '${target.section.name}', which is in no function`, {
          section: fn.section.name,
          func: fn.name,
          offset: (fn.start + local) * INSN_SIZE,
        });
      }
      return place(callee) + (target.index - callee.start);
    };

    for (let local = 0; local < fn.count; local++) {
      const index = fn.start + local; // in the section
      const pc = base + local; // in the output
      const insn = new InsnView(code, local);
      this.checkCore(fn, index);

      if (insn.isCall) {
        if (insn.src === BPF_PSEUDO_KFUNC_CALL) {
          this.ctx.unsupported("kfunc calls are not supported", { section: fn.section.name, func: fn.name, offset: index * INSN_SIZE });
        }
        // clang marks bpf-to-bpf calls (and calls to externs) with src 1.
        if (insn.src === BPF_PSEUDO_CALL || this.resolver.hasRelocation(fn, index)) {
          const target = this.resolver.callTarget(fn, index, insn);
          if (target.kind === "code") {
            insn.imm = positionOf(target, local) - pc - 1;
            insn.src = BPF_PSEUDO_CALL;
          }
        }
        continue;
      }

      if (insn.isLdImm64) {
        if (local + 1 >= fn.count) {
          this.ctx.invalid("lddw is missing its second slot", { section: fn.section.name, func: fn.name, offset: index * INSN_SIZE });
        }
        const target = this.resolver.loadTarget(fn, index, insn);
        const second = new InsnView(code, local + 1);
        if (target?.kind === "map") {
          insn.src = BPF_PSEUDO_MAP_IDX;
          insn.imm = target.map;
          second.imm = 0;
        } else if (target?.kind === "map-value") {
          insn.src = BPF_PSEUDO_MAP_IDX_VALUE;
          insn.imm = target.map;
          second.imm = target.offset;
        } else if (target?.kind === "unknown-extern") {
          const p = this.program!;
          this.ctx.unsupported(
            `program '${p.name}' (section '${p.section.name}') uses this __kconfig extern, which bpfhook does not define ` +
              "(declare it __weak to read 0, or give its value in the kconfig load option)",
            { section: fn.section.name, func: fn.name, offset: index * INSN_SIZE, symbol: target.name },
          );
        } else if (target?.kind === "code") {
          insn.src = BPF_PSEUDO_FUNC;
          insn.imm = positionOf(target, local) - pc - 1;
          second.imm = 0;
        }
        // The second slot is data, not an instruction: skip it.
        local++;
        this.resolver.checkNone(fn, index + 1);
        continue;
      }

      this.resolver.checkNone(fn, index);
      const delta = insn.jumpDelta;
      if (delta !== undefined) {
        const dest = local + delta + 1;
        // Copying functions apart is only sound if no jump leaves its function.
        if (dest < 0 || dest >= fn.count) {
          this.ctx.invalid(`jump to instruction ${index + delta + 1} leaves the function`, { section: fn.section.name, func: fn.name, offset: index * INSN_SIZE });
        }
      }
    }
    return code;
  }

  private checkCore(fn: BpfFunction, index: number): void {
    const record = this.core.get(`${fn.section.name}:${index * INSN_SIZE}`);
    if (record === undefined) return;
    const why = unsupportedCoreKind(record.kind);
    if (why !== undefined) {
      this.ctx.unsupported(`${why} (type ${record.typeId}, access '${record.accessString}')`, {
        section: fn.section.name,
        func: fn.name,
        offset: index * INSN_SIZE,
      });
    }
  }
}
