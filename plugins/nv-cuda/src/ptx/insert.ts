/**
 * Insertion passes on PTX text. The module is parsed only as far as needed:
 * its header (`.version`, `.target`, `.address_size`, kept as they are), each
 * `.entry` (name, parameters, body by brace matching outside comments), and
 * the body's instructions line by line.
 *
 *  - entry probes: after the body's leading declarations, the context
 *    (context.ts) is filled (indices, dims, the kernel's parameters from its
 *    `.param` space) and each entry program is called with it;
 *  - exit probes: before every `ret;` / `exit;`, predicated ones included
 *    (`@%p ret;` becomes `@!%p bra skip; <probes> ret; skip:`), labels kept;
 *  - memory capture: after each `ld.global*` / `st.global*`, the address
 *    (taken before the instruction, which may overwrite its own address
 *    register), size and kind go into the context and the memory programs
 *    run, under the instruction's predicate.
 * The runtime and the programs' functions go right after the header.
 */
import { CUDA_CTX } from "./context.js";
import type { ContextReads } from "./ctx-reads.js";

export interface PtxParam {
  readonly name: string;
  /** `.u64`, `.f32` ...; `.b8` for aggregates. */
  readonly type: string;
  /** Element count of an aggregate (`.b8 p[16]`), else undefined. */
  readonly arraySize?: number;
  readonly align?: number;
}

export interface PtxEntry {
  readonly name: string;
  readonly params: readonly PtxParam[];
  /** Offsets in the module text: body from `{` to its `}` inclusive. */
  readonly bodyStart: number;
  readonly bodyEnd: number;
}

export interface PtxModuleInfo {
  readonly version?: string;
  readonly target?: string;
  readonly addressSize?: number;
  /** Offset just after the header's last directive line. */
  readonly headerEnd: number;
  readonly entries: readonly PtxEntry[];
}

export class PtxInsertError extends Error {
  readonly code = "PTX_INSERT";
  constructor(message: string) {
    super(message);
    this.name = "PtxInsertError";
  }
}

/** Replaces comments by spaces of the same length, so offsets stay valid. */
function blankComments(text: string): string {
  return text.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, " "));
}

