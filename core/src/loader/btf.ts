/**
 * Reader for the .BTF section clang emits with -g: the type graph the loader
 * needs for BTF map definitions in `.maps`, the layout of global data
 * sections, and key/value types that later become typed codecs.
 */
import { ByteReader } from "@bpfhook/sdk";
import type { LoadContext } from "./context.js";
import type { ElfRelocation } from "./elf.js";
import { R_BPF_64_ABS32, R_BPF_64_NODYLD32 } from "./insn.js";
import type { BtfKindName, BtfMemberInfo, BtfTypeInfo } from "./types.js";

const BTF_MAGIC = 0xeb9f;

export const BtfKind = {
  UNKN: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

const INT_SIGNED = 1;
const INT_CHAR = 2;
const INT_BOOL = 4;

export interface BtfMember {
  name: string;
  type: number;
  /** Bit offset from the start of the struct. */
  bitOffset: number;
  /** Non-zero for bitfields declared with kind_flag set. */
  bitSize: number;
}

export interface BtfSecInfo {
  /** Id of a VAR (or FUNC, for extern functions). */
  type: number;
  offset: number;
  size: number;
}

/** One type record, decoded but not interpreted. */
export interface BtfType {
  id: number;
  kind: number;
  name: string;
  kindFlag: boolean;
  vlen: number;
  /** `size` for sized kinds, `type` for the kinds that refer to another type. */
  sizeOrType: number;
  intEncoding?: number;
  intBits?: number;
  array?: { type: number; indexType: number; nelems: number };
  members?: BtfMember[];
  enumValues?: { name: string; value: bigint }[];
  params?: { name: string; type: number }[];
  varLinkage?: number;
  secinfos?: BtfSecInfo[];
}

/**
 * clang leaves datasec variable offsets (and some sizes) as relocations in
 * .rel.BTF (R_BPF_64_NODYLD32 / R_BPF_64_ABS32), for a linker to fill in.
 * We are that linker: add each symbol's value to the 32-bit field in place.
 * Returns a patched copy; the input is left alone.
 */
export function applyDataRelocations(bytes: Uint8Array, relocations: readonly ElfRelocation[], ctx: LoadContext, section: string): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (const rel of relocations) {
    if (rel.type !== R_BPF_64_ABS32 && rel.type !== R_BPF_64_NODYLD32) continue;
    if (rel.offset + 4 > out.byteLength) ctx.invalid("relocation past the end of the section", { section, offset: rel.offset, symbol: rel.symbol.name });
    const addend = rel.addend === undefined ? view.getUint32(rel.offset, true) : Number(rel.addend);
    view.setUint32(rel.offset, (addend + rel.symbol.value) >>> 0, true);
  }
  return out;
}

export class Btf {
  private readonly described = new Map<number, BtfTypeInfo>();

  private constructor(
    /** Index = type id; entry 0 is void. */
    readonly types: readonly BtfType[],
    private readonly strings: ByteReader,
    private readonly ctx: LoadContext,
  ) {}

