/**
 * Says what each relocated instruction in a code section refers to: a map, a
 * place inside a global data section, or code (a call or a function
 * address). Everything else an object can ask for (externs, kfuncs, unknown
 * relocation types) stops here with an error naming where it was asked.
 */
import { SHN_UNDEF, STT_SECTION } from "@bpfhook/sdk";
import type { LoadContext, Where } from "./context.js";
import type { ElfFile, ElfRelocation, ElfSection } from "./elf.js";
import type { ExternTable } from "./externs.js";
import { isCodeSection, type BpfFunction } from "./functions.js";
import { INSN_SIZE, R_BPF_64_32, R_BPF_64_64, R_BPF_NONE, type InsnView } from "./insn.js";
import { BTF_MAPS_SECTION, LEGACY_MAPS_SECTION, type MapTable } from "./maps.js";

export type InsnTarget =
  /** lddw of a map (definition in `.maps` / `maps`). */
  | { kind: "map"; map: number }
  /** lddw of an address inside a global data map's value (also a __kconfig extern's place in `.kconfig`). */
  | { kind: "map-value"; map: number; offset: number }
  /** lddw of a strong __kconfig extern nothing defines: the linker refuses it, naming the program. */
  | { kind: "unknown-extern"; name: string }
  /** A call, or lddw of a function's address: instruction `index` of a code section. */
  | { kind: "code"; section: ElfSection; index: number };

export class RelocationResolver {
  /** Per code section: relocations by the byte offset they patch. */
  private readonly bySection = new Map<number, Map<number, ElfRelocation>>();

  constructor(
    private readonly elf: ElfFile,
    private readonly maps: MapTable,
    private readonly externs: ExternTable,
    private readonly ctx: LoadContext,
  ) {
    for (const section of elf.sections) {
      if (!isCodeSection(section)) continue;
      const table = new Map<number, ElfRelocation>();
      for (const rel of elf.relocations.get(section.index) ?? []) {
        const where = { section: section.name, offset: rel.offset, symbol: rel.symbol.name };
        if (rel.type === R_BPF_NONE) continue;
        if (rel.type !== R_BPF_64_64 && rel.type !== R_BPF_64_32) {
          ctx.unsupported(`relocation type ${rel.type} is not supported in code (only R_BPF_64_64 on lddw and R_BPF_64_32 on calls)`, where);
        }
        if (rel.offset % INSN_SIZE !== 0 || rel.offset + INSN_SIZE > section.size) {
          ctx.invalid("relocation is not on an instruction of the section", where);
        }
        if (table.has(rel.offset)) ctx.invalid("two relocations patch the same instruction", where);
        table.set(rel.offset, rel);
      }
      this.bySection.set(section.index, table);
    }
  }

  private relocationAt(fn: BpfFunction, index: number): ElfRelocation | undefined {
    return this.bySection.get(fn.section.index)?.get(index * INSN_SIZE);
  }

  private where(fn: BpfFunction, index: number, rel?: ElfRelocation): Where {
    const w: Where = { section: fn.section.name, func: fn.name, offset: index * INSN_SIZE };
    if (rel !== undefined) w.symbol = rel.symbol.name;
    return w;
  }