export function parsePtxModule(ptx: string): PtxModuleInfo {
  const text = blankComments(ptx);
  const version = /^\s*\.version\s+(\d+\.\d+)/m.exec(text)?.[1];
  const target = /^\s*\.target\s+([^\n]+)/m.exec(text)?.[1]?.trim();
  const addr = /^\s*\.address_size\s+(\d+)/m.exec(text);
  let headerEnd = 0;
  for (const re of [/^\s*\.version[^\n]*\n?/m, /^\s*\.target[^\n]*\n?/m, /^\s*\.address_size[^\n]*\n?/m]) {
    const m = re.exec(text);
    if (m) headerEnd = Math.max(headerEnd, m.index + m[0].length);
  }
  const entries: PtxEntry[] = [];
  // The parameter list is optional in PTX (`.entry k {` or `.entry k .maxntid 32 {`).
  const entryRe = /\.entry\s+([A-Za-z_$%][\w$]*)\s*(\()?/g;
  let m: RegExpExecArray | null;
  while ((m = entryRe.exec(text)) !== null) {
    const name = m[1]!;
    const open = m.index + m[0].length;
    let close = open - 1;
    let params: PtxParam[] = [];
    if (m[2] !== undefined) {
      close = text.indexOf(")", open);
      if (close < 0) throw new PtxInsertError(`.entry ${name}: parameter list has no ')'`);
      params = parseParams(text.slice(open, close), name);
    }
    const brace = text.indexOf("{", close);
    if (brace < 0) throw new PtxInsertError(`.entry ${name}: no body`);
    // Only performance directives (.maxntid ...) may stand between ')' and '{'.
    if (text.slice(close + 1, brace).includes(";")) throw new PtxInsertError(`.entry ${name}: a declaration without a body`);
    let depth = 0;
    let end = -1;
    for (let i = brace; i < text.length; i++) {
      if (text[i] === "{") depth++;
      else if (text[i] === "}" && --depth === 0) {
        end = i;
        break;
      }
    }
    if (end < 0) throw new PtxInsertError(`.entry ${name}: body has no closing '}'`);
    entries.push({ name, params, bodyStart: brace, bodyEnd: end + 1 });
    entryRe.lastIndex = end + 1;
  }
  return { version, target, addressSize: addr ? Number(addr[1]) : undefined, headerEnd, entries };
}

function parseParams(list: string, entry: string): PtxParam[] {
  const out: PtxParam[] = [];
  for (const raw of list.split(",")) {
    const p = raw.trim();
    if (p === "") continue;
    const tokens = p.split(/\s+/);
    if (tokens[0] !== ".param") throw new PtxInsertError(`.entry ${entry}: parameter '${p}' is not a .param`);
    const last = tokens[tokens.length - 1]!;
    const arr = /^([\w$]+)\[(\d+)\]$/.exec(last);
    const type = tokens.find((t) => /^\.(u|s|b|f)(8|16|32|64)$/.test(t));
    if (!type) throw new PtxInsertError(`.entry ${entry}: parameter '${p}' has no type`);
    const alignAt = tokens.indexOf(".align");
    out.push({
      name: arr ? arr[1]! : last,
      type,
      arraySize: arr ? Number(arr[2]) : undefined,
      align: alignAt >= 0 ? Number(tokens[alignAt + 1]) : undefined,
    });
  }
  return out;
}

/** One compiled program to insert: its function and where it runs. */
export interface ProbeInsertion {
  /** The program's `.func (.param .b64 ret) <symbol>(.param .b64 ctx)`. */
  readonly symbol: string;
  readonly kind: "entry" | "exit" | "memory";
  /** Whether the probe goes into this kernel (by mangled name). */
  readonly kernel: (mangled: string) => boolean;
  /** The context bytes it reads (compileProgram's answer); absent: all of them. */
  readonly contextReads?: ContextReads;
}

/** The context's 8-byte slots some probe reads; undefined: all. */
function slotsRead(probes: readonly ProbeInsertion[]): Set<number> | undefined {
  const slots = new Set<number>();
  for (const p of probes) {
    if (p.contextReads === undefined || p.contextReads.all) return undefined;
    for (const r of p.contextReads.ranges) {
      for (let b = Math.max(0, r.offset); b < r.offset + r.size && b < CUDA_CTX.size; b += 1) slots.add(Math.floor(b / 8));
    }
  }
  return slots;
}

export interface InstrumentOptions {
  readonly probes: readonly ProbeInsertion[];
  /** PTX inserted once after the header: the runtime and every program's functions. */
  readonly functions: string;
}

/** What instrumentModule did to one kernel. */
export interface KernelInstrumented {
  readonly entry: number;
  readonly exit: number;
  readonly memory: number;
  /** Global loads and stores given the memory probes. */
  readonly memoryAccesses: number;
  /** Global loads and stores left without them: a type whose size the pass cannot tell (fp8 forms ...). */
  readonly memorySkipped: readonly string[];
}

export interface InstrumentResult {
  readonly ptx: string;
  /** Kernels changed, with the probes each got. */
  readonly kernels: ReadonlyMap<string, KernelInstrumented>;
}

const SCALAR_BYTES: Record<string, number> = { "8": 1, "16": 2, "32": 4, "64": 8, "128": 16 };

/** Bytes one global load or store moves, from its type suffixes (`.v4.f32`: 16); undefined when unknown. */
export function accessSize(opcode: string): number | undefined {
  const parts = opcode.split(".");
  let vec = 1;
  let bytes: number | undefined;
  for (const part of parts) {
    const v = /^v(\d+)$/.exec(part);
    if (v) vec = Number(v[1]);
    const t = /^(?:u|s|b|f|bf)(8|16|32|64|128)(x2)?$/.exec(part);
    if (t) bytes = SCALAR_BYTES[t[1]!]! * (t[2] ? 2 : 1);
  }
  return bytes === undefined ? undefined : bytes * vec;
}

/**
 * `ret;` / `exit;` as a whole statement: optional label, optional guard
 * predicate (`@%p`, `@!%p`, or a predicate named without `%`), `.uni`.
 */
const RET_LINE = /^(\s*)((?:[$\w]+:\s*)?)(@!?[%$\w]+\s+)?(ret|exit)(\.uni)?\s*;\s*$/;
/** A statement that starts with ret/exit (after a label and a guard), in whatever form. */
const RET_START = /^\s*(?:[$\w]+:\s*)?(?:@\S+\s+)?(ret|exit)(\.\w+)?\s*(;|$)/;

/**
 * The body of `entry` as lines of one statement each (plus the line each came
 * from, 1-based in the module), with the comments blanked in `codes` (same
 * offsets). A line holding several statements (`add ...; ret;`) or a
 * statement inside braces on one line (`{ ret; }`) is split, so that each
 * statement is seen on its own; other lines are kept as they are.
 */
function statementLines(ptx: string, blanked: string, entry: PtxEntry): { lines: string[]; codes: string[]; numbers: number[] } {
  const lines: string[] = [];
  const codes: string[] = [];
  const numbers: number[] = [];
  let number = ptx.slice(0, entry.bodyStart + 1).split("\n").length;
  let at = entry.bodyStart + 1;
  const end = entry.bodyEnd - 1;
  while (at <= end) {
    let nl = ptx.indexOf("\n", at);
    if (nl < 0 || nl > end) nl = end;
    const line = ptx.slice(at, nl);
    const code = blanked.slice(at, nl);
    // Statement boundaries: after each ';', and after a block brace where a
    // statement starts (not a vector operand's `{%r1, %r2}`); a label may
    // stand before an opening one (`$L: {`).
    const cuts: number[] = [];
    let begin = 0;
    for (let k = 0; k < code.length; k++) {
      const ch = code[k]!;
      if (ch === ";" || ((ch === "{" || ch === "}") && /^\s*(?:[$\w]+:\s*)?$/.test(code.slice(begin, k)))) {
        cuts.push(k + 1);
        begin = k + 1;
      }
    }
    // Pieces [from, to) holding a statement; blanks and comments after the
    // last statement stay with it (same offsets in `line` and `code`).
    const pieces: [number, number][] = [];
    let from = 0;
    for (const c of cuts) {
      if (code.slice(from, c).trim() !== "") pieces.push([from, c]);
      from = c;
    }
    if (code.slice(from).trim() !== "" || pieces.length === 0) pieces.push([from, code.length]);
    else pieces[pieces.length - 1]![1] = code.length;
    if (pieces.length === 1) {
      lines.push(line);
      codes.push(code);
      numbers.push(number);
    } else {
      for (const [a, b] of pieces) {
        lines.push(`\t${line.slice(a, b)}`);
        codes.push(`\t${code.slice(a, b)}`);
        numbers.push(number);
      }
    }
    number++;
    at = nl + 1;
  }
  return { lines, codes, numbers };
}

/**
 * The comments of a line before and after its statement (`code` is the line
 * with comments blanked): kept on lines of their own when the statement is
 * rewritten, so a block comment that ends or starts on the line stays closed.
 */
function commentsAround(line: string, code: string): { pre?: string; post?: string } {
  const first = code.search(/\S/);
  if (first < 0) return {};
  const pre = line.slice(0, first);
  const post = line.slice(code.trimEnd().length);
  return { ...(pre.trim() !== "" ? { pre } : {}), ...(post.trim() !== "" ? { post } : {}) };
}

function callProbe(symbol: string, out: string[]): void {
  out.push("\t{", "\t.param .b64 bhc;", "\t.param .b64 bhr;", "\tst.param.b64 [bhc], %bh0;", `\tcall (bhr), ${symbol}, (bhc);`, "\t}");
}

function negate(pred: string): string {
  return pred.startsWith("@!") ? `@${pred.slice(2)}` : `@!${pred.slice(1)}`;
}

/** Inserts the probes into every kernel they select; kernels no probe selects are left as they are. */
export function instrumentModule(ptx: string, options: InstrumentOptions): InstrumentResult {
  const info = parsePtxModule(ptx);
  const blanked = blankComments(ptx);
  if (info.addressSize !== undefined && info.addressSize !== 64) {
    throw new PtxInsertError(`.address_size ${info.addressSize}: only 64-bit modules are supported`);
  }
  const kernels = new Map<string, KernelInstrumented>();
  let out = "";
  let pos = 0;
  let skip = 0;
  for (const entry of info.entries) {
    const probes = options.probes.filter((p) => p.kernel(entry.name));
    if (probes.length === 0) continue;
    const entryProbes = probes.filter((p) => p.kind === "entry").map((p) => p.symbol);
    const exitProbes = probes.filter((p) => p.kind === "exit").map((p) => p.symbol);
    const memProbes = probes.filter((p) => p.kind === "memory").map((p) => p.symbol);
    const needed = slotsRead(probes);
    const wanted = (offset: number) => needed === undefined || needed.has(offset / 8);
    const stats = { entry: entryProbes.length, exit: exitProbes.length, memory: memProbes.length, memoryAccesses: 0, memorySkipped: [] as string[] };
    const { lines, codes, numbers } = statementLines(ptx, blanked, entry);
    const result: string[] = [];
    let i = 0;
    // Leading declarations stay first (comment lines, blanked in codes, are passed over).
    while (i < lines.length && /^\s*(\.reg|\.local|\.shared|\.pragma|$)/.test(codes[i]!)) {
      result.push(lines[i]!);
      i++;
    }
    result.push(...prologue(entry, wanted));
    for (const s of entryProbes) callProbe(s, result);
    for (; i < lines.length; i++) {
      const line = lines[i]!;
      // The statement with its comments blanked (a `ret; /* c */` is still a ret).
      const code = codes[i]!.trimEnd();
      const where = `.entry ${entry.name}: line ${numbers[i]}`;
      const { pre, post } = commentsAround(line, codes[i]!);
      const ret = RET_LINE.exec(code);
      if (ret && exitProbes.length > 0) {
        const [, indent, label, pred] = ret;
        if (pre !== undefined) result.push(pre);
        if (label) result.push(`${indent}${label}`);
        const stmt = code.slice(ret[1]!.length + label!.length).trim();
        if (pred) {
          const skipLabel = `$__bh_skip${skip++}`;
          result.push(`\t${negate(pred.trim())} bra ${skipLabel};`);
          for (const s of exitProbes) callProbe(s, result);
          result.push(`\t${stmt.slice(pred.length).trim()}`);
          result.push(`${skipLabel}:`);
        } else {
          for (const s of exitProbes) callProbe(s, result);
          result.push(`\t${stmt}`);
        }
        if (post !== undefined) result.push(post);
        continue;
      }
      if (exitProbes.length > 0 && RET_START.test(code)) {
        // A form the pattern above does not know: refusing beats an exit probe silently missed.
        throw new PtxInsertError(`${where}: cannot place exit probes around '${code.trim()}'`);
      }
      const mem = /^(\s*)((?:[$\w]+:\s*)?)(@!?[%$\w]+\s+)?((ld|st)\.global[\w.]*)\s+([^;]*);\s*$/.exec(code);
      if (mem && memProbes.length > 0) {
        const [, indent, label, pred, opcode, kind, operands] = mem;
        const isStore = kind === "st";
        const addrMatch = /\[([^\]]+)\]/.exec(operands!);
        const size = accessSize(opcode!);
        if (!addrMatch || size === undefined) {
          stats.memorySkipped.push(`${where}: ${code.trim()}`);
          result.push(line);
          continue;
        }
        if (pre !== undefined) result.push(pre);
        if (label) result.push(`${indent}${label}`);
        result.push(...addressInto(addrMatch[1]!.trim(), where));
        result.push(`\t${code.slice(indent!.length + label!.length).trim()}`);
        const skipLabel = `$__bh_skip${skip++}`;
        if (pred) result.push(`\t${negate(pred.trim())} bra ${skipLabel};`);
        if (wanted(CUDA_CTX.memAddr)) result.push(`\tst.u64 [%bh0+${CUDA_CTX.memAddr}], %bh2;`);
        if (wanted(CUDA_CTX.memSize)) result.push(`\tst.u64 [%bh0+${CUDA_CTX.memSize}], ${size};`);
        if (wanted(CUDA_CTX.memFlags)) result.push(`\tst.u64 [%bh0+${CUDA_CTX.memFlags}], ${isStore ? 1 : 0};`);
        for (const s of memProbes) callProbe(s, result);
        if (pred) result.push(`${skipLabel}:`);
        if (post !== undefined) result.push(post);
        stats.memoryAccesses++;
        continue;
      }
      result.push(line);
    }
    out += ptx.slice(pos, entry.bodyStart + 1) + result.join("\n") + "}";
    pos = entry.bodyEnd;
    kernels.set(entry.name, stats);
  }
  out += ptx.slice(pos);
  // Functions after the header (offsets before the first entry are unchanged).
  const at = info.headerEnd;
  const finalPtx = `${out.slice(0, at)}\n${options.functions}\n${out.slice(at)}`;
  return { ptx: finalPtx, kernels };
}

