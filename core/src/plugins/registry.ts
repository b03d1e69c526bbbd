/**
 * The plugin registry: which plugins are in, which attach types they serve,
 * which plugin a section name or config entry selects, and the validation of
 * private data by the plugin's own schema, all before anything native runs.
 */
import { inject, injectable } from "tsyringe";
import type { DependencyContainer } from "tsyringe";
import { PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import type { AttachPlugin, AttachTarget, AttachTypeSpec, PluginExport } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";
import { callPluginSync } from "./call-plugin.js";
import { assertInsidePackage, type PluginLoader } from "./discovery.js";
import { checkPluginShape } from "./plugin-shape.js";
import { AttachPluginToken, PluginLoaderToken } from "./tokens.js";

export interface ResolvedType {
  readonly plugin: AttachPlugin;
  readonly type: AttachTypeSpec;
}

/** Where a plugin registered from a package came from. */
export interface PluginOrigin {
  readonly packageName: string;
  /** Real path of the package directory; its native piece must lie inside. */
  readonly packageDir: string;
}

export interface SectionMatch extends ResolvedType {
  /** What follows the prefix and its "/" ("libc.so.6:malloc"). */
  readonly rest: string;
}

@injectable()
export class PluginRegistry {
  private readonly plugins = new Map<string, AttachPlugin>();
  private readonly typesById = new Map<number, ResolvedType>();
  private readonly typesByName = new Map<string, ResolvedType>();
  private readonly prefixes = new Map<string, ResolvedType>();
  /** Shared prefixes (AttachTypeSpec.sharedPrefixes): every type that shares each, in registration order. */
  private readonly shared = new Map<string, ResolvedType[]>();
  /** claimsSection answers for the current target, by plugin, type id and section. */
  private readonly claims = new Map<string, boolean>();
  private target: AttachTarget | undefined;
  /** Plugins that came from packages, by the package's real directory. */
  private readonly byPackageDir = new Map<string, AttachPlugin>();
  private readonly byPackageName = new Map<string, AttachPlugin>();
  private readonly origins = new Map<string, PluginOrigin>();

  constructor(@inject(PluginLoaderToken) private readonly loader: PluginLoader) {}

  /**
   * Registers a plugin given as an object or an injectable class (resolved in
   * `container`, so it may inject core services). All checks run before the
   * registry changes: a refused plugin leaves no trace.
   */
  register(exported: PluginExport, container: DependencyContainer, origin = "code", from?: PluginOrigin): AttachPlugin {
    const instance =
      typeof exported === "function" ? container.resolve(exported as new (...args: any[]) => AttachPlugin) : exported;
    const plugin = checkPluginShape(instance, origin);
    const tag = `[${plugin.name}]`;
    // A package's native piece is loaded from inside that package only; the
    // real path is checked again when it is opened (it may not be built yet).
    if (from) assertInsidePackage(plugin.name, from.packageDir, "native library", plugin.nativeLibrary);
    if (this.plugins.has(plugin.name)) {
      throw new BpfhookError("PLUGIN_INVALID", `${tag} a plugin with this name is already registered`, {
        plugin: plugin.name,
      });
    }
    if (plugin.abiVersion !== PLUGIN_ABI_VERSION) {
      throw new BpfhookError(
        "ABI_MISMATCH",
        `${tag} built for plugin ABI ${plugin.abiVersion}, this core speaks ABI ${PLUGIN_ABI_VERSION}; rebuild the plugin against this @bpfhook/sdk`,
        { plugin: plugin.name },
      );
    }
    const seenHere = new Set<string>();
    for (const type of plugin.attachTypes) {
      const clash =
        this.typesById.get(type.id) ??
        this.typesByName.get(type.name) ??
        type.sectionPrefixes.map((p) => this.prefixes.get(p)).find((x) => x !== undefined);
      if (clash) {
        throw new BpfhookError(
          "DUPLICATE_ATTACH_TYPE",
          `${tag} attach type ${type.id} '${type.name}' (prefixes ${type.sectionPrefixes.join(", ")}) clashes with ` +
            `${clash.type.id} '${clash.type.name}' of plugin '${clash.plugin.name}'`,
          { plugin: plugin.name },
        );
      }
      if ((type.sharedPrefixes ?? []).length > 0 && typeof plugin.claimsSection !== "function") {
        throw new BpfhookError("PLUGIN_INVALID", `${tag} attach type '${type.name}' shares prefixes (${type.sharedPrefixes!.join(", ")}) but the plugin has no claimsSection`, {
          plugin: plugin.name,
        });
      }
      const own = [...type.sectionPrefixes, ...(type.sharedPrefixes ?? [])].map((p) => `prefix:${p}`);
      for (const key of [`id:${type.id}`, `name:${type.name}`, ...own]) {
        if (seenHere.has(key)) {
          throw new BpfhookError("DUPLICATE_ATTACH_TYPE", `${tag} declares ${key} twice`, { plugin: plugin.name });
        }
        seenHere.add(key);
      }
    }
    this.plugins.set(plugin.name, plugin);
    if (from) {
      this.origins.set(plugin.name, from);
      this.byPackageDir.set(from.packageDir, plugin);
      this.byPackageName.set(from.packageName, plugin);
    }
    container.register(AttachPluginToken, { useValue: plugin });
    for (const type of plugin.attachTypes) {
      const entry = { plugin, type };
      this.typesById.set(type.id, entry);
      this.typesByName.set(type.name, entry);
      for (const p of type.sectionPrefixes) this.prefixes.set(p, entry);
      for (const p of type.sharedPrefixes ?? []) this.shared.set(p, [...(this.shared.get(p) ?? []), entry]);
    }
    this.claims.clear();
    return plugin;
  }

  /**
   * Loads and registers a plugin package by npm name. The same package
   * (the same directory, however it was named or reached) is one plugin:
   * naming it again returns the plugin registered the first time.
   */
  registerPackage(name: string, fromDir: string, container: DependencyContainer): AttachPlugin {
    let found;
    try {
      found = this.loader.load(name, fromDir);
    } catch (err) {
      // Named again where it cannot be resolved (a config in /tmp naming a
      // plugin the CLI registered next to core): the package is registered.
      const known = err instanceof BpfhookError && err.code === "PLUGIN_NOT_FOUND" ? this.byPackageName.get(name) : undefined;
      if (known) return known;
      throw err;
    }
    const already = this.byPackageDir.get(found.packageDir);
    if (already) return already;
    return this.register(found.exported, container, `package ${name}`, {
      packageName: found.packageName,
      packageDir: found.packageDir,
    });
  }

  /** Loads and registers the plugin package in directory `dir` (given by the user, as `--plugin DIR`). */
  registerDirectory(dir: string, container: DependencyContainer): AttachPlugin {
    if (!this.loader.loadDirectory) {
      throw new BpfhookError("BAD_ARGUMENT", `plugin directory ${dir}: this runtime's plugin loader cannot load directories`);
    }
    const found = this.loader.loadDirectory(dir);
    const already = this.byPackageDir.get(found.packageDir);
    if (already) return already;
    return this.register(found.exported, container, `package ${found.packageName} (${dir})`, {
      packageName: found.packageName,
      packageDir: found.packageDir,
    });
  }

  /** Loads every plugin package a project's package.json depends on, resolved from its directory. */
  registerFromPackageJson(packageJsonPath: string, container: DependencyContainer): AttachPlugin[] {
    const dir = packageJsonPath.replace(/[/\\]package\.json$/, "");
    return this.loader.fromPackageJson(packageJsonPath).map((name) => this.registerPackage(name, dir, container));
  }

  /** The package a plugin came from (undefined for plugins given as objects or classes in code). */
  origin(pluginName: string): PluginOrigin | undefined {
    return this.origins.get(pluginName);
  }

  list(): AttachPlugin[] {
    return [...this.plugins.values()];
  }

  get(name: string): AttachPlugin | undefined {
    return this.plugins.get(name);
  }

  /** The plugin and type for an id or a name ("uprobe", 6). */
  type(idOrName: number | string): ResolvedType {
    const found = typeof idOrName === "number" ? this.typesById.get(idOrName) : this.typesByName.get(idOrName);
    if (!found) {
      const known = [...this.typesByName.values()].map((t) => `${t.type.name} (${t.type.id})`).join(", ") || "none";
      throw new BpfhookError(
        "NOT_FOUND",
        `no plugin serves attach type ${JSON.stringify(idOrName)}; registered types: ${known}`,
      );
    }
    return found;
  }

  /**
   * The process sections are matched for (the runtime's attach target;
   * undefined: this process): plugins' claimsSection answers depend on it.
   */
  setTarget(target: AttachTarget | undefined): void {
    this.target = target;
    this.claims.clear();
  }

  /**
   * The plugin for a section name: the longest registered prefix that matches
   * whole path components ("uprobe" matches "uprobe/x" and "uprobe", never
   * "uprobex/..."). A shared prefix (AttachTypeSpec.sharedPrefixes) at least
   * as long goes first to a type whose plugin claims the section, then to
   * the prefix's owner, and with no owner to the first type sharing it.
   * Undefined when none does.
   */
  matchSection(section: string): SectionMatch | undefined {
    const hit = (prefix: string) => section === prefix || section.startsWith(`${prefix}/`);
    let best: { prefix: string; entry: ResolvedType } | undefined;
    for (const [prefix, entry] of this.prefixes) {
      if (hit(prefix) && (!best || prefix.length > best.prefix.length)) best = { prefix, entry };
    }
    const shared = [...this.shared.keys()].filter((p) => hit(p) && p.length >= (best?.prefix.length ?? 0)).sort((a, b) => b.length - a.length);
    for (const prefix of shared) {
      const rest = section.slice(prefix.length + 1);
      for (const entry of this.shared.get(prefix)!) {
        if (this.claimed(entry, rest, section)) return { ...entry, rest };
      }
    }
    if (best) return { ...best.entry, rest: section.slice(best.prefix.length + 1) };
    const fallback = shared[0];
    return fallback === undefined ? undefined : { ...this.shared.get(fallback)![0]!, rest: section.slice(fallback.length + 1) };
  }

  private claimed(entry: ResolvedType, rest: string, section: string): boolean {
    const key = `${entry.plugin.name}\0${entry.type.id}\0${section}`;
    let yes = this.claims.get(key);
    if (yes === undefined) {
      yes = callPluginSync(entry.plugin.name, "claimsSection", () => entry.plugin.claimsSection!(entry.type, rest, section, this.target)) === true;
      this.claims.set(key, yes);
    }
    return yes;
  }

  /** Validates raw private data with the plugin's schema; errors list every issue. */
  validate<P>(plugin: AttachPlugin<P>, type: AttachTypeSpec, raw: unknown, where: string): P {
    const result = plugin.privateDataSchema.safeParse(raw);
    if (!result.success) {
      const issues = result.error.issues.map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`).join("; ");
      throw new BpfhookError("SCHEMA_INVALID", `[${plugin.name}] ${type.name} ${where}: invalid private data: ${issues}`, {
        plugin: plugin.name,
      });
    }
    return result.data;
  }
}
