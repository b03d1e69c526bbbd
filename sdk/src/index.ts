export { AttachTypeId, PLUGIN_ABI_VERSION } from "./attach-types.js";
export type {
  AttachPlugin,
  AttachRequest,
  AttachTypeSpec,
  HelperDecl,
  NativeCaller,
  PluginExport,
  PluginHost,
} from "./plugin.js";
export { definePlugin } from "./plugin.js";
export { StructWriter } from "./encoding.js";
export { includeDir } from "./paths.js";

export const SDK_VERSION = "0.1.0";