  static parse(bytes: Uint8Array, ctx: LoadContext, section = ".BTF"): Btf {
    const where = { section };
    const r = new ByteReader(bytes, (what) => ctx.invalid(`truncated BTF: ${what}`, where));
    const magic = r.u16(0, "magic");
    if (magic !== BTF_MAGIC) ctx.invalid(`bad BTF magic 0x${magic.toString(16)}`, where);
    const version = r.u8(2, "version");
    if (version !== 1) ctx.unsupported(`BTF version ${version} (expected 1)`, where);
    const hdrLen = r.u32(4, "hdr_len");
    const typeOff = r.u32(8, "type_off");
    const typeLen = r.u32(12, "type_len");
    const strOff = r.u32(16, "str_off");
    const strLen = r.u32(20, "str_len");
    const typeData = r.slice(hdrLen + typeOff, typeLen, "type section");
    const strings = r.slice(hdrLen + strOff, strLen, "string section");
    const name = (off: number): string => strings.cstring(off, "type name");

    const types: BtfType[] = [{ id: 0, kind: BtfKind.UNKN, name: "void", kindFlag: false, vlen: 0, sizeOrType: 0 }];
    let o = 0;
    while (o < typeLen) {
      const info = typeData.u32(o + 4, "type info");
      const t: BtfType = {
        id: types.length,
        name: name(typeData.u32(o, "name_off")),
        vlen: info & 0xffff,
        kind: (info >>> 24) & 0x1f,
        kindFlag: info >>> 31 === 1,
        sizeOrType: typeData.u32(o + 8, "size/type"),
      };
      o += 12;
      switch (t.kind) {
        case BtfKind.INT: {
          const enc = typeData.u32(o, "int encoding");
          t.intEncoding = (enc >>> 24) & 0x0f;
          t.intBits = enc & 0xff;
          o += 4;
          break;
        }
        case BtfKind.ARRAY:
          t.array = { type: typeData.u32(o), indexType: typeData.u32(o + 4), nelems: typeData.u32(o + 8) };
          o += 12;
          break;
        case BtfKind.STRUCT:
        case BtfKind.UNION:
          t.members = [];
          for (let i = 0; i < t.vlen; i++, o += 12) {
            const off = typeData.u32(o + 8, "member offset");
            t.members.push({
              name: name(typeData.u32(o, "member name")),
              type: typeData.u32(o + 4, "member type"),
              bitOffset: t.kindFlag ? off & 0xffffff : off,
              bitSize: t.kindFlag ? off >>> 24 : 0,
            });
          }
          break;
        case BtfKind.ENUM:
          t.enumValues = [];
          for (let i = 0; i < t.vlen; i++, o += 8) {
            const v = t.kindFlag ? typeData.i32(o + 4) : typeData.u32(o + 4);
            t.enumValues.push({ name: name(typeData.u32(o)), value: BigInt(v) });
          }
          break;
        case BtfKind.ENUM64:
          t.enumValues = [];
          for (let i = 0; i < t.vlen; i++, o += 12) {
            const lo = BigInt(typeData.u32(o + 4));
            const hi = BigInt(typeData.u32(o + 8));
            const raw = (hi << 32n) | lo;
            t.enumValues.push({ name: name(typeData.u32(o)), value: t.kindFlag ? BigInt.asIntN(64, raw) : raw });
          }
          break;
        case BtfKind.FUNC_PROTO:
          t.params = [];
          for (let i = 0; i < t.vlen; i++, o += 8) t.params.push({ name: name(typeData.u32(o)), type: typeData.u32(o + 4) });
          break;
        case BtfKind.VAR:
          t.varLinkage = typeData.u32(o, "var linkage");
          o += 4;
          break;
        case BtfKind.DATASEC:
          t.secinfos = [];
          for (let i = 0; i < t.vlen; i++, o += 12) {
            t.secinfos.push({ type: typeData.u32(o), offset: typeData.u32(o + 4), size: typeData.u32(o + 8) });
          }
          break;
        case BtfKind.DECL_TAG:
          o += 4;
          break;
        case BtfKind.PTR:
        case BtfKind.FWD:
        case BtfKind.TYPEDEF:
        case BtfKind.VOLATILE:
        case BtfKind.CONST:
        case BtfKind.RESTRICT:
        case BtfKind.FUNC:
        case BtfKind.FLOAT:
        case BtfKind.TYPE_TAG:
          break;
        default:
          ctx.unsupported(`unknown BTF kind ${t.kind} (type ${t.id})`, where);
      }
      types.push(t);
    }
    const btf = new Btf(types, strings, ctx);
    btf.checkReferences(section);
    return btf;
  }

  /** Every type id a record mentions must exist, so later walks need no checks. */
  private checkReferences(section: string): void {
    const ok = (id: number): boolean => id < this.types.length;
    for (const t of this.types) {
      const refs: number[] = [];
      if (REFERRING_KINDS.has(t.kind)) refs.push(t.sizeOrType);
      if (t.array) refs.push(t.array.type, t.array.indexType);
      for (const m of t.members ?? []) refs.push(m.type);
      for (const p of t.params ?? []) refs.push(p.type);
      for (const s of t.secinfos ?? []) refs.push(s.type);
      const bad = refs.find((id) => !ok(id));
      if (bad !== undefined) this.ctx.invalid(`BTF type ${t.id} ('${t.name}') refers to missing type ${bad}`, { section });
    }
  }

  /** Named structs of exactly `size` bytes, described. */
  structsOfSize(size: number): BtfTypeInfo[] {
    const out: BtfTypeInfo[] = [];
    for (const t of this.types) {
      if (t.kind === BtfKind.STRUCT && t.name !== "" && t.sizeOrType === size) out.push(this.describe(t.id));
    }
    return out;
  }

  type(id: number): BtfType {
    const t = this.types[id];
    if (t === undefined) this.ctx.invalid(`BTF type ${id} does not exist`, { section: ".BTF" });
    return t;
  }

  string(offset: number): string {
    return this.strings.cstring(offset, "BTF string");
  }

  /** Follows typedefs, qualifiers and type tags to the type that has a layout. */
  resolve(id: number): BtfType {
    const seen = new Set<number>();
    let t = this.type(id);
    while (TRANSPARENT_KINDS.has(t.kind)) {
      if (seen.has(t.id)) this.ctx.invalid(`BTF type ${id} is a cycle of typedefs/qualifiers`, { section: ".BTF" });
      seen.add(t.id);
      t = this.type(t.sizeOrType);
    }
    return t;
  }

