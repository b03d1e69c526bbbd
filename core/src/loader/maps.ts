/**
 * Turns the three ways an object defines maps into MapSpecs: BTF definitions
 * in `.maps`, legacy `struct bpf_map_def` in `maps`, and global data
 * sections (.data*, .rodata*, .bss*) that become one-entry array maps.
 */
import { ByteReader, SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, SHT_PROGBITS, STT_FUNC, STT_SECTION } from "@bpfhook/sdk";
import { BtfKind, type Btf, type BtfMember } from "./btf.js";
import type { LoadContext, Where } from "./context.js";
import type { ElfFile, ElfSection } from "./elf.js";
import { BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_MAP_TYPE } from "./map-types.js";
import type { BtfTypeInfo, MapSpec } from "./types.js";

export const BTF_MAPS_SECTION = ".maps";
export const LEGACY_MAPS_SECTION = "maps";

/**
 * .bss has a size but no bytes in the file, so its size is all a corrupt
 * header needs to make us allocate gigabytes. The kernel caps a map value far
 * lower (KMALLOC_MAX_SIZE, a few MiB); 1 GiB leaves user space room.
 */
const MAX_GLOBAL_DATA_SIZE = 1 << 30;

/** The fields of struct bpf_map_def, in order; libbpf's legacy layout. */
const LEGACY_FIELDS = ["type", "key_size", "value_size", "max_entries", "map_flags"] as const;

export interface MapTable {
  specs: MapSpec[];
  /** Index of the `.maps` / `maps` map defined at this section offset. */
  definedAt(sectionIndex: number, offset: number): number | undefined;
  /** Index of the map that holds a global data section. */
  dataMap(sectionIndex: number): number | undefined;
}

export function isGlobalDataSection(s: ElfSection): boolean {
  return (
    (s.type === SHT_PROGBITS || s.type === SHT_NOBITS) &&
    (s.flags & SHF_ALLOC) !== 0 &&
    (s.flags & SHF_EXECINSTR) === 0 &&
    /^\.(data|rodata|bss)(\..+)?$/.test(s.name)
  );
}

export function collectMaps(elf: ElfFile, btf: Btf | undefined, ctx: LoadContext): MapTable {
  const specs: MapSpec[] = [];
  const defined = new Map<string, number>();
  const data = new Map<number, number>();

  const btfMaps = elf.sectionByName(BTF_MAPS_SECTION);
  if (btfMaps !== undefined) {
    for (const { spec, offset } of btfMapDefinitions(elf, btfMaps, btf, ctx)) {
      defined.set(`${btfMaps.index}:${offset}`, specs.length);
      specs.push(spec);
    }
  }
  const legacy = elf.sectionByName(LEGACY_MAPS_SECTION);
  if (legacy !== undefined) {
    for (const { spec, offset } of legacyMapDefinitions(elf, legacy, ctx)) {
      defined.set(`${legacy.index}:${offset}`, specs.length);
      specs.push(spec);
    }
  }
  for (const s of elf.sections) {
    // An empty section cannot back a map (value size 0); nothing can refer to it either.
    if (!isGlobalDataSection(s) || s.size === 0) continue;
    data.set(s.index, specs.length);
    specs.push(globalDataMap(s, btf, ctx));
  }

  return {
    specs,
    definedAt: (sectionIndex, offset) => defined.get(`${sectionIndex}:${offset}`),
    dataMap: (sectionIndex) => data.get(sectionIndex),
  };
}

interface Placed {
  spec: MapSpec;
  offset: number;
}

/** Variables the object defines in a section, by name (section symbols and functions excluded). */
function variablesIn(elf: ElfFile, section: ElfSection): Map<string, number> {
  const out = new Map<string, number>();
  for (const sym of elf.symbols) {
    if (sym.shndx !== section.index || sym.type === STT_SECTION || sym.type === STT_FUNC || sym.name === "") continue;
    out.set(sym.name, sym.value);
  }
  return out;
}

