/**
 * DI tokens. Interfaces get Symbol tokens and every injection names its token
 * explicitly (no reliance on emitted metadata; see docs/ARCHITECTURE.md).
 */
export const PluginLoaderToken = Symbol("bpfhook.PluginLoader");
export const PluginRegistryToken = Symbol("bpfhook.PluginRegistry");
export const NativePluginHostToken = Symbol("bpfhook.NativePluginHost");
export const RuntimeToken = Symbol("bpfhook.Runtime");
/** Every registered plugin instance, for services that injectAll them. */
export const AttachPluginToken = Symbol("bpfhook.AttachPlugin");
