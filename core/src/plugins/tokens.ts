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
/**
 * The verifier a Runtime runs in strict mode: a function with the shape of
 * `verifyProgram` (core/src/verifier). Default: that one; tests and tools
 * register their own in a parent container.
 */
export const VerifierToken = Symbol("bpfhook.Verifier");