  /**
   * What a bpf-to-bpf call at instruction `index` (section-relative) calls.
   * A call the compiler resolved itself (a static function in the same
   * section) has no relocation and a pc-relative imm; one with a relocation
   * counts imm from the symbol: target = symbol/8 + imm + 1, which covers
   * both `call -1` against a function symbol and `call N` against the
   * section symbol.
   */
  callTarget(fn: BpfFunction, index: number, insn: InsnView): InsnTarget {
    const rel = this.relocationAt(fn, index);
    if (rel === undefined) return { kind: "code", section: fn.section, index: index + insn.imm + 1 };
    const where = this.where(fn, index, rel);
    if (rel.type !== R_BPF_64_32) this.ctx.invalid(`relocation type ${rel.type} on a call instruction`, where);
    const sym = rel.symbol;
    if (sym.shndx === SHN_UNDEF) {
      this.ctx.unsupported(`call to extern function '${sym.name}' (kfuncs and functions from other objects are not supported)`, where);
    }
    const section = this.elf.sections[sym.shndx];
    if (section === undefined || !isCodeSection(section)) this.ctx.invalid(`call to '${sym.name}', which is not code`, where);
    if (sym.value % INSN_SIZE !== 0) this.ctx.invalid(`call target '${sym.name}' is not on an instruction boundary`, where);
    return { kind: "code", section, index: sym.value / INSN_SIZE + insn.imm + 1 };
  }

  /** Any relocation on an instruction that is neither a call nor lddw is a mistake; report it. */
  checkNone(fn: BpfFunction, index: number): void {
    const rel = this.relocationAt(fn, index);
    if (rel !== undefined) {
      this.ctx.invalid(`relocation type ${rel.type} on an instruction that is neither lddw nor a call`, this.where(fn, index, rel));
    }
  }

  /**
   * Whether the instruction carries a relocation. A call with src 0 and a
   * relocation is not a helper call: resolve it like a bpf-to-bpf call, so
   * an extern callee gets the extern error rather than running as helper N.
   */
  hasRelocation(fn: BpfFunction, index: number): boolean {
    return this.relocationAt(fn, index) !== undefined;
  }

  /**
   * What an lddw at `index` loads the address of, or undefined for a plain
   * 64-bit constant. The addend is in the first slot's imm (REL style), so
   * the referenced byte is symbol value + imm for every kind of symbol.
   */
  loadTarget(fn: BpfFunction, index: number, insn: InsnView): InsnTarget | undefined {
    const rel = this.relocationAt(fn, index);
    if (rel === undefined) return undefined;
    const where = this.where(fn, index, rel);
    if (rel.type !== R_BPF_64_64) this.ctx.invalid(`relocation type ${rel.type} on lddw (expected R_BPF_64_64)`, where);
    const sym = rel.symbol;
    const addend = rel.addend !== undefined ? Number(rel.addend) : insn.imm;
    if (sym.shndx === SHN_UNDEF) {
      const ext = this.externs.resolve(sym.name, where);
      if (ext.kind === "unknown-kconfig") return { kind: "unknown-extern", name: ext.name };
      return { kind: "map-value", map: ext.map, offset: ext.offset + addend };
    }
    const section = this.elf.sections[sym.shndx];
    if (section === undefined) this.ctx.unsupported(`reference to '${sym.name}', which lives in no section`, where);
    const offset = sym.value + addend;

    if (section.name === BTF_MAPS_SECTION || section.name === LEGACY_MAPS_SECTION) {
      const map = this.maps.definedAt(section.index, offset);
      if (map === undefined) {
        const what = sym.type === STT_SECTION ? `offset ${offset} of '${section.name}'` : `'${sym.name}'`;
        this.ctx.invalid(`reference to ${what}, which is no map definition`, where);
      }
      return { kind: "map", map };
    }
    const data = this.maps.dataMap(section.index);
    if (data !== undefined) {
      if (offset < 0 || offset > section.size) this.ctx.invalid(`offset ${offset} is outside '${section.name}' (${section.size} bytes)`, where);
      return { kind: "map-value", map: data, offset };
    }
    if (isCodeSection(section)) {
      // A function's address (callbacks for bpf_loop, bpf_for_each_map_elem...).
      if (offset % INSN_SIZE !== 0) this.ctx.invalid(`function address '${sym.name}' + ${addend} is not on an instruction boundary`, where);
      return { kind: "code", section, index: offset / INSN_SIZE };
    }
    return this.ctx.unsupported(`reference to '${sym.name}' in section '${section.name}', which is neither a map, global data nor code`, where);
  }
}
