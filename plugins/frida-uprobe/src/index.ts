/**
 * The frida-uprobe plugin: uprobe, uretprobe, uprobe_override and ureplace
 * on native functions of the process that runs the hooks. The name is
 * bpftime's; the hooking is bpfhook's own inline-hook engine (native/).
 *
 * The TypeScript side turns a section name or config entry into a target
 * (section.ts, schema.ts), resolves it to an absolute address with the SDK's
 * symbol service (prepare.ts), and encodes it for the native piece
 * (encode.ts, include/bpfhook/uprobe_plugin.h).
 */
import path from "node:path";
import { definePlugin, PLUGIN_ABI_VERSION, symbolResolver } from "@bpfhook/sdk";
import type { AttachPlugin, SymbolResolver } from "@bpfhook/sdk";
import { UPROBE_ATTACH_TYPES } from "./attach-types.js";
import { encodePrivateData, UprobeFlags } from "./encode.js";
import { resolveTarget } from "./prepare.js";
import { uprobeTargetSchema } from "./schema.js";
import type { UprobePrivateData } from "./schema.js";
import { parseTargetSection } from "./section.js";

export { PT_REGS_LAYOUT, PT_REGS_SIZE, UPROBE, UPROBE_ATTACH_TYPES, UPROBE_OVERRIDE, UREPLACE, URETPROBE } from "./attach-types.js";
export { decodePrivateData, encodePrivateData, PRIVATE_DATA_FIXED, UprobeFlags } from "./encode.js";
export type { EncodedFields } from "./encode.js";
export { resolveTarget } from "./prepare.js";
export { uprobeTargetSchema } from "./schema.js";
export type { ResolvedTarget, UprobePrivateData, UprobeTarget } from "./schema.js";
export { parseTargetSection } from "./section.js";
export type { SectionTarget } from "./section.js";

export const PLUGIN_NAME = "frida-uprobe";

/** end_batch's out: int32 rc, then the message (NUL-terminated). */
const END_BATCH_OUT = 4 + 1024;

/** Where the native piece is built (`npm run build:native` in this package). */
export const NATIVE_LIBRARY = path.resolve(__dirname, "..", "build", "libbpfhook_frida_uprobe.so");

/** The folder holding bpfhook/uprobe_plugin.h, for the native build. */
export function uprobeIncludeDir(): string {
  return path.resolve(__dirname, "..", "include");
}

export interface FridaUprobeOptions {
  /** Symbol service to resolve with (tests pass their own); the SDK's shared one by default. */
  readonly resolver?: SymbolResolver;
}

export function createFridaUprobePlugin(options: FridaUprobeOptions = {}): AttachPlugin<UprobePrivateData> {
  const resolver = options.resolver ?? symbolResolver;
  return definePlugin<UprobePrivateData>({
    name: PLUGIN_NAME,
    version: "0.1.0",
    abiVersion: PLUGIN_ABI_VERSION,
    attachTypes: UPROBE_ATTACH_TYPES,
    privateDataSchema: uprobeTargetSchema,
    nativeLibrary: NATIVE_LIBRARY,
    parseSection: (_type, rest, section) => parseTargetSection(rest, section),
    // The entry as given: the strict schema then names any misspelt key.
    parseConfig: (_type, entry) => entry,
    // The host says where the hook will run (agent mode: another process,
    // module-relative); embedded mode: this process, absolute addresses.
    prepare: ({ type, data }, host) => ({
      ...data,
      resolved: resolveTarget(data, type, resolver, host.target?.pid ?? process.pid, host.target?.moduleRelative ?? false),
    }),
    encode: ({ type, data, program }) => {
      if (!data.resolved) {
        throw new Error(`${type.name} ${describeTarget(data)}: encode() before prepare(); the address is not resolved yet`);
      }
      const { description, funcOffset, funcSize } = data.resolved;
      const noHelpers = program !== undefined && program.helperIds.length === 0 ? UprobeFlags.NO_HELPERS : 0;
      const flags = data.resolved.flags | noHelpers;
      if ((flags & UprobeFlags.MODULE_RELATIVE) === 0) {
        const address = data.resolved.address;
        return encodePrivateData({ address, attachType: type.id, flags, funcOffset, funcSize, description });
      }
      // prepare() flags only targets in a module, with a vaddr.
      const { vaddr, modulePath } = data.resolved;
      if (vaddr === undefined || modulePath === undefined) {
        throw new Error(`${type.name} ${description}: module-relative target without a module path or vaddr`);
      }
      return encodePrivateData({ address: vaddr, attachType: type.id, flags, funcOffset, funcSize, description, modulePath });
    },
    // One engine transaction per batch (include/bpfhook/hook.h): the
    // functions are patched at endBatch, with one pause of the threads.
    beginBatch: (native) => {
      native.callNative(PLUGIN_NAME, "begin_batch", new Uint8Array(0), 0);
    },
    endBatch: (native) => {
      const { out } = native.callNative(PLUGIN_NAME, "end_batch", new Uint8Array(0), END_BATCH_OUT);
      const rc = out.readInt32LE(0);
      if (rc === 0) return;
      const end = out.indexOf(0, 4);
      const message = out.toString("utf8", 4, end < 0 ? out.length : end);
      // A plain Error with a code from core's list (plugins import the SDK only).
      throw Object.assign(new Error(`batch not applied, nothing attached in it stays attached: ${message} (${rc})`), {
        code: "ATTACH_FAILED",
        errno: rc,
      });
    },
    describe: ({ type, data }) => {
      const r = data.resolved;
      if (!r) return `${type.name} ${describeTarget(data)}`;
      const ifunc = (r.flags & UprobeFlags.IFUNC_RESOLVER) !== 0 ? " (IFUNC resolver; its implementation is hooked)" : "";
      const where =
        (r.flags & UprobeFlags.MODULE_RELATIVE) !== 0 && r.vaddr !== undefined
          ? `vaddr 0x${r.vaddr.toString(16)} (module-relative)`
          : `0x${r.address.toString(16)}`;
      return `${type.name} ${r.description} at ${where}${ifunc}`;
    },
  });
}

/** A target as the user wrote it, for messages before resolution. */
function describeTarget(data: UprobePrivateData): string {
  if (data.address !== undefined) return `0x${data.address.toString(16)}`;
  const off = data.offset !== undefined ? `0x${data.offset.toString(16)}` : "";
  if (data.symbol === undefined) return `${data.module}:${off}`;
  return `${data.module}:${data.symbol}${off ? `+${off}` : ""}`;
}

export const plugin = createFridaUprobePlugin();
export default plugin;
