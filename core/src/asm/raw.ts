/**
 * The `-- raw` form of a program: one instruction slot per line, as the u64
 * whose little-endian bytes are the slot ("0x0000000000000095" is exit).
 * Blank lines and "#" comments are skipped.
 */
import { BpfhookError } from "../errors.js";
import type { AssembleOptions } from "./assembler.js";
import { INSN_SIZE } from "./opcodes.js";

export function parseRaw(source: string, opts: AssembleOptions = {}): Buffer {
  const first = opts.firstLine ?? 1;
  const words: bigint[] = [];
  source.split(/\r?\n/).forEach((raw, index) => {
    const hash = raw.indexOf("#");
    const text = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (text === "") return;
    if (!/^(0x[0-9a-f]{1,16}|[0-9]+)$/i.test(text) || BigInt(text) >= 1n << 64n) {
      const line = first + index;
      const where = opts.file === undefined ? `line ${line}` : `${opts.file}:${line}`;
      throw new BpfhookError("ASM_SYNTAX", `${where}: expected one u64 instruction word: '${raw.trim()}'`, {
        line,
        ...(opts.file === undefined ? {} : { file: opts.file }),
      });
    }
    words.push(BigInt(text));
  });
  const out = Buffer.alloc(words.length * INSN_SIZE);
  words.forEach((w, n) => out.writeBigUInt64LE(w, n * INSN_SIZE));
  return out;
}

/** The inverse: one "0x%016x" line per slot. */
export function formatRaw(code: Uint8Array): string {
  const buf = Buffer.from(code.buffer, code.byteOffset, code.byteLength);
  const lines: string[] = [];
  for (let at = 0; at + INSN_SIZE <= buf.length; at += INSN_SIZE) {
    lines.push(`0x${buf.readBigUInt64LE(at).toString(16).padStart(16, "0")}`);
  }
  return lines.join("\n");
}