function btfMapDefinitions(elf: ElfFile, section: ElfSection, btf: Btf | undefined, ctx: LoadContext): Placed[] {
  const where = { section: section.name };
  if (btf === undefined) ctx.invalid("maps in '.maps' are described by BTF, but the object has none (compile with -g)", where);
  const datasec = btf.datasec(section.name);
  if (datasec === undefined) ctx.invalid("no BTF DATASEC describes '.maps'", where);
  const symbols = variablesIn(elf, section);

  return datasec.secinfos!.map((info) => {
    const variable = btf.type(info.type);
    if (variable.kind !== BtfKind.VAR) ctx.invalid(`BTF entry ${info.type} of '.maps' is not a variable`, where);
    const name = variable.name;
    const offset = symbols.get(name) ?? info.offset;
    const at: Where = { ...where, map: name, offset };
    const def = btf.resolve(variable.sizeOrType);
    if (def.kind !== BtfKind.STRUCT) ctx.invalid("the definition is not a struct", at);

    const spec: MapSpec = { name, type: 0, keySize: 0, valueSize: 0, maxEntries: 0, flags: 0, section: section.name };
    let keyFromType: number | undefined;
    let valueFromType: number | undefined;
    for (const member of def.members!) {
      const field = member.name;
      switch (field) {
        case "type":
          spec.type = Number(uintField(btf, member, ctx, at));
          break;
        case "max_entries":
          spec.maxEntries = Number(uintField(btf, member, ctx, at));
          break;
        case "key_size":
          spec.keySize = Number(uintField(btf, member, ctx, at));
          break;
        case "value_size":
          spec.valueSize = Number(uintField(btf, member, ctx, at));
          break;
        case "map_flags":
          spec.flags = Number(uintField(btf, member, ctx, at));
          break;
        case "pinning":
          spec.pinning = Number(uintField(btf, member, ctx, at));
          break;
        case "numa_node":
          spec.numaNode = Number(uintField(btf, member, ctx, at));
          break;
        case "map_extra":
          spec.mapExtra = uintField(btf, member, ctx, at);
          break;
        case "key":
        case "value": {
          const { size, info: described } = typeField(btf, member, ctx, at);
          if (field === "key") {
            keyFromType = size;
            spec.keyType = described;
          } else {
            valueFromType = size;
            spec.valueType = described;
          }
          break;
        }
        case "values":
          ctx.unsupported(`initial 'values' (map-in-map, prog-array slots) are not supported`, at);
        default:
          ctx.unsupported(`unknown field '${field}'`, at);
      }
    }
    spec.keySize = agree(spec.keySize, keyFromType, "key", ctx, at);
    spec.valueSize = agree(spec.valueSize, valueFromType, "value", ctx, at);
    if (spec.type === BPF_MAP_TYPE.UNSPEC) ctx.invalid("the definition has no type", at);
    // libbpf gives perf event arrays int keys and values (CPU -> fd) when the
    // definition leaves them out; do the same so specs match what it would load.
    if (spec.type === BPF_MAP_TYPE.PERF_EVENT_ARRAY) {
      if (spec.keySize === 0) spec.keySize = 4;
      if (spec.valueSize === 0) spec.valueSize = 4;
    }
    return { spec, offset };
  });
}

/**
 * A number stored in a definition's type: `__uint(f, N)` is `int (*f)[N]`
 * (N is the array length), libbpf 1.2's `__ulong(f, N)` is an enum whose
 * single value is N.
 */
function uintField(btf: Btf, member: BtfMember, ctx: LoadContext, at: Where): bigint {
  const t = btf.resolve(member.type);
  if (t.kind === BtfKind.PTR) {
    const arr = btf.resolve(t.sizeOrType);
    if (arr.kind === BtfKind.ARRAY) return BigInt(arr.array!.nelems);
  }
  if ((t.kind === BtfKind.ENUM || t.kind === BtfKind.ENUM64) && t.enumValues!.length === 1) {
    return t.enumValues![0]!.value;
  }
  return ctx.invalid(`field '${member.name}' must be declared with __uint() or __ulong()`, at);
}

