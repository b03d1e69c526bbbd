/**
 * Reads one bpf_conformance `.data` file: sections opened by "-- name" lines.
 * The runner uses `asm` (or `raw`), `mem`, `result` and `error`; the rest
 * (`-- c`, `-- no register offset`, ...) is kept by name and ignored.
 */
import { BpfhookError } from "../errors.js";

export interface Section {
  text: string;
  /** File line of the section's first content line, for assembler messages. */
  firstLine: number;
}

export interface ConformanceCase {
  file: string;
  sections: ReadonlyMap<string, Section>;
  /** The `-- mem` bytes, or null when there are none. */
  mem: Buffer | null;
  /** The expected r0 as a u64. */
  result?: bigint;
  /** The expected error text: the program must fail to load or fault. */
  error?: string;
}

function splitSections(text: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  let current: { name: string; lines: string[]; firstLine: number } | undefined;
  const close = (): void => {
    if (current) sections.set(current.name, { text: current.lines.join("\n"), firstLine: current.firstLine });
  };
  text.split(/\r?\n/).forEach((line, index) => {
    const header = /^--\s+(.+?)\s*$/.exec(line);
    if (header) {
      close();
      current = { name: header[1]!, lines: [], firstLine: index + 2 };
    } else {
      current?.lines.push(line);
    }
  });
  close();
  return sections;
}

function parseMem(file: string, s: Section): Buffer | null {
  const bytes: number[] = [];
  s.text.split("\n").forEach((raw, index) => {
    const hash = raw.indexOf("#");
    for (const tok of (hash < 0 ? raw : raw.slice(0, hash)).trim().split(/\s+/)) {
      if (tok === "") continue;
      if (!/^[0-9a-f]{2}$/i.test(tok)) {
        throw new BpfhookError("ASM_SYNTAX", `${file}:${s.firstLine + index}: bad byte '${tok}' in -- mem`, {
          file,
          line: s.firstLine + index,
        });
      }
      bytes.push(parseInt(tok, 16));
    }
  });
  return bytes.length === 0 ? null : Buffer.from(bytes);
}

function parseResult(file: string, s: Section): bigint {
  const text = s.text.replace(/#.*$/gm, "").trim();
  if (!/^-?(0x[0-9a-f]+|[0-9]+)$/i.test(text)) {
    throw new BpfhookError("ASM_SYNTAX", `${file}:${s.firstLine}: bad -- result '${text}'`, { file, line: s.firstLine });
  }
  const negative = text.startsWith("-");
  const v = BigInt(negative ? text.slice(1) : text);
  return BigInt.asUintN(64, negative ? -v : v);
}

export function parseDataFile(text: string, file: string): ConformanceCase {
  const sections = splitSections(text);
  const mem = sections.get("mem");
  const result = sections.get("result");
  const error = sections.get("error");
  return {
    file,
    sections,
    mem: mem ? parseMem(file, mem) : null,
    ...(result ? { result: parseResult(file, result) } : {}),
    ...(error ? { error: error.text.trim() } : {}),
  };
}