  /** Size in bytes, or undefined for types without one (void, fwd, functions). */
  sizeOf(id: number, depth = 0): number | undefined {
    // Arrays nest legitimately, but never thousands deep: stop on cycles.
    if (depth > 256) this.ctx.invalid(`BTF type ${id} nests too deep (a cycle?)`, { section: ".BTF" });
    const t = this.resolve(id);
    switch (t.kind) {
      case BtfKind.INT:
      case BtfKind.STRUCT:
      case BtfKind.UNION:
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
      case BtfKind.FLOAT:
      case BtfKind.DATASEC:
        return t.sizeOrType;
      case BtfKind.PTR:
        return 8; // -target bpf is 64-bit
      case BtfKind.ARRAY: {
        const elem = this.sizeOf(t.array!.type, depth + 1);
        return elem === undefined ? undefined : elem * t.array!.nelems;
      }
      default:
        return undefined;
    }
  }

  datasec(name: string): BtfType | undefined {
    return this.types.find((t) => t.kind === BtfKind.DATASEC && t.name === name);
  }

  /** The first name met while peeling typedefs/qualifiers, "" if none. */
  private outerName(id: number): string {
    let t = this.type(id);
    for (let hops = 0; hops < this.types.length; hops++) {
      if (t.name !== "" && t.kind !== BtfKind.VOLATILE && t.kind !== BtfKind.CONST && t.kind !== BtfKind.RESTRICT) {
        return prefixed(t);
      }
      if (!TRANSPARENT_KINDS.has(t.kind)) return "";
      t = this.type(t.sizeOrType);
    }
    return "";
  }

  /** A self-contained description of a type, for map specs and codecs. */
  describe(id: number): BtfTypeInfo {
    const cached = this.described.get(id);
    if (cached !== undefined) return cached;
    const t = this.resolve(id);
    const info: BtfTypeInfo = { id, name: this.outerName(id), kind: kindName(t.kind), size: this.sizeOf(id) ?? 0 };
    // Cache before recursing into members: nested structs repeat often.
    this.described.set(id, info);
    switch (t.kind) {
      case BtfKind.INT:
        info.signed = (t.intEncoding! & INT_SIGNED) !== 0;
        if ((t.intEncoding! & INT_CHAR) !== 0) info.char = true;
        if ((t.intEncoding! & INT_BOOL) !== 0) info.bool = true;
        break;
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
        info.signed = t.kindFlag;
        info.enumValues = t.enumValues!.map((v) => ({ ...v }));
        break;
      case BtfKind.PTR:
        info.target = t.sizeOrType === 0 ? "void" : this.outerName(t.sizeOrType) || kindName(this.resolve(t.sizeOrType).kind);
        break;
      case BtfKind.ARRAY:
        info.element = this.describe(t.array!.type);
        info.length = t.array!.nelems;
        break;
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        info.members = t.members!.map((m) => {
          const member: BtfMemberInfo = { name: m.name, offset: Math.floor(m.bitOffset / 8), bitOffset: m.bitOffset, type: this.describe(m.type) };
          if (m.bitSize !== 0) member.bitSize = m.bitSize;
          return member;
        });
        break;
      case BtfKind.DATASEC:
        info.members = t.secinfos!.map((s) => {
          const v = this.type(s.type);
          return { name: v.name, offset: s.offset, bitOffset: s.offset * 8, type: this.describe(v.kind === BtfKind.VAR ? v.sizeOrType : v.id) };
        });
        break;
    }
    return info;
  }
}

/** Kinds whose third word is a type id rather than a size. */
const REFERRING_KINDS = new Set<number>([
  BtfKind.PTR,
  BtfKind.TYPEDEF,
  BtfKind.VOLATILE,
  BtfKind.CONST,
  BtfKind.RESTRICT,
  BtfKind.FUNC,
  BtfKind.VAR,
  BtfKind.DECL_TAG,
  BtfKind.TYPE_TAG,
]);

/** Kinds that add a name or qualifier but no layout of their own. */
const TRANSPARENT_KINDS = new Set<number>([BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG]);

function prefixed(t: BtfType): string {
  if (t.kind === BtfKind.STRUCT) return `struct ${t.name}`;
  if (t.kind === BtfKind.UNION) return `union ${t.name}`;
  if (t.kind === BtfKind.ENUM || t.kind === BtfKind.ENUM64) return `enum ${t.name}`;
  return t.name;
}

function kindName(kind: number): BtfKindName {
  switch (kind) {
    case BtfKind.INT:
      return "int";
    case BtfKind.PTR:
      return "ptr";
    case BtfKind.ARRAY:
      return "array";
    case BtfKind.STRUCT:
      return "struct";
    case BtfKind.UNION:
      return "union";
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
      return "enum";
    case BtfKind.FWD:
      return "fwd";
    case BtfKind.FLOAT:
      return "float";
    case BtfKind.FUNC:
    case BtfKind.FUNC_PROTO:
      return "func_proto";
    case BtfKind.DATASEC:
      return "datasec";
    default:
      return "void";
  }
}
