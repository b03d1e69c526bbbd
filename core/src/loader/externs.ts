/**
 * Extern variables, resolved the way libbpf resolves them
 * (bpf_object__collect_externs, bpf_object__resolve_externs):
 *
 * - `__kconfig` externs (BTF DATASEC `.kconfig`) get values from the
 *   kconfig table (kconfig.ts) and live in one more global data map,
 *   `.kconfig`: a read-only one-entry array whose value holds every extern,
 *   laid out as libbpf lays it out (by alignment, largest first, then name).
 *   A load of one is an lddw map-value relocation, like `.rodata`.
 * - A `__weak` extern the table does not know reads 0; a strong one is
 *   refused where a program uses it, naming the symbol and the program.
 * - `__ksym` externs (DATASEC `.ksyms`) name kernel symbols; user space has
 *   none, so they are refused.
 */
import { STB_WEAK, SHN_UNDEF, STT_SECTION } from "@bpfhook/sdk";
import { BtfKind, type Btf } from "./btf.js";
import type { LoadContext, Where } from "./context.js";
import type { ElfFile } from "./elf.js";
import { kconfigValue, type KconfigValue } from "./kconfig.js";
import { BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_MAP_TYPE } from "./map-types.js";
import type { MapSpec } from "./types.js";

export const KCONFIG_SECTION = ".kconfig";
export const KSYMS_SECTION = ".ksyms";

/** libbpf's kcfg types: how a value is written into the extern's bytes. */
type KcfgKind = "bool" | "char" | "tristate" | "int" | "char_array";

interface KconfigExtern {
  name: string;
  kind: KcfgKind;
  size: number;
  align: number;
  signed: boolean;
  weak: boolean;
  btfType: number;
  /** Byte offset in the `.kconfig` map's value. */
  offset: number;
  /** False for an unknown strong extern: refused where it is used. */
  known: boolean;
}

export type ExternTarget =
  | { kind: "kconfig"; map: number; offset: number }
  /** A strong __kconfig extern the table does not know. */
  | { kind: "unknown-kconfig"; name: string };

export interface ExternTable {
  /** What an lddw of the extern symbol `name` loads; errors for externs that cannot be had. */
  resolve(name: string, where: Where): ExternTarget;
}

/**
 * Collects the object's extern variables; appends the `.kconfig` map to
 * `specs` when there are kconfig externs.
 */
export function collectExterns(
  elf: ElfFile,
  btf: Btf | undefined,
  specs: MapSpec[],
  overrides: Readonly<Record<string, KconfigValue>> | undefined,
  ctx: LoadContext,
): ExternTable {
  const undefinedSymbols = new Map<string, number>();
  for (const sym of elf.symbols) {
    if (sym.shndx === SHN_UNDEF && sym.name !== "" && sym.type !== STT_SECTION) undefinedSymbols.set(sym.name, sym.bind);
  }
  const kconfig = new Map<string, KconfigExtern>();
  const ksyms = new Set<string>();
  if (btf !== undefined) {
    for (const v of btf.datasec(KSYMS_SECTION)?.secinfos ?? []) ksyms.add(btf.type(v.type).name);
    const datasec = btf.datasec(KCONFIG_SECTION);
    for (const info of datasec?.secinfos ?? []) {
      const variable = btf.type(info.type);
      const where: Where = { section: KCONFIG_SECTION, symbol: variable.name };
      if (variable.kind !== BtfKind.VAR) ctx.invalid(`BTF entry ${info.type} of '${KCONFIG_SECTION}' is not a variable`, where);
      const bind = undefinedSymbols.get(variable.name);
      // clang describes every extern it saw; only referenced ones have a symbol.
      if (bind === undefined) continue;
      const kind = kcfgKind(btf, variable.sizeOrType);
      if (kind === undefined) {
        ctx.unsupported(
          `__kconfig extern of type '${btf.describe(variable.sizeOrType).name || "anonymous"}', which libbpf cannot fill ` +
            "(bool, char, enum libbpf_tristate, an integer of 1, 2, 4 or 8 bytes, or a char array)",
          where,
        );
      }
      const t = btf.resolve(variable.sizeOrType);
      const size = btf.sizeOf(variable.sizeOrType) ?? 0;
      kconfig.set(variable.name, {
        name: variable.name,
        kind: kind.kind,
        size,
        align: kind.kind === "char_array" ? 1 : size,
        signed: kind.signed,
        weak: bind === STB_WEAK,
        btfType: t.id,
        offset: 0,
        known: true,
      });
    }
  }
  if (kconfig.size > 0) specs.push(kconfigMap(btf!, [...kconfig.values()], overrides, ctx));
  const mapIndex = specs.length - 1;

  return {
    resolve(name, where) {
      const ext = kconfig.get(name);
      if (ext !== undefined) {
        return ext.known ? { kind: "kconfig", map: mapIndex, offset: ext.offset } : { kind: "unknown-kconfig", name };
      }
      if (ksyms.has(name)) {
        return ctx.unsupported(
          "a __ksym extern (the address of a kernel symbol); bpfhook runs programs in user space, where there are no kernel symbols",
          where,
        );
      }
      if (btf === undefined) {
        return ctx.unsupported("an extern variable can only be resolved with BTF (compile with -g)", where);
      }
      return ctx.unsupported("extern variables other than __kconfig and __ksym ones (from other objects) are not supported", where);
    },
  };
}

