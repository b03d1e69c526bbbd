/**
 * Reader for the CO-RE part of .BTF.ext. libbpf rewrites these instructions
 * against the running kernel's BTF; bpfhook has no kernel to adapt to, so the
 * object's own BTF is the target and the values clang compiled in already
 * hold. The loader only needs to know where the records are and of which
 * kind, to refuse the few kinds whose value has no meaning without a kernel.
 */
import { ByteReader } from "@bpfhook/sdk";
import type { Btf } from "./btf.js";
import type { LoadContext } from "./context.js";

export const CoreRelocKind = {
  FIELD_BYTE_OFFSET: 0,
  FIELD_BYTE_SIZE: 1,
  FIELD_EXISTS: 2,
  FIELD_SIGNED: 3,
  FIELD_LSHIFT_U64: 4,
  FIELD_RSHIFT_U64: 5,
  TYPE_ID_LOCAL: 6,
  TYPE_ID_TARGET: 7,
  TYPE_EXISTS: 8,
  TYPE_SIZE: 9,
  ENUMVAL_EXISTS: 10,
  ENUMVAL_VALUE: 11,
  TYPE_MATCHES: 12,
} as const;

export interface CoreRelocation {
  section: string;
  /** Byte offset of the instruction inside its section. */
  insnOffset: number;
  typeId: number;
  accessString: string;
  kind: number;
}

const CORE_RELO_SIZE = 16;

export function parseCoreRelocations(bytes: Uint8Array, btf: Btf, ctx: LoadContext, section = ".BTF.ext"): CoreRelocation[] {
  const where = { section };
  const r = new ByteReader(bytes, (what) => ctx.invalid(`truncated BTF.ext: ${what}`, where));
  const magic = r.u16(0, "magic");
  if (magic !== 0xeb9f) ctx.invalid(`bad BTF.ext magic 0x${magic.toString(16)}`, where);
  const hdrLen = r.u32(4, "hdr_len");
  // Older producers stop the header before the CO-RE fields: no records.
  if (hdrLen < 32) return [];
  const off = r.u32(24, "core_relo_off");
  const len = r.u32(28, "core_relo_len");
  if (len === 0) return [];
  const data = r.slice(hdrLen + off, len, "core_relo section");

  const recordSize = data.u32(0, "record size");
  if (recordSize < CORE_RELO_SIZE) ctx.invalid(`CO-RE record size ${recordSize} is smaller than ${CORE_RELO_SIZE}`, where);
  const out: CoreRelocation[] = [];
  let o = 4;
  while (o < len) {
    const secName = btf.string(data.u32(o, "section name"));
    const count = data.u32(o + 4, "record count");
    o += 8;
    data.check(o, count * recordSize, `CO-RE records of '${secName}'`);
    for (let i = 0; i < count; i++, o += recordSize) {
      out.push({
        section: secName,
        insnOffset: data.u32(o),
        typeId: data.u32(o + 4),
        accessString: btf.string(data.u32(o + 8)),
        kind: data.u32(o + 12),
      });
    }
  }
  return out;
}

/**
 * Why a CO-RE kind cannot be honoured, or undefined when the compiled-in
 * value (computed from the object's own BTF) is right for bpfhook.
 */
export function unsupportedCoreKind(kind: number): string | undefined {
  switch (kind) {
    case CoreRelocKind.TYPE_ID_TARGET:
      return "CO-RE relocation asks for a kernel BTF type id (bpf_core_type_id_kernel), which has no meaning in user space";
    case CoreRelocKind.FIELD_BYTE_OFFSET:
    case CoreRelocKind.FIELD_BYTE_SIZE:
    case CoreRelocKind.FIELD_EXISTS:
    case CoreRelocKind.FIELD_SIGNED:
    case CoreRelocKind.FIELD_LSHIFT_U64:
    case CoreRelocKind.FIELD_RSHIFT_U64:
    case CoreRelocKind.TYPE_ID_LOCAL:
    case CoreRelocKind.TYPE_EXISTS:
    case CoreRelocKind.TYPE_SIZE:
    case CoreRelocKind.ENUMVAL_EXISTS:
    case CoreRelocKind.ENUMVAL_VALUE:
    case CoreRelocKind.TYPE_MATCHES:
      return undefined;
    default:
      return `unknown CO-RE relocation kind ${kind}`;
  }
}
