/**
 * Section names to (unvalidated) targets. After the prefix and its "/":
 *
 *   <module>:<symbol>            function entry        uprobe/libc.so.6:malloc
 *   <module>:<symbol>+<offset>   inside the function   uprobe/libc.so.6:malloc+0x10
 *   <module>:<offset>            file offset           uprobe/libc.so.6:0x98930
 *
 * <offset> is hex with 0x or decimal. <module> is anything module matching
 * accepts (sdk/src/symbols/module-match.ts): a file name ("libc.so.6"), a
 * prefix of one ("libc"), a path (libbpf's "uprobe//usr/lib/.../libc.so.6:
 * malloc" gives "/usr/lib/..."), or the main executable ("/proc/self/exe",
 * "self", "main", or empty: "uprobe/:main_loop"). The module ends at the
 * last ":", so paths may hold colons; symbol names in ELF tables never do.
 */
export interface SectionTarget {
  readonly module: string;
  readonly symbol?: string;
  readonly offset?: bigint;
}

const NUMBER = /^(0x[0-9a-f]+|[0-9]+)$/i;

export function parseTargetSection(rest: string, section: string): SectionTarget {
  const prefix = section.slice(0, section.length - rest.length).replace(/\/$/, "") || section;
  const forms = `${prefix}/<module>:<symbol>[+<offset>] or ${prefix}/<module>:<file offset>`;
  if (rest === "") {
    throw new Error(`section '${section}' names no function; use ${forms}, or attach it with config data`);
  }
  const colon = rest.lastIndexOf(":");
  if (colon < 0) throw new Error(`section '${section}': expected <module>:<symbol> after '${prefix}/' (${forms})`);
  const module = rest.slice(0, colon);
  const target = rest.slice(colon + 1);
  if (target === "") throw new Error(`section '${section}': nothing after ':'; expected a symbol or a file offset`);
  if (NUMBER.test(target)) return { module, offset: BigInt(target) };

  const plus = target.indexOf("+");
  if (plus < 0) return { module, symbol: target };
  const symbol = target.slice(0, plus);
  const offset = target.slice(plus + 1);
  if (symbol === "" || !NUMBER.test(offset)) {
    throw new Error(`section '${section}': '${target}' is not <symbol>+<offset> with a hex (0x...) or decimal offset`);
  }
  return { module, symbol, offset: BigInt(offset) };
}
