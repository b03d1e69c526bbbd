/**
 * Finds plugin packages by npm name: ours (@bpfhook/plugin-*) and third
 * parties' alike. A plugin package says so in its package.json:
 *
 *   "bpfhook": { "plugin": "./dist/plugin.js" }
 *
 * and that module exports the plugin as `plugin` or `default` (an object
 * implementing the SDK's AttachPlugin, or an injectable class making one).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { PluginExport } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

export interface FoundPlugin {
  /** The npm package name. */
  readonly packageName: string;
  readonly packageDir: string;
  readonly exported: PluginExport;
}

export interface PluginLoader {
  /** Loads the plugin package `name`, resolved from `fromDir`. */
  load(name: string, fromDir: string): FoundPlugin;
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

export class NodePluginLoader implements PluginLoader {
  load(name: string, fromDir: string): FoundPlugin {
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
    const packageDir = path.dirname(manifestPath);
    const manifest = readJson(manifestPath);
    const entry = manifest.bpfhook?.plugin;
    if (typeof entry !== "string") {
      throw new BpfhookError(
        "PLUGIN_INVALID",
        `[${name}] ${manifestPath} has no "bpfhook": { "plugin": "<module>" } field, so it is not a bpfhook plugin`,
        { plugin: name, file: manifestPath },
      );
    }
    const modulePath = path.resolve(packageDir, entry);
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