/** `__type(f, T)` is `typeof(T) *f`: the size and description of T. */
function typeField(btf: Btf, member: BtfMember, ctx: LoadContext, at: Where): { size: number; info: BtfTypeInfo } {
  const t = btf.resolve(member.type);
  if (t.kind !== BtfKind.PTR) ctx.invalid(`field '${member.name}' must be declared with __type()`, at);
  const size = btf.sizeOf(t.sizeOrType);
  if (size === undefined) ctx.invalid(`${member.name} type has no size`, at);
  return { size, info: btf.describe(t.sizeOrType) };
}

/** key_size / value_size and __type(key/value) may both be given; they must agree. */
function agree(explicit: number, fromType: number | undefined, what: string, ctx: LoadContext, at: Where): number {
  if (fromType === undefined) return explicit;
  if (explicit !== 0 && explicit !== fromType) {
    ctx.invalid(`${what}_size ${explicit} disagrees with the ${what} type's size ${fromType}`, at);
  }
  return fromType;
}

function legacyMapDefinitions(elf: ElfFile, section: ElfSection, ctx: LoadContext): Placed[] {
  const where = { section: section.name };
  const symbols = [...variablesIn(elf, section)].map(([name, offset]) => ({ name, offset })).sort((a, b) => a.offset - b.offset);
  if (symbols.length === 0) return [];
  // Without BTF the definition's size is only known as section size / count.
  const defSize = section.size / symbols.length;
  if (!Number.isInteger(defSize) || defSize < 4) {
    ctx.invalid(`section size ${section.size} does not divide into ${symbols.length} map definitions`, where);
  }
  const r = new ByteReader(section.data, (what) => ctx.invalid(`truncated map definition: ${what}`, where));
  return symbols.map(({ name, offset }) => {
    const at: Where = { ...where, map: name, offset };
    if (offset % defSize !== 0) ctx.invalid(`the definition is not at a multiple of the definition size ${defSize}`, at);
    const field = (i: number): number => (i * 4 < defSize ? r.u32(offset + i * 4, LEGACY_FIELDS[i]) : 0);
    // A larger def (iproute2's adds id, pinning, ...) is fine only if the extra bytes are unused.
    for (let b = LEGACY_FIELDS.length * 4; b < defSize; b++) {
      if (r.u8(offset + b) !== 0) ctx.unsupported(`non-zero fields past struct bpf_map_def's ${LEGACY_FIELDS.length * 4} bytes`, at);
    }
    const spec: MapSpec = {
      name,
      type: field(0),
      keySize: field(1),
      valueSize: field(2),
      maxEntries: field(3),
      flags: field(4),
      section: section.name,
    };
    if (spec.type === BPF_MAP_TYPE.UNSPEC) ctx.invalid("the definition has no type", at);
    return { spec, offset };
  });
}

function globalDataMap(section: ElfSection, btf: Btf | undefined, ctx: LoadContext): MapSpec {
  if (section.size > MAX_GLOBAL_DATA_SIZE) {
    ctx.unsupported(`global data section is ${section.size} bytes, more than the ${MAX_GLOBAL_DATA_SIZE} a map value may hold`, { section: section.name });
  }
  const readonly = section.name.startsWith(".rodata");
  const spec: MapSpec = {
    name: section.name,
    type: BPF_MAP_TYPE.ARRAY,
    keySize: 4,
    valueSize: section.size,
    maxEntries: 1,
    flags: BPF_F_MMAPABLE | (readonly ? BPF_F_RDONLY_PROG : 0),
    // .bss has a size but no bytes in the file: it starts zeroed.
    initialData: section.type === SHT_NOBITS ? new Uint8Array(section.size) : section.data.slice(),
    section: section.name,
    keyType: { name: "u32", kind: "int", size: 4, signed: false },
  };
  if (readonly) spec.readonly = true;
  const datasec = btf?.datasec(section.name);
  if (btf !== undefined && datasec !== undefined) {
    // The object's DATASEC says size 0 (the linker's job); the section knows.
    spec.valueType = { ...btf.describe(datasec.id), size: section.size };
  }
  return spec;
}
