/**
 * Finds plugin packages by npm name: ours (@bpfhook/plugin-*) and third
 * parties' alike. A plugin package says so in its package.json:
 *
 *   "bpfhook": { "plugin": "./dist/plugin.js" }
 *
 * and that module exports the plugin as `plugin` or `default` (an object
 * implementing the SDK's AttachPlugin, or an injectable class making one).
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { PluginExport } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

export interface FoundPlugin {
  /** The npm package name. */
  readonly packageName: string;
  /** The package's directory, symlinks resolved: its entry and native piece must lie inside it. */
  readonly packageDir: string;
  readonly exported: PluginExport;
}

export interface PluginLoader {
  /** Loads the plugin package `name`, resolved from `fromDir`. */
  load(name: string, fromDir: string): FoundPlugin;
  /** Loads the plugin package in directory `dir` (the CLI's `--plugin DIR`). */
  loadDirectory?(dir: string): FoundPlugin;
  /** Names of the plugin packages a project's package.json depends on. */
  fromPackageJson(packageJsonPath: string): string[];
}

interface PackageJson {
  name?: string;
  bpfhook?: { plugin?: string };
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function readJson(file: string): PackageJson {
  return JSON.parse(readFileSync(file, "utf8")) as PackageJson;
}

// npm's rules for a package name (scoped or not). Anything else, such as
// "./x", "/abs" or "a/../../b", would make require.resolve read a path, not
// look a package up in node_modules.
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

/** True when `file` is `dir` or lies below it (both absolute, symlinks resolved by the caller). */
export function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/**
 * The real path of `file` when it exists; otherwise its nearest existing
 * ancestor's real path joined with the rest (a native piece that is not
 * built yet is still checked for where it would be).
 */
export function realPathOf(file: string): string {
  const abs = path.resolve(file);
  let head = abs;
  const tail: string[] = [];
  while (!existsSync(head)) {
    const parent = path.dirname(head);
    if (parent === head) return abs;
    tail.unshift(path.basename(head));
    head = parent;
  }
  return path.join(realpathSync(head), ...tail);
}

/**
 * Refuses a path a plugin package gives (its entry module, its native
 * library) that leaves the package's directory, symlinks included.
 */
export function assertInsidePackage(pluginLabel: string, packageDir: string, what: string, file: string): string {
  const real = realPathOf(file);
  if (!isInside(packageDir, real)) {
    throw new BpfhookError(
      "PLUGIN_INVALID",
      `[${pluginLabel}] ${what} ${file} lies outside the plugin package's directory ${packageDir}; ` +
        "a plugin may only load code from inside its own package",
      { plugin: pluginLabel, file },
    );
  }
  return real;
}

export class NodePluginLoader implements PluginLoader {
  load(name: string, fromDir: string): FoundPlugin {
    if (!PACKAGE_NAME.test(name)) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `plugin '${name}' is not an npm package name; give a package name, or pass the plugin object itself`,
        { plugin: name },
      );
    }
    const req = createRequire(path.join(fromDir, "noop.js"));
    let manifestPath: string;
    try {
      manifestPath = req.resolve(`${name}/package.json`);
    } catch (cause) {
      throw new BpfhookError(
        "PLUGIN_NOT_FOUND",
        `plugin package '${name}' not found from ${fromDir} (is it installed? npm install ${name})`,
        { plugin: name, cause },
      );
    }
    return loadManifest(name, manifestPath);
  }

  loadDirectory(dir: string): FoundPlugin {
    const manifestPath = path.join(path.resolve(dir), "package.json");
    if (!existsSync(manifestPath)) {
      throw new BpfhookError("PLUGIN_NOT_FOUND", `plugin directory ${dir} has no package.json`, { file: manifestPath });
    }
    let name: string | undefined;
    try {
      name = readJson(manifestPath).name;
    } catch (cause) {
      throw new BpfhookError("PLUGIN_INVALID", `${manifestPath}: not valid JSON`, { file: manifestPath, cause });
    }
    return loadManifest(typeof name === "string" && name !== "" ? name : path.basename(path.resolve(dir)), manifestPath);
  }

  fromPackageJson(packageJsonPath: string): string[] {
    const manifest = readJson(packageJsonPath);
    const deps = new Set([
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.devDependencies ?? {}),
      ...Object.keys(manifest.optionalDependencies ?? {}),
    ]);
    const fromDir = path.dirname(packageJsonPath);
    const req = createRequire(path.join(fromDir, "noop.js"));
    const names: string[] = [];
    for (const dep of [...deps].sort()) {
      try {
        const depManifest = readJson(req.resolve(`${dep}/package.json`));
        if (typeof depManifest.bpfhook?.plugin === "string") names.push(dep);
      } catch {
        // Not installed or hides its package.json: not something we can load.
      }
    }
    return names;
  }
}

/** Loads the plugin whose package.json is `manifestPath` (its entry checked to lie inside the package). */
function loadManifest(name: string, manifestPath: string): FoundPlugin {
  const packageDir = realpathSync(path.dirname(manifestPath));
  const manifest = readJson(manifestPath);
  const req = createRequire(manifestPath);
  const entry = manifest.bpfhook?.plugin;
  if (typeof entry !== "string") {
    throw new BpfhookError(
      "PLUGIN_INVALID",
      `[${name}] ${manifestPath} has no "bpfhook": { "plugin": "<module>" } field, so it is not a bpfhook plugin`,
      { plugin: name, file: manifestPath },
    );
  }
  const modulePath = assertInsidePackage(name, packageDir, "entry module", path.resolve(packageDir, entry));
  let mod: Record<string, unknown>;
  try {
    mod = req(modulePath) as Record<string, unknown>;
  } catch (cause) {
    throw new BpfhookError("PLUGIN_INVALID", `[${name}] failed to load ${modulePath}: ${(cause as Error).message}`, {
      plugin: name,
      file: modulePath,
      cause,
    });
  }
  const exported = (mod.plugin ?? mod.default) as PluginExport | undefined;
  if (exported === undefined) {
    throw new BpfhookError("PLUGIN_INVALID", `[${name}] ${modulePath} exports neither 'plugin' nor 'default'`, {
      plugin: name,
      file: modulePath,
    });
  }
  return { packageName: name, packageDir, exported };
}
