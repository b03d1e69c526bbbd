export { SDK_VERSION } from "@bpfhook/sdk";
export { BpfhookError, ErrorCodes, type ErrorCode, type ErrorDetail } from "./errors.js";
export * from "./asm/index.js";
export * from "./vm/index.js";
export * from "./conformance/index.js";
export {
  loadObject,
  BPF_MAP_TYPE,
  BPF_F_MMAPABLE,
  BPF_F_NO_PREALLOC,
  BPF_F_RDONLY_PROG,
  type BpfObject,
  type BtfKindName,
  type BtfMemberInfo,
  type BtfTypeInfo,
  type LinkedFunction,
  type LoadObjectOptions,
  type MapSpec,
  type ProgramSpec,
} from "./loader/index.js";
export { Runtime, defaultResolveDir, type RuntimeOptions, type RuntimeTarget, type AttachOptions } from "./runtime/runtime.js";
export { Program } from "./runtime/program.js";
export * from "./config/index.js";
export { applyMaxEntries, applyRodata, type RodataValue } from "./runtime/load-tuning.js";
export { Link } from "./runtime/link.js";
export { ProgArray } from "./runtime/prog-array.js";
export { LoadedObject, type LoadOptions, type LoadSource, type RawObject } from "./runtime/loaded-object.js";
export { describeHelper, describeMapType, helperId, helperName, mapTypeKernelName } from "./kernel-names.js";
export { KCONFIG_TABLE, kernelVersionCode, linuxKernelVersion, type KconfigValue } from "./loader/kconfig.js";
export { PluginRegistry } from "./plugins/registry.js";
export { NodePluginLoader, type PluginLoader, type FoundPlugin } from "./plugins/discovery.js";
export { AttachPluginToken, PluginLoaderToken, PluginRegistryToken, RuntimeToken, VerifierToken } from "./plugins/tokens.js";
export { standardHelpers, STANDARD_HELPER_IDS, verifyProgram } from "./verifier/index.js";
export type {
  ArgKind,
  ContextLayout,
  ContextRange,
  HelperSignature,
  RetKind,
  VerifierErrorInfo,
  VerifierMap,
  VerifierMode,
  VerifyOptions,
  VerifyResult,
  VerifyStats,
} from "./verifier/index.js";
export {
  contextOfAttach,
  contextOfType,
  UNKNOWN_CONTEXT,
  verifierHelpers,
  verifierMaps,
  type VerifyFunction,
} from "./runtime/verification.js";
export * from "./maps/index.js";
export { injectLibrary, type InjectOptions, type InjectResult } from "./agent/inject.js";
export {
  AgentSession,
  agentLibraryPath,
  type AgentSessionOptions,
  type AttachPidOptions,
  type AttachmentReport,
  type BufferEvent,
  type ExitStatus,
  type PrintkLine,
  type RunOptions,
} from "./agent/session.js";
export { findAgentRegions, regionsOfProcess, type AgentRegion } from "./agent/discover.js";
export { compileBpfC, type CompileOptions as BpfCompileOptions } from "./toolchain/clang.js";