/** libbpf's find_kcfg_type: which kinds of C type a kconfig value can be written to. */
function kcfgKind(btf: Btf, typeId: number): { kind: KcfgKind; signed: boolean } | undefined {
  const t = btf.resolve(typeId);
  switch (t.kind) {
    case BtfKind.INT: {
      const encoding = t.intEncoding ?? 0;
      const signed = (encoding & 1) !== 0;
      if ((encoding & 4) !== 0) return t.sizeOrType === 1 ? { kind: "bool", signed: false } : undefined;
      if (t.sizeOrType === 1) return { kind: "char", signed };
      return [2, 4, 8].includes(t.sizeOrType) ? { kind: "int", signed } : undefined;
    }
    case BtfKind.ENUM:
      return t.sizeOrType === 4 && t.name === "libbpf_tristate" ? { kind: "tristate", signed: false } : undefined;
    case BtfKind.ARRAY:
      if (t.array!.nelems === 0) return undefined;
      return kcfgKind(btf, t.array!.type)?.kind === "char" ? { kind: "char_array", signed: false } : undefined;
    default:
      return undefined;
  }
}

/**
 * The `.kconfig` map: externs sorted by alignment (largest first) then name,
 * each at the next multiple of its alignment, the value rounded up to 8
 * bytes, as libbpf lays it out.
 */
function kconfigMap(
  btf: Btf,
  externs: KconfigExtern[],
  overrides: Readonly<Record<string, KconfigValue>> | undefined,
  ctx: LoadContext,
): MapSpec {
  externs.sort((a, b) => b.align - a.align || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let end = 0;
  for (const ext of externs) {
    ext.offset = Math.ceil(end / ext.align) * ext.align;
    end = ext.offset + ext.size;
  }
  const size = Math.ceil(end / 8) * 8;
  const data = new Uint8Array(size);
  for (const ext of externs) {
    const value = kconfigValue(ext.name, overrides);
    if (value === undefined) {
      // Weak: reads as zero, as libbpf leaves it. Strong: refused where used.
      if (!ext.weak) ext.known = false;
      continue;
    }
    writeValue(ext, value, data, ctx);
  }
  return {
    name: KCONFIG_SECTION,
    type: BPF_MAP_TYPE.ARRAY,
    keySize: 4,
    valueSize: size,
    maxEntries: 1,
    flags: BPF_F_MMAPABLE | BPF_F_RDONLY_PROG,
    initialData: data,
    readonly: true,
    section: KCONFIG_SECTION,
    keyType: { name: "u32", kind: "int", size: 4, signed: false },
    valueType: {
      name: KCONFIG_SECTION,
      kind: "datasec",
      size,
      members: externs.map((e) => ({ name: e.name, offset: e.offset, bitOffset: e.offset * 8, type: btf.describe(e.btfType) })),
    },
  };
}

/** libbpf's set_kcfg_value_tri / _str / _num: the value must suit the extern's type. */
function writeValue(ext: KconfigExtern, value: KconfigValue, data: Uint8Array, ctx: LoadContext): void {
  const where: Where = { section: KCONFIG_SECTION, symbol: ext.name };
  const refuse = (why: string): never =>
    ctx.unsupported(`__kconfig extern (${ext.kind.replace("_", " ")}, ${ext.size} bytes): ${why}`, where);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const tri = value === true ? "y" : value === false ? "n" : value === "y" || value === "n" || value === "m" ? value : undefined;
  switch (ext.kind) {
    case "bool":
      if (tri === "m") refuse("value 'm' (module) does not fit a bool");
      if (tri !== undefined) data[ext.offset] = tri === "y" ? 1 : 0;
      else if (value === 0 || value === 1) data[ext.offset] = value;
      else refuse(`value ${JSON.stringify(String(value))} is not y, n, true or false`);
      return;
    case "tristate":
      if (tri === undefined) refuse(`value ${JSON.stringify(String(value))} is not y, n or m`);
      view.setUint32(ext.offset, tri === "y" ? 1 : tri === "m" ? 2 : 0, true);
      return;
    case "char":
      if (tri !== undefined) {
        data[ext.offset] = tri.charCodeAt(0);
        return;
      }
      writeInt(ext, value, view, refuse);
      return;
    case "int":
      if (tri !== undefined && typeof value === "string") refuse(`tristate value '${value}' does not fit an integer`);
      writeInt(ext, value, view, refuse);
      return;
    case "char_array": {
      if (typeof value !== "string") return refuse(`value ${String(value)} is not a string`);
      // libbpf copies what fits and keeps the terminating NUL.
      const bytes = Buffer.from(value, "utf8").subarray(0, ext.size - 1);
      data.set(bytes, ext.offset);
      return;
    }
  }
}

function writeInt(ext: KconfigExtern, value: KconfigValue, view: DataView, refuse: (why: string) => never): void {
  let v: bigint;
  if (typeof value === "bigint") v = value;
  else if (typeof value === "number" && Number.isInteger(value)) v = BigInt(value);
  else if (typeof value === "boolean") v = value ? 1n : 0n;
  else return refuse(`value ${JSON.stringify(String(value))} is not an integer`);
  const bits = BigInt(ext.size * 8);
  // Like libbpf's is_kcfg_value_in_range: the value must fit the C type's range.
  const min = ext.signed ? -(1n << (bits - 1n)) : 0n;
  const max = ext.signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  if (v < min || v > max) refuse(`value ${v} does not fit (${min}..${max})`);
  const u = BigInt.asUintN(Number(bits), v);
  if (ext.size === 1) view.setUint8(ext.offset, Number(u));
  else if (ext.size === 2) view.setUint16(ext.offset, Number(u), true);
  else if (ext.size === 4) view.setUint32(ext.offset, Number(u), true);
  else view.setBigUint64(ext.offset, u, true);
}
