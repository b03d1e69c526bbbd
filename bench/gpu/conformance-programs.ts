/**
 * The bpf_conformance programs that can run on the GPU as they are: those
 * that load and give a result (not the ones meant to be refused) and call no
 * helper (the suite's helper 5 is its own "unwind", which the GPU runtime
 * does not have).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { assembleBytes, conformanceFiles, parseDataFile } from "@bpfhook/core";
import type { ConformanceProgram } from "@bpfhook/plugin-nv-cuda";

/** Whether the instructions call a helper (call with src 0). */
function callsHelper(insns: Uint8Array): boolean {
  for (let i = 0; i + 8 <= insns.length; i += 8) if (insns[i] === 0x85 && (insns[i + 1]! >> 4) === 0) return true;
  return false;
}

export function conformancePrograms(dir: string): ConformanceProgram[] {
  const out: ConformanceProgram[] = [];
  for (const file of conformanceFiles(dir)) {
    const c = parseDataFile(readFileSync(file, "utf8"), path.basename(file));
    const asm = c.sections.get("asm");
    if (c.error !== undefined || asm === undefined || c.result === undefined) continue;
    const insns = assembleBytes(asm.text, { file: c.file, firstLine: asm.firstLine });
    if (callsHelper(insns)) continue;
    out.push({ name: path.basename(file, ".data"), insns, mem: c.mem ?? new Uint8Array(0), expected: c.result });
  }
  return out;
}