/** %bh2 = the address of a `[...]` operand: `%rd4`, `%rd4+8`, `sym`, `sym+8`. */
function addressInto(expr: string, where: string): string[] {
  const m = /^([%$\w]+)\s*(?:\+\s*(-?\s*\d+|0x[0-9a-fA-F]+))?$/.exec(expr);
  if (!m) throw new PtxInsertError(`${where}: memory capture: address '${expr}' is not 'reg', 'reg+imm', 'symbol' or 'symbol+imm'`);
  const base = m[1]!;
  const off = m[2] ? m[2].replace(/\s+/g, "") : "0";
  const out: string[] = [];
  if (base.startsWith("%")) {
    // 32-bit registers (%r<n>) only appear with 32-bit addressing; nvcc's 64-bit addresses are %rd<n>.
    if (/^%r\d+$/.test(base)) out.push(`\tcvt.u64.u32 %bh2, ${base};`);
    else out.push(`\tmov.b64 %bh2, ${base};`);
  } else {
    out.push(`\tmov.u64 %bh2, ${base};`);
  }
  if (off !== "0") out.push(`\tadd.s64 %bh2, %bh2, ${off};`);
  return out;
}

/** Declarations and the context fill at the kernel's start (the slots `wanted` says some probe reads). */
function prologue(entry: PtxEntry, wanted: (offset: number) => boolean): string[] {
  const out = [
    "\t// bpfhook: probe context",
    "\t.reg .b64 %bh<4>;",
    "\t.reg .b32 %bhw;",
    "\t.reg .b16 %bhh;",
    `\t.local .align 8 .b8 __bh_ctx[${CUDA_CTX.size}];`,
    "\tmov.u64 %bh0, __bh_ctx;",
    "\tcvta.local.u64 %bh0, %bh0;",
  ];
  const sregs: [string, number][] = [
    ["%ctaid", CUDA_CTX.blockIdx],
    ["%ntid", CUDA_CTX.blockDim],
    ["%tid", CUDA_CTX.threadIdx],
    ["%nctaid", CUDA_CTX.gridDim],
  ];
  for (const [reg, base] of sregs) {
    ["x", "y", "z"].forEach((axis, k) => {
      if (wanted(base + 8 * k)) out.push(`\tmov.u32 %bhw, ${reg}.${axis};`, "\tcvt.u64.u32 %bh1, %bhw;", `\tst.u64 [%bh0+${base + 8 * k}], %bh1;`);
    });
  }
  if (wanted(CUDA_CTX.nparams)) out.push(`\tst.u64 [%bh0+${CUDA_CTX.nparams}], ${entry.params.length};`);
  for (const f of [CUDA_CTX.memAddr, CUDA_CTX.memSize, CUDA_CTX.memFlags]) if (wanted(f)) out.push(`\tst.u64 [%bh0+${f}], 0;`);
  for (let n = 0; n < CUDA_CTX.maxParams; n++) {
    const p = entry.params[n];
    if (!wanted(CUDA_CTX.params + 8 * n)) continue;
    const slot = `[%bh0+${CUDA_CTX.params + 8 * n}]`;
    if (!p) {
      out.push(`\tst.u64 ${slot}, 0;`);
      continue;
    }
    const bits = Number(p.type.slice(2));
    if (p.arraySize !== undefined) {
      // Aggregates by value: their first 8 bytes when 8-aligned and that large, else 0.
      if (p.arraySize >= 8 && (p.align ?? 1) >= 8) out.push(`\tld.param.b64 %bh1, [${p.name}];`, `\tst.u64 ${slot}, %bh1;`);
      else out.push(`\tst.u64 ${slot}, 0;`);
    } else if (bits === 64) {
      out.push(`\tld.param.b64 %bh1, [${p.name}];`, `\tst.u64 ${slot}, %bh1;`);
    } else if (bits === 32) {
      out.push(`\tld.param.b32 %bhw, [${p.name}];`, "\tcvt.u64.u32 %bh1, %bhw;", `\tst.u64 ${slot}, %bh1;`);
    } else {
      out.push(`\tld.param.${bits === 16 ? "b16" : "u8"} %bhh, [${p.name}];`, "\tcvt.u64.u16 %bh1, %bhh;", `\tst.u64 ${slot}, %bh1;`);
    }
  }
  return out;
}
