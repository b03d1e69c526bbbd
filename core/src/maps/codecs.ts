/**
 * Codecs turn map keys and values into the bytes the native side stores, and
 * back. Layouts follow C on x86-64 little-endian: a struct codec aligns each
 * field to its natural alignment and pads the end, as clang lays out the
 * struct a program declares.
 */
import { BpfhookError } from "../errors.js";

export interface Codec<T> {
  /** Bytes the value takes. */
  readonly size: number;
  /** Alignment inside a struct (a power of two). */
  readonly align: number;
  /** Writes `value` at `offset`; `buf` has at least `size` bytes from there. */
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
}

/** The type a codec decodes to. */
export type CodecValue<C> = C extends Codec<infer T> ? T : never;

function intCheck(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BpfhookError("BAD_ARGUMENT", `codec ${name}: ${String(value)} is not an integer in [${min}, ${max}]`);
  }
}

function bigCheck(name: string, value: bigint, min: bigint, max: bigint): void {
  if (typeof value !== "bigint" || value < min || value > max) {
    throw new BpfhookError("BAD_ARGUMENT", `codec ${name}: ${String(value)} is not a bigint in [${min}, ${max}]`);
  }
}

export const u8: Codec<number> = {
  size: 1,
  align: 1,
  encode: (v, b, o) => {
    intCheck("u8", v, 0, 0xff);
    b.writeUInt8(v, o);
  },
  decode: (b, o) => b.readUInt8(o),
};

export const u16: Codec<number> = {
  size: 2,
  align: 2,
  encode: (v, b, o) => {
    intCheck("u16", v, 0, 0xffff);
    b.writeUInt16LE(v, o);
  },
  decode: (b, o) => b.readUInt16LE(o),
};

export const u32: Codec<number> = {
  size: 4,
  align: 4,
  encode: (v, b, o) => {
    intCheck("u32", v, 0, 0xffffffff);
    b.writeUInt32LE(v, o);
  },
  decode: (b, o) => b.readUInt32LE(o),
};

export const i32: Codec<number> = {
  size: 4,
  align: 4,
  encode: (v, b, o) => {
    intCheck("i32", v, -0x80000000, 0x7fffffff);
    b.writeInt32LE(v, o);
  },
  decode: (b, o) => b.readInt32LE(o),
};

export const u64: Codec<bigint> = {
  size: 8,
  align: 8,
  encode: (v, b, o) => {
    bigCheck("u64", v, 0n, 0xffffffffffffffffn);
    b.writeBigUInt64LE(v, o);
  },
  decode: (b, o) => b.readBigUInt64LE(o),
};

export const i64: Codec<bigint> = {
  size: 8,
  align: 8,
  encode: (v, b, o) => {
    bigCheck("i64", v, -(1n << 63n), (1n << 63n) - 1n);
    b.writeBigInt64LE(v, o);
  },
  decode: (b, o) => b.readBigInt64LE(o),
};

/**
 * A u64 read as a JS number, for counters that stay below 2^53 (reading a
 * larger one throws rather than silently losing precision).
 */
export const u64n: Codec<number> = {
  size: 8,
  align: 8,
  encode: (v, b, o) => {
    intCheck("u64n", v, 0, Number.MAX_SAFE_INTEGER);
    b.writeBigUInt64LE(BigInt(v), o);
  },
  decode: (b, o) => {
    const v = b.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new BpfhookError("BAD_ARGUMENT", `codec u64n: ${v} does not fit a JS number; use u64`);
    }
    return Number(v);
  },
};

export const f64: Codec<number> = {
  size: 8,
  align: 8,
  encode: (v, b, o) => {
    b.writeDoubleLE(v, o);
  },
  decode: (b, o) => b.readDoubleLE(o),
};

/** Fixed-size raw bytes; a shorter Buffer is zero-padded, a longer one refused. */
export function bytes(size: number): Codec<Buffer> {
  intCheck("bytes(size)", size, 0, 1 << 30);
  return {
    size,
    align: 1,
    encode: (v, b, o) => {
      if (!(v instanceof Uint8Array) || v.length > size) {
        throw new BpfhookError("BAD_ARGUMENT", `codec bytes(${size}): expected a Buffer of at most ${size} bytes`);
      }
      b.set(v, o);
      b.fill(0, o + v.length, o + size);
    },
    // A copy: the caller's result must not alias a reused buffer.
    decode: (b, o) => Buffer.from(b.subarray(o, o + size)),
  };
}

