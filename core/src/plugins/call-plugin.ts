/**
 * Every call into a plugin's TypeScript goes through here, so a plugin's
 * failure always surfaces as a BpfhookError that names the plugin and the hook,
 * with the plugin's own error kept as the cause.
 */
import { BpfhookError, ErrorCodes, type ErrorCode } from "../errors.js";

export async function callPlugin<T>(pluginName: string, hook: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapPluginError(pluginName, hook, err);
  }
}

export function callPluginSync<T>(pluginName: string, hook: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw wrapPluginError(pluginName, hook, err);
  }
}

function wrapPluginError(pluginName: string, hook: string, err: unknown): BpfhookError {
  const tag = `[${pluginName}]`;
  if (err instanceof BpfhookError) {
    if (err.message.startsWith(tag)) return err;
    return new BpfhookError(err.code, `${tag} ${hook}: ${err.message}`, { ...err.detail, plugin: pluginName, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  // Plugins depend on the SDK only, so they throw plain Errors; a `code` from
  // our list (e.g. NOT_FOUND for a missing symbol) is kept.
  const own = (err as { code?: unknown } | null)?.code;
  const code: ErrorCode = ErrorCodes.includes(own as ErrorCode) ? (own as ErrorCode) : "PLUGIN_INVALID";
  const text = code === "PLUGIN_INVALID" ? `${tag} ${hook} failed: ${message}` : `${tag} ${message}`;
  return new BpfhookError(code, text, { plugin: pluginName, cause: err });
}
