/**
 * The verifier's verdict per program of an object, as `bpfhook verify` and
 * `bpfhook inspect` report it: each program verified as a strict load
 * would (the context of the attach type its section selects, or the one
 * `--context` names; its maps; the standard helpers and the registered
 * plugins' declared ones).
 */
import { BpfhookError } from "../errors.js";
import type { BpfObject, ProgramSpec } from "../loader/index.js";
import type { PluginRegistry } from "../plugins/registry.js";
import {
  contextOfSection,
  contextOfType,
  UNKNOWN_CONTEXT,
  verifierHelpers,
  verifierMaps,
  type VerifyFunction,
} from "../runtime/verification.js";
import type { ContextLayout, VerifyResult } from "../verifier/types.js";

export interface ProgramVerdict {
  program: string;
  section: string;
  /** The context verified against ("pt_regs", "unknown context"). */
  context: string;
  contextSize: number;
  ok: boolean;
  /**
   * A strict load would refuse the object because of this program. False
   * for a program refused only with UNKNOWN_CONTEXT (its section selects no
   * attach type): the load keeps it, and its attach verifies it.
   */
  refusesLoad: boolean;
  /** The verifier's message when refused. */
  error?: string;
  pc?: number;
  insnsProcessed: number;
  ms: number;
}

/** Verifies `programs` of `obj` (all when `only` is undefined) with `context` (default: by section). */
export function verifyPrograms(
  obj: BpfObject,
  registry: PluginRegistry,
  verify: VerifyFunction,
  opts: { only?: string; contextType?: string | number } = {},
): ProgramVerdict[] {
  const progs: ProgramSpec[] = opts.only === undefined ? obj.programs : obj.programs.filter((p) => p.name === opts.only);
  if (progs.length === 0) {
    throw new BpfhookError(
      "NOT_FOUND",
      `${obj.file ?? "(object)"}: no program '${opts.only}' (programs: ${obj.programs.map((p) => p.name).join(", ") || "none"})`,
      { symbol: opts.only },
    );
  }
  let forced: ContextLayout | undefined;
  if (opts.contextType !== undefined) {
    const asId = typeof opts.contextType === "string" && /^\d+$/.test(opts.contextType) ? Number(opts.contextType) : opts.contextType;
    forced = contextOfType(registry.type(asId).type);
  }
  const maps = verifierMaps(obj.maps);
  const helpers = verifierHelpers(registry.list());
  return progs.map((p) => {
    const context = forced ?? contextOfSection(registry, p.section);
    const r: VerifyResult = verify(p.name, p.insns, { maps, context, helpers });
    const v: ProgramVerdict = {
      program: p.name,
      section: p.section,
      context: context.name,
      contextSize: context.size,
      ok: r.ok,
      refusesLoad: !r.ok && context !== UNKNOWN_CONTEXT,
      insnsProcessed: r.stats.insnsProcessed,
      ms: r.stats.ms,
    };
    if (!r.ok) {
      v.error = r.error.message;
      v.pc = r.error.pc;
    }
    return v;
  });
}

/** One line per verdict, for people. */
export function verdictLine(v: ProgramVerdict): string {
  const where = `${v.program} (${v.context}, ${v.contextSize} bytes)`;
  if (v.ok) return `${where}: ok (${v.insnsProcessed} insns processed, ${v.ms.toFixed(1)} ms)`;
  const note = v.refusesLoad ? "" : " [no attach type selected by its section: verified again at attach, or give --context]";
  return `${where}: refused: ${v.error}${note}`;
}
