/**
 * Picks a codec for a map's key or value from its BTF type, so maps of a
 * clang-built object read as numbers, bigints and structs instead of bytes.
 * Integers of 1/2/4 bytes become numbers, 8 bytes bigints; `char x[N]`
 * strings or Buffers (codec.chars); other arrays arrays; structs of such
 * members objects; anything else stays a Buffer of the right size.
 */
import type { BtfTypeInfo } from "../loader/index.js";
import { codec, type Codec } from "../maps/index.js";

export function codecFromBtf(type: BtfTypeInfo | undefined, size: number): Codec<any> {
  if (type === undefined || type.size !== size) return codec.raw(size);
  return fromType(type) ?? codec.raw(size);
}

function fromType(t: BtfTypeInfo): Codec<any> | undefined {
  switch (t.kind) {
    case "int":
    case "enum":
      if (t.bool || t.char) return t.size === 1 ? codec.u8 : undefined;
      if (t.size === 1) return codec.u8;
      if (t.size === 2) return codec.u16;
      if (t.size === 4) return t.signed ? codec.i32 : codec.u32;
      if (t.size === 8) return t.signed ? codec.i64 : codec.u64;
      return undefined;
    case "ptr":
      return codec.u64;
    case "struct": {
      const members = t.members ?? [];
      if (members.length === 0 || members.some((m) => m.bitSize !== undefined || m.name === "")) return undefined;
      const fields: Record<string, Codec<any>> = {};
      for (const m of members) {
        const c = m.type.kind === "array" ? arrayCodec(m.type) : fromType(m.type);
        if (!c) return undefined;
        fields[m.name] = c;
      }
      const s = codec.struct(fields);
      // Only when our C layout reproduces the compiler's exactly.
      return s.size === t.size ? s : undefined;
    }
    case "array":
      return arrayCodec(t);
    default:
      return undefined;
  }
}

function arrayCodec(t: BtfTypeInfo): Codec<any> | undefined {
  if (!t.element || t.length === undefined) return undefined;
  // clang describes `char` as a signed 1-byte int named "char", without BTF's char flag.
  if (t.element.kind === "int" && t.element.size === 1 && (t.element.char || /^(signed )?char$/.test(t.element.name))) {
    return codec.chars(t.length);
  }
  const inner = fromType(t.element);
  return inner ? codec.array(inner, t.length) : codec.raw(t.size);
}
