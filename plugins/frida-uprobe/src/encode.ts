/**
 * The bytes the native piece's attach() decodes: struct
 * bh_uprobe_private_data of include/bpfhook/uprobe_plugin.h, which is the
 * layout's reference. Keep the two in step.
 *
 *   u64 address | u32 attach_type | u32 flags | u64 func_offset | u64 func_size | description\0
 *   [ module_path\0 ]   with MODULE_RELATIVE: `address` is then the link-time vaddr in that module
 */
import { StructWriter } from "@bpfhook/sdk";

/** BH_UPROBE_F_*: bits of the flags field. */
export const UprobeFlags = {
  /** `address` is an IFUNC resolver: the native side calls it and hooks what it returns. */
  IFUNC_RESOLVER: 1 << 0,
  /** The program calls no helper: with a JIT the engine skips saving vector state. */
  NO_HELPERS: 1 << 1,
  /**
   * `address` is the link-time vaddr in `modulePath` (address - load bias),
   * resolved by the native piece in the process it runs in (agent mode).
   */
  MODULE_RELATIVE: 1 << 2,
} as const;

/** BH_UPROBE_PRIVATE_DATA_FIXED: bytes before the description. */
export const PRIVATE_DATA_FIXED = 32;

export interface EncodedFields {
  readonly address: bigint;
  readonly attachType: number;
  readonly flags: number;
  /** Bytes from the function's start to `address` (0: its entry, or unknown). */
  readonly funcOffset?: bigint;
  /** The function's size, 0 if unknown. */
  readonly funcSize?: bigint;
  readonly description: string;
  /** With MODULE_RELATIVE: the module's absolute path as mapped; absent otherwise. */
  readonly modulePath?: string;
}

export function encodePrivateData(f: EncodedFields): Uint8Array {
  if (f.description.includes("\0")) throw new Error(`description '${f.description}' contains NUL`);
  const relative = (f.flags & UprobeFlags.MODULE_RELATIVE) !== 0;
  if (relative !== (f.modulePath !== undefined)) {
    throw new Error(`${f.description}: a module path goes with the MODULE_RELATIVE flag, and only with it`);
  }
  if (f.modulePath !== undefined && (!f.modulePath.startsWith("/") || f.modulePath.includes("\0"))) {
    throw new Error(`${f.description}: module path '${f.modulePath}' must be absolute and contain no NUL`);
  }
  const w = new StructWriter()
    .u64(f.address)
    .u32(f.attachType)
    .u32(f.flags)
    .u64(f.funcOffset ?? 0n)
    .u64(f.funcSize ?? 0n)
    .cstring(f.description);
  if (f.modulePath !== undefined) w.cstring(f.modulePath);
  return w.finish();
}

/** The inverse, for tests and tools. */
export function decodePrivateData(bytes: Uint8Array): EncodedFields {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length <= PRIVATE_DATA_FIXED) {
    throw new Error(`private data is ${b.length} bytes, expected more than ${PRIVATE_DATA_FIXED}`);
  }
  const nul = b.indexOf(0, PRIVATE_DATA_FIXED);
  if (nul < 0) throw new Error("private data: description is not NUL-terminated");
  const fields = {
    address: b.readBigUInt64LE(0),
    attachType: b.readUInt32LE(8),
    flags: b.readUInt32LE(12),
    funcOffset: b.readBigUInt64LE(16),
    funcSize: b.readBigUInt64LE(24),
    description: b.toString("utf8", PRIVATE_DATA_FIXED, nul),
  };
  if ((fields.flags & UprobeFlags.MODULE_RELATIVE) === 0) return fields;
  const end = b.indexOf(0, nul + 1);
  if (end < 0) throw new Error("private data: MODULE_RELATIVE without a NUL-terminated module path");
  return { ...fields, modulePath: b.toString("utf8", nul + 1, end) };
}
