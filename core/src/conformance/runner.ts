/**
 * Runs bpf_conformance `.data` files through both backends. Each file counts
 * once per backend. Every file gets the same VM set-up (the suite's helpers,
 * the caller's modes): no file is special-cased.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { assembleBytes } from "../asm/assembler.js";
import { parseRaw } from "../asm/raw.js";
import { BpfhookError } from "../errors.js";
import { VM_BACKENDS, type VmBackend } from "../vm/options.js";
import { EbpfVm } from "../vm/vm.js";
import { parseDataFile, type ConformanceCase } from "./data-file.js";

/** The suite's helpers: 5 returns its argument and unwinds when it is 0. */
export const CONFORMANCE_HELPERS: Readonly<Record<number, string>> = { 5: "unwind" };

export interface ConformanceOptions {
  backends?: readonly VmBackend[];
  checked?: boolean;
  budget?: number | bigint;
}

export interface ConformanceOutcome {
  file: string;
  backend: VmBackend;
  passed: boolean;
  /** "0x3" on a pass; for a failure what was expected and what came instead. */
  detail: string;
}

export interface ConformanceReport {
  passed: number;
  failed: number;
  outcomes: ConformanceOutcome[];
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The program's bytes; a file with both forms must agree, which checks the assembler too. */
function programOf(c: ConformanceCase): Buffer {
  const asm = c.sections.get("asm");
  const raw = c.sections.get("raw");
  const fromAsm = asm && assembleBytes(asm.text, { file: c.file, firstLine: asm.firstLine });
  const fromRaw = raw && parseRaw(raw.text, { file: c.file, firstLine: raw.firstLine });
  if (fromAsm && fromRaw && !fromAsm.equals(fromRaw)) {
    throw new BpfhookError("ASM_SYNTAX", `${c.file}: -- asm assembles to other bytes than -- raw`, { file: c.file });
  }
  const code = fromRaw ?? fromAsm;
  if (!code) throw new BpfhookError("ASM_SYNTAX", `${c.file}: no -- asm or -- raw section`, { file: c.file });
  return code;
}

/** Judges one backend's run: `run` returns r0 or throws a load error or fault. */
function judge(c: ConformanceCase, backend: VmBackend, run: () => bigint): ConformanceOutcome {
  const outcome = (passed: boolean, detail: string): ConformanceOutcome => ({ file: c.file, backend, passed, detail });
  let r0: bigint;
  try {
    r0 = run();
  } catch (e) {
    // "-- error" is matched loosely: any load error or fault will do.
    if (c.error !== undefined) return outcome(true, `error: ${messageOf(e)}`);
    return outcome(false, `expected ${c.result === undefined ? "a result" : hex(c.result)}, got error: ${messageOf(e)}`);
  }
  if (c.error !== undefined) return outcome(false, `expected error '${c.error}', got ${hex(r0)}`);
  if (c.result === undefined) return outcome(false, `no -- result or -- error section; got ${hex(r0)}`);
  return r0 === c.result ? outcome(true, hex(r0)) : outcome(false, `expected ${hex(c.result)}, got ${hex(r0)}`);
}

export function runConformanceFile(file: string, opts: ConformanceOptions = {}): ConformanceOutcome[] {
  const backends = opts.backends ?? VM_BACKENDS;
  const name = path.basename(file);
  let c: ConformanceCase;
  let code: Buffer;
  try {
    c = parseDataFile(readFileSync(file, "utf8"), name);
    code = programOf(c);
  } catch (e) {
    return backends.map((backend) => ({ file: name, backend, passed: false, detail: `cannot read test: ${messageOf(e)}` }));
  }

  let vm: EbpfVm | undefined;
  let loadError: unknown;
  try {
    vm = EbpfVm.load(code, {
      helpers: CONFORMANCE_HELPERS,
      ...(opts.checked === undefined ? {} : { checked: opts.checked }),
      ...(opts.budget === undefined ? {} : { budget: opts.budget }),
    });
  } catch (e) {
    loadError = e;
  }
  try {
    return backends.map((backend) =>
      judge(c, backend, () => {
        if (!vm) throw loadError;
        // A fresh copy per backend: programs write their memory.
        return vm.exec(c.mem ? Buffer.from(c.mem) : null, backend);
      }),
    );
  } finally {
    vm?.close();
  }
}

/** The `.data` files of a directory (sorted), or the given files. */
export function conformanceFiles(dirOrFiles: string | readonly string[]): string[] {
  const inputs = typeof dirOrFiles === "string" ? [dirOrFiles] : dirOrFiles;
  return inputs.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith(".data"))
          .sort()
          .map((f) => path.join(p, f))
      : [p],
  );
}

export function runConformance(dirOrFiles: string | readonly string[], opts: ConformanceOptions = {}): ConformanceReport {
  const outcomes = conformanceFiles(dirOrFiles).flatMap((f) => runConformanceFile(f, opts));
  const passed = outcomes.filter((o) => o.passed).length;
  return { passed, failed: outcomes.length - passed, outcomes };
}