/** A NUL-padded C string in `size` bytes (char name[size]); decoding stops at the first NUL. */
export function cstring(size: number): Codec<string> {
  intCheck("cstring(size)", size, 1, 1 << 20);
  return {
    size,
    align: 1,
    encode: (v, b, o) => {
      const raw = Buffer.from(v, "utf8");
      if (raw.length >= size) {
        throw new BpfhookError("BAD_ARGUMENT", `codec cstring(${size}): '${v}' needs ${raw.length + 1} bytes`);
      }
      b.set(raw, o);
      b.fill(0, o + raw.length, o + size);
    },
    decode: (b, o) => {
      const s = b.subarray(o, o + size);
      const end = s.indexOf(0);
      return s.subarray(0, end < 0 ? size : end).toString("utf8");
    },
  };
}

/**
 * `char name[size]` as BTF describes it (clang marks no char flag), for maps
 * read without a codec of the user's:
 * - encode takes a string (UTF-8, at most size - 1 bytes, NUL-padded), a
 *   Buffer / Uint8Array (at most size bytes, zero-padded) or an array of
 *   byte values (exactly size; what earlier versions decoded to);
 * - decode gives a string when the bytes are text ended by a NUL: valid
 *   UTF-8 without control characters (tab, newline, carriage return
 *   allowed) up to the first NUL, and only zeroes after it. Anything else
 *   (no NUL, binary bytes, data after the NUL) is a Buffer of all `size`
 *   bytes, so nothing is lost and it encodes back unchanged.
 */
export function chars(size: number): Codec<string | Buffer> {
  intCheck("chars(size)", size, 1, 1 << 20);
  const text = new TextDecoder("utf-8", { fatal: true });
  return {
    size,
    align: 1,
    encode: (v, b, o) => {
      let raw: Uint8Array;
      if (typeof v === "string") {
        raw = Buffer.from(v, "utf8");
        if (raw.length >= size) {
          throw new BpfhookError("BAD_ARGUMENT", `codec chars(${size}): '${v}' needs ${raw.length + 1} bytes with its NUL`);
        }
      } else if (v instanceof Uint8Array) {
        raw = v;
      } else if (Array.isArray(v) && (v as unknown[]).length === size) {
        const bytesOf = Buffer.alloc(size);
        (v as unknown[]).forEach((x, i) => {
          if (typeof x !== "number" || !Number.isInteger(x) || x < -128 || x > 255) {
            throw new BpfhookError("BAD_ARGUMENT", `codec chars(${size}): element ${i} (${String(x)}) is not a byte`);
          }
          bytesOf[i] = x & 0xff;
        });
        raw = bytesOf;
      } else {
        throw new BpfhookError("BAD_ARGUMENT", `codec chars(${size}): expected a string, a Buffer of at most ${size} bytes or ${size} byte values`);
      }
      if (raw.length > size) throw new BpfhookError("BAD_ARGUMENT", `codec chars(${size}): ${raw.length} bytes do not fit`);
      b.set(raw, o);
      b.fill(0, o + raw.length, o + size);
    },
    decode: (b, o) => {
      const s = b.subarray(o, o + size);
      const end = s.indexOf(0);
      if (end >= 0 && s.subarray(end).every((x) => x === 0)) {
        const head = s.subarray(0, end);
        if (head.every((x) => x >= 0x20 ? x !== 0x7f : x === 0x09 || x === 0x0a || x === 0x0d)) {
          try {
            return text.decode(head);
          } catch {
            // not UTF-8: bytes
          }
        }
      }
      return Buffer.from(s);
    },
  };
}

