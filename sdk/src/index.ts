/**
 * @bpfhook/sdk: what a bpfhook attach plugin is built on. The TypeScript
 * contract ({@link AttachPlugin}, {@link definePlugin}, {@link AttachTypeSpec},
 * {@link ContextLayout}, {@link HelperDecl}), private-data encoding
 * ({@link StructWriter}), the C header folder for the native piece
 * ({@link includeDir}: `bpfhook/plugin.h`), and services for plugins that
 * hook code (symbol resolution, ELF reading). docs/PLUGINS.md explains the
 * contract; @bpfhook/testkit tests a plugin against it.
 *
 * @packageDocumentation
 */
export { AttachTypeId, PLUGIN_ABI_VERSION } from "./attach-types.js";
export type {
  AttachPlugin,
  AttachProgramCode,
  AttachProgramInfo,
  AttachProgramMap,
  AttachRequest,
  AttachTypeSpec,
  HelperDecl,
  HelperSignatureDecl,
  NativeCaller,
  PluginExport,
  PluginHost,
  AttachTarget,
  RefusedHelper,
} from "./plugin.js";
export type { ArgKind, ContextLayout, ContextRange, HelperSignature, RetKind } from "./verifier-types.js";
export { definePlugin } from "./plugin.js";
export { StructWriter } from "./encoding.js";
export { includeDir } from "./paths.js";

/** This SDK's version (its package.json's). */
export const SDK_VERSION = "0.1.0";

// Symbol resolution (module + symbol -> address in a live process), a service for uprobe-like plugins.
export * from "./symbols/index.js";

// The ELF64 reading layer (bounds-checked, from a buffer or a file at offsets), shared by the symbol service and core's loader.
export * from "./elf/index.js";
