/**
 * Runtime.fromConfigFile: a runtime made from a config file, its objects
 * loaded and every program attached, all or nothing. Checks that need the
 * registry and the objects (attach types, the plugins' private data,
 * program names) run for every program before anything is attached; the
 * attaches then run as one Runtime.batch, and any failure closes the
 * runtime (every link detached, every object unloaded) before the error,
 * which names file:line:column and the field, is thrown.
 */
import path from "node:path";
import { BpfhookError } from "../errors.js";
import { callPluginSync } from "../plugins/call-plugin.js";
import type { Link } from "../runtime/link.js";
import type { LoadedObject } from "../runtime/loaded-object.js";
import type { AttachOptions, RuntimeOptions } from "../runtime/runtime.js";
import { Runtime } from "../runtime/runtime.js";
import { loadConfigFile, type ConfigPath, type LoadedConfig } from "./load.js";

/** Options that win over the file's (and extra plugins given in code). */
export type ConfigOverrides = Omit<RuntimeOptions, "packageJson" | "resolveFrom" | "regionSize">;

export interface ConfiguredRuntime {
  readonly runtime: Runtime;
  readonly config: LoadedConfig;
  /** Loaded objects by their config name (`name`, else the file name without .bpf.o / .o). */
  readonly objects: ReadonlyMap<string, LoadedObject>;
  /** The links attached, in config order. */
  readonly links: readonly Link[];
  /** Closes the runtime: detaches everything, unloads the objects. */
  close(): void;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * A config's cookie (a safe integer, or a decimal or "0x" string: the schema
 * checked the forms, docs/CONFIG.md) as the u64 the attach takes; one past
 * 2^64-1 is refused here, naming the field, not at attach.
 */
function configCookie(cfg: LoadedConfig, at: ConfigPath, value: number | string): bigint {
  const n = BigInt(value);
  if (n > U64_MAX) throw cfg.error(at, `${value} does not fit in a u64 (at most 0x${U64_MAX.toString(16)})`);
  return n;
}

/** The name an object is found by: `name`, else its file name less .bpf.o / .o. */
export function objectName(entry: { path: string; name?: string | undefined }): string {
  return entry.name ?? path.basename(entry.path).replace(/(\.bpf)?\.o$/, "");
}

/** The Runtime options a config file gives (its verifier/checked/budget/backend/region), with `overrides` winning. */
export function runtimeOptionsFromConfig(cfg: LoadedConfig, overrides: ConfigOverrides = {}): RuntimeOptions {
  const c = cfg.config;
  const region = c.region || overrides.region ? { ...c.region, ...overrides.region } : undefined;
  return {
    ...(c.verifier === undefined ? {} : { verifier: c.verifier }),
    ...(c.checked === undefined ? {} : { checked: c.checked }),
    ...(c.budget === undefined ? {} : { budget: c.budget }),
    ...(c.backend === undefined ? {} : { backend: c.backend }),
    ...overrides,
    ...(region === undefined ? {} : { region }),
    plugins: overrides.plugins ?? [],
    // Plugins named in a config come from the config's project (docs/PLUGINS.md).
    resolveFrom: cfg.dir,
  };
}

/** Runtime.create with a config's options; an option error names the config's field. */
export async function createRuntimeForConfig(cfg: LoadedConfig, overrides: ConfigOverrides = {}): Promise<Runtime> {
  try {
    return await Runtime.create(runtimeOptionsFromConfig(cfg, overrides));
  } catch (err) {
    const at = message(err).startsWith("option region") ? ["region"] : [];
    throw cfg.error(at, message(err).replace(/^option /, ""), err);
  }
}

export async function fromConfigFile(file: string | LoadedConfig, overrides: ConfigOverrides = {}): Promise<ConfiguredRuntime> {
  const cfg = typeof file === "string" ? loadConfigFile(file) : file;
  const rt = await createRuntimeForConfig(cfg, overrides);
  try {
    return await applyConfig(rt, cfg);
  } catch (err) {
    rt.close();
    throw err;
  }
}

/**
 * Registers a config's plugins in `rt`, loads its objects and attaches
 * their programs as one batch (agent mode: records them for the agent).
 * On failure what it attached is detached; the caller closes `rt`.
 */