/** A C array of `count` elements (T name[count]). */
export function array<T>(element: Codec<T>, count: number): Codec<T[]> {
  intCheck("array(count)", count, 0, 1 << 24);
  const stride = alignUp(element.size, element.align);
  return {
    size: stride * count,
    align: element.align,
    encode: (v, b, o) => {
      // Byte arrays (__u8 data[N]) also take a Buffer of exactly N bytes.
      const list = element.size === 1 && v instanceof Uint8Array ? (Array.from(v) as T[]) : v;
      if (!Array.isArray(list) || list.length !== count) {
        throw new BpfhookError("BAD_ARGUMENT", `codec array: expected ${count} elements${element.size === 1 ? " or a Buffer of as many bytes" : ""}`);
      }
      list.forEach((e, i) => element.encode(e, b, o + i * stride));
    },
    decode: (b, o) => Array.from({ length: count }, (_, i) => element.decode(b, o + i * stride)),
  };
}

export type StructFields = Record<string, Codec<any>>;
export type StructValue<F extends StructFields> = { [K in keyof F]: CodecValue<F[K]> };

export interface StructCodec<F extends StructFields> extends Codec<StructValue<F>> {
  /** Byte offset of each field. */
  readonly offsets: { readonly [K in keyof F]: number };
}

/**
 * A C struct from fields in declaration order:
 * `struct({ pid: u32, comm: cstring(16), ts: u64 })` is
 * `struct { __u32 pid; char comm[16]; __u64 ts; }` (32 bytes: 4 bytes of
 * padding before ts). `packed` drops the padding (__attribute__((packed))).
 * Padding bytes are written as zero: hash maps compare keys bytewise.
 */
export function struct<F extends StructFields>(fields: F, opts: { packed?: boolean } = {}): StructCodec<F> {
  const names = Object.keys(fields) as (keyof F & string)[];
  const offsets = {} as Record<keyof F, number>;
  let offset = 0;
  let align = 1;
  for (const name of names) {
    const c = fields[name]!;
    const a = opts.packed ? 1 : c.align;
    offset = alignUp(offset, a);
    offsets[name] = offset;
    offset += c.size;
    align = Math.max(align, a);
  }
  const size = alignUp(offset, align);
  return {
    size,
    align,
    offsets,
    encode: (v, b, o) => {
      if (v === null || typeof v !== "object") {
        throw new BpfhookError("BAD_ARGUMENT", `codec struct: expected an object with ${names.join(", ")}`);
      }
      b.fill(0, o, o + size);
      for (const name of names) {
        if (!(name in v)) throw new BpfhookError("BAD_ARGUMENT", `codec struct: missing field '${name}'`);
        fields[name]!.encode(v[name], b, o + offsets[name]);
      }
    },
    decode: (b, o) => {
      const out = {} as StructValue<F>;
      for (const name of names) out[name] = fields[name]!.decode(b, o + offsets[name]);
      return out;
    },
  };
}

export interface LpmKey {
  /** Significant leading bits of `data`. */
  prefixlen: number;
  data: Buffer;
}

/**
 * The LPM trie key `struct { __u32 prefixlen; __u8 data[dataSize]; }`
 * (an IPv4 trie has dataSize 4, IPv6 16).
 */
export function lpmKey(dataSize: number): Codec<LpmKey> {
  intCheck("lpmKey(dataSize)", dataSize, 1, 256);
  return {
    size: 4 + dataSize,
    align: 4,
    encode: (v, b, o) => {
      intCheck("lpmKey prefixlen", v.prefixlen, 0, dataSize * 8);
      if (!(v.data instanceof Uint8Array) || v.data.length > dataSize) {
        throw new BpfhookError("BAD_ARGUMENT", `codec lpmKey(${dataSize}): data must be at most ${dataSize} bytes`);
      }
      b.writeUInt32LE(v.prefixlen, o);
      b.set(v.data, o + 4);
      b.fill(0, o + 4 + v.data.length, o + 4 + dataSize);
    },
    decode: (b, o) => ({ prefixlen: b.readUInt32LE(o), data: Buffer.from(b.subarray(o + 4, o + 4 + dataSize)) }),
  };
}

/** Raw bytes of exactly the map's size: the default when a map has no codec. */
export function raw(size: number): Codec<Buffer> {
  const inner = bytes(size);
  return {
    ...inner,
    encode: (v, b, o) => {
      if (!(v instanceof Uint8Array) || v.length !== size) {
        throw new BpfhookError("BAD_ARGUMENT", `expected a Buffer of exactly ${size} bytes`);
      }
      b.set(v, o);
    },
  };
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
