/**
 * Splits executable sections into functions by their STT_FUNC symbols. Every
 * function can be called (a subprogram); global ones outside .text are also
 * programs, named by their symbol and reported with their section's name.
 */
import { SHF_EXECINSTR, SHT_PROGBITS, STB_GLOBAL, STB_WEAK, STT_FUNC } from "@bpfhook/sdk";
import type { LoadContext } from "./context.js";
import type { ElfFile, ElfSection } from "./elf.js";
import { INSN_SIZE } from "./insn.js";

export const TEXT_SECTION = ".text";

export interface BpfFunction {
  name: string;
  section: ElfSection;
  /** First instruction, counted from the start of the section. */
  start: number;
  count: number;
  /** True for global/weak functions outside .text: these are programs. */
  isProgram: boolean;
}

export interface FunctionTable {
  /** Programs in section order, then by offset. */
  programs: BpfFunction[];
  /** The function containing instruction `index` of a section. */
  at(sectionIndex: number, index: number): BpfFunction | undefined;
}

export function isCodeSection(s: ElfSection): boolean {
  return s.type === SHT_PROGBITS && (s.flags & SHF_EXECINSTR) !== 0;
}

export function collectFunctions(elf: ElfFile, ctx: LoadContext): FunctionTable {
  const bySection = new Map<number, BpfFunction[]>();
  const programs: BpfFunction[] = [];

  for (const section of elf.sections) {
    if (!isCodeSection(section) || section.size === 0) continue;
    const where = { section: section.name };
    if (section.size % INSN_SIZE !== 0) ctx.invalid(`code size ${section.size} is not a multiple of ${INSN_SIZE}`, where);
    const symbols = elf.symbols
      .filter((s) => s.shndx === section.index && s.type === STT_FUNC)
      .sort((a, b) => a.value - b.value);

    const functions: BpfFunction[] = [];
    symbols.forEach((sym, i) => {
      const at = { ...where, symbol: sym.name, offset: sym.value };
      if (sym.value % INSN_SIZE !== 0) ctx.invalid("function does not start on an instruction boundary", at);
      // clang sets st_size; fall back to "up to the next function" if it did not.
      const next = symbols[i + 1]?.value ?? section.size;
      const size = sym.size !== 0 ? sym.size : next - sym.value;
      if (size % INSN_SIZE !== 0 || size === 0 || sym.value + size > section.size) {
        ctx.invalid(`function size ${size} does not fit the section`, at);
      }
      const previous = functions[functions.length - 1];
      if (previous !== undefined && previous.start + previous.count > sym.value / INSN_SIZE) {
        ctx.invalid(`function overlaps '${previous.name}'`, at);
      }
      const isProgram = section.name !== TEXT_SECTION && (sym.bind === STB_GLOBAL || sym.bind === STB_WEAK);
      functions.push({ name: sym.name, section, start: sym.value / INSN_SIZE, count: size / INSN_SIZE, isProgram });
    });

    if (section.name !== TEXT_SECTION && !functions.some((f) => f.isProgram)) {
      // Code nobody can attach: libbpf refuses static programs too. Say so
      // rather than loading an object whose program silently went missing.
      ctx.unsupported("executable section has no global function (programs must not be static)", where);
    }
    bySection.set(section.index, functions);
    programs.push(...functions.filter((f) => f.isProgram));
  }

  return {
    programs,
    at(sectionIndex, index) {
      return bySection.get(sectionIndex)?.find((f) => index >= f.start && index < f.start + f.count);
    },
  };
}