export async function applyConfig(rt: Runtime, cfg: LoadedConfig): Promise<ConfiguredRuntime> {
  const c = cfg.config;
  for (const [i, name] of (c.plugins ?? []).entries()) {
    try {
      rt.use(name);
    } catch (err) {
      throw cfg.error(["plugins", i], message(err), err);
    }
  }

  const objects = new Map<string, LoadedObject>();
  const plan: { at: ConfigPath; listed: boolean; run: () => Promise<Link> }[] = [];
  for (const [i, entry] of c.objects.entries()) {
    const here: ConfigPath = ["objects", i];
    const name = objectName(entry);
    if (objects.has(name)) {
      throw cfg.error(entry.name === undefined ? [...here, "path"] : [...here, "name"], `a second object named '${name}'; give one a 'name'`);
    }
    const obj = loadOne(rt, cfg, here, entry);
    objects.set(name, obj);

    const listed = entry.programs ?? {};
    const programNames = new Set(obj.programs.map((p) => p.name));
    for (const progName of Object.keys(listed)) {
      if (!programNames.has(progName)) {
        throw cfg.error(
          [...here, "programs", progName],
          `${obj.name} has no program '${progName}' (programs: ${[...programNames].join(", ") || "none"})`,
          undefined,
          true,
        );
      }
    }
    for (const program of obj.programs) {
      const p = listed[program.name];
      const at: ConfigPath = p ? [...here, "programs", program.name] : here;
      if (p?.attach === false) continue;
      const options: AttachOptions = {};
      if (p?.cookie !== undefined) options.cookie = configCookie(cfg, [...at, "cookie"], p.cookie);
      if (p?.force !== undefined) options.force = p.force;
      if (p?.attach) {
        const { type, ...data } = p.attach;
        checkExplicit(rt, cfg, [...at, "attach"], type, data);
        options.type = type;
        options.data = data;
      } else if (!rt.registry.matchSection(program.section)) {
        throw cfg.error(
          at,
          `prog '${program.name}': section '${program.section}' is served by no plugin listed in 'plugins'; ` +
            `add the plugin, give the program an 'attach: { type, ... }', or 'attach: false'`,
        );
      }
      plan.push({
        at,
        listed: p !== undefined,
        run: () => program.attach(options),
      });
    }
  }

  const links: Link[] = [];
  await rt.batch(async () => {
    for (const step of plan) {
      try {
        links.push(await step.run());
      } catch (err) {
        throw cfg.error(step.at, message(err), err);
      }
    }
  });
  return { runtime: rt, config: cfg, objects, links, close: () => rt.close() };
}

function loadOne(rt: Runtime, cfg: LoadedConfig, here: ConfigPath, entry: LoadedConfig["config"]["objects"][number]): LoadedObject {
  const file = path.resolve(cfg.dir, entry.path);
  const maxEntries = entry.maps ? Object.fromEntries(Object.entries(entry.maps).map(([k, v]) => [k, v.maxEntries])) : undefined;
  try {
    return rt.load(file, {
      ...(entry.rodata ? { rodata: entry.rodata } : {}),
      ...(maxEntries ? { maxEntries } : {}),
      ...(entry.kconfig ? { kconfig: entry.kconfig } : {}),
    });
  } catch (err) {
    const detail = err instanceof BpfhookError ? err.detail : {};
    let at: ConfigPath = [...here, "path"];
    let key = false;
    const field = detail.field;
    if (field?.startsWith("rodata.")) {
      at = [...here, "rodata", field.slice("rodata.".length)];
      key = /no const volatile variable/.test(message(err));
    } else if (field?.startsWith("maxEntries.")) {
      const map = field.slice("maxEntries.".length);
      at = /no map '/.test(message(err)) ? [...here, "maps", map] : [...here, "maps", map, "maxEntries"];
      key = at.length === here.length + 2;
    } else if (detail.symbol !== undefined && entry.maps?.[detail.symbol] !== undefined) {
      // The map refused its size when created (a ring buffer's must be a power-of-2 multiple of the page).
      at = [...here, "maps", detail.symbol, "maxEntries"];
    }
    throw cfg.error(at, message(err), err, key);
  }
}

/**
 * The attach type exists and the plugin's schema accepts the entry, before
 * anything is attached; a schema issue points at the field it is about.
 */
function checkExplicit(rt: Runtime, cfg: LoadedConfig, at: ConfigPath, type: string | number, data: Record<string, unknown>): void {
  let resolved;
  try {
    resolved = rt.registry.type(type);
  } catch (err) {
    throw cfg.error([...at, "type"], message(err), err);
  }
  const { plugin, type: spec } = resolved;
  let raw: unknown;
  try {
    raw = plugin.parseConfig ? callPluginSync(plugin.name, "parseConfig", () => plugin.parseConfig!(spec, data)) : data;
  } catch (err) {
    throw cfg.error(at, message(err), err);
  }
  const result = plugin.privateDataSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
    let where: ConfigPath = [...at, ...path];
    let key = false;
    if (issue.code === "unrecognized_keys" && issue.keys.length > 0) {
      where = [...where, issue.keys[0]!];
      key = true;
    }
    const all = result.error.issues.map((i) => `${i.path.map(String).join(".") || "(value)"}: ${i.message}`).join("; ");
    throw cfg.error(where, `[${plugin.name}] ${spec.name}: invalid private data: ${all}`, undefined, key);
  }
}
