/**
 * Private data to the 16 bytes of struct bh_sc_private_data
 * (include/bpfhook/syscall_trace.h), and back (tests, tools).
 */
import { StructWriter } from "@bpfhook/sdk";
import { PRIVATE_DATA_SIZE, ScFlags } from "./encode-constants.js";
import type { SyscallTracePrivateData } from "./schema.js";

/**
 * `noHelpers`: the program calls no helper, so its JIT code touches no vector
 * register and the dispatcher need not keep the vector state around it.
 */
export function encodePrivateData(d: SyscallTracePrivateData, noHelpers = false): Uint8Array {
  const all = d.nr === "all";
  const flags = (all ? ScFlags.ALL : 0) | (d.override === "deny" ? 0 : ScFlags.ALLOW_OVERRIDE) | (noHelpers ? ScFlags.NO_HELPERS : 0);
  const bytes = new StructWriter()
    .u32(d.direction === "exit" ? 1 : 0)
    .u32(flags)
    .u32(d.nr === "all" ? 0 : d.nr)
    .u32(0)
    .finish();
  if (bytes.length !== PRIVATE_DATA_SIZE) throw new Error(`private data is ${bytes.length} bytes, not ${PRIVATE_DATA_SIZE}`);
  return bytes;
}

export function decodePrivateData(bytes: Uint8Array): SyscallTracePrivateData {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = v.getUint32(4, true);
  return {
    direction: v.getUint32(0, true) === 1 ? "exit" : "enter",
    nr: (flags & ScFlags.ALL) !== 0 ? "all" : v.getUint32(8, true),
    override: (flags & ScFlags.ALLOW_OVERRIDE) !== 0 ? "allow" : "deny",
  };
}
