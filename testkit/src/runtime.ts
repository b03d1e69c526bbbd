/**
 * Throwaway runtimes for tests: each has its own shared-memory region
 * (created on the first load, removed at close) and only the plugins the
 * test names, given as package names or as plugin package directories.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { Runtime, type RuntimeOptions } from "@bpfhook/core";
import type { AttachPlugin, PluginExport } from "@bpfhook/sdk";

/** A plugin as tests name it: a package directory, an npm package name, or the plugin itself. */
export type PluginRef = string | PluginExport;

export interface TestRuntimeOptions extends Omit<RuntimeOptions, "plugins"> {
  /**
   * Plugins to register: a directory holding a plugin package (absolute,
   * or starting with "."; resolved from the working directory), an npm
   * package name (resolved from `resolveFrom`, default the working
   * directory: a test names what its own package installed), or a plugin
   * object or class.
   */
  plugins?: readonly PluginRef[];
}

/** Whether `ref` names a plugin package directory rather than an npm package. */
export function isPluginDirectory(ref: string): boolean {
  if (!(path.isAbsolute(ref) || ref.startsWith("."))) return false;
  return existsSync(ref) && statSync(ref).isDirectory();
}

/** Registers one plugin in `rt` (see TestRuntimeOptions.plugins) and returns it as registered. */
export function registerPlugin(rt: Runtime, ref: PluginRef): AttachPlugin {
  if (typeof ref === "string" && isPluginDirectory(ref)) return rt.registry.registerDirectory(path.resolve(ref), rt.container);
  return rt.use(ref);
}

/**
 * A runtime for one test: its own region (8 MiB unless `region` says
 * otherwise; stale regions of dead test processes are cleaned as usual) and
 * the given plugins. Close it when done, or use {@link withRuntime}.
 */
export async function createTestRuntime(opts: TestRuntimeOptions = {}): Promise<Runtime> {
  const { plugins = [], ...rest } = opts;
  const rt = await Runtime.create({
    resolveFrom: process.cwd(),
    ...rest,
    region: { size: 8 << 20, ...rest.region },
  });
  try {
    for (const p of plugins) registerPlugin(rt, p);
  } catch (err) {
    rt.close();
    throw err;
  }
  return rt;
}

/** Runs `fn` with a fresh test runtime and closes it afterwards, whether `fn` succeeded or threw. */
export async function withRuntime<T>(opts: TestRuntimeOptions, fn: (rt: Runtime) => T | Promise<T>): Promise<T> {
  const rt = await createTestRuntime(opts);
  try {
    return await fn(rt);
  } finally {
    rt.close();
  }
}
