/**
 * The embedding API. A Runtime owns one DI child container, one plugin
 * registry, one native runtime (programs, plugin libraries, links) and the
 * objects loaded into it. Closing it detaches everything.
 *
 *   const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"] });
 *   const obj = rt.load("counter.bpf.o");
 *   await obj.program("on_event").attach();
 *   console.log(obj.map("counts").get(0));
 *   obj.close();   // unload: its maps are freed in the shared region
 *   rt.close();
 */
import "reflect-metadata";
import { existsSync, realpathSync } from "node:fs";
import path from "node:path";
import { container as rootContainer } from "tsyringe";
import { z } from "zod";
import type { DependencyContainer } from "tsyringe";
import type { AttachPlugin, AttachProgramInfo, AttachTarget, AttachTypeSpec, NativeCaller, PluginExport, PluginHost } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";
import { native } from "../native/binding.js";
import type { NativeRuntime } from "../native/addon-types.js";
import { callPlugin, callPluginSync } from "../plugins/call-plugin.js";
import { assertInsidePackage, NodePluginLoader } from "../plugins/discovery.js";
import { PluginRegistry } from "../plugins/registry.js";
import { PluginLoaderToken, PluginRegistryToken, RuntimeToken, VerifierToken } from "../plugins/tokens.js";
import { verifyProgram } from "../verifier/verify.js";
import type { VerifierMode } from "../verifier/types.js";
import {
  contextOfAttach,
  contextOfSection,
  ProgramVerification,
  resolveVerifierMode,
  UNKNOWN_CONTEXT,
  VERIFIER_MODES,
  verifierHelpers,
  verifierMaps,
  type VerifyFunction,
} from "./verification.js";
import { parseCookie } from "./cookie.js";
import { Link } from "./link.js";
import { helperCalls, Program } from "./program.js";
import { LoadedObject, type LoadOptions, type LoadSource, type ProgramLoadInfo } from "./loaded-object.js";
import { ProgArray } from "./prog-array.js";
import { cleanStaleRegions, SharedRegion } from "../maps/index.js";
import { AgentBackend } from "../agent/backend.js";
import { regionsWithLiveAgents } from "../agent/discover.js";
import type { NativeAgentAreaOptions } from "../native/addon-types.js";
// A cycle (apply.ts calls Runtime.create), harmless: each side uses the other only when called.
import { fromConfigFile, type ConfigOverrides, type ConfiguredRuntime } from "../config/apply.js";
import type { LoadedConfig } from "../config/load.js";

export interface RuntimeOptions {
  /** Plugins: npm package names (resolved from `resolveFrom`) or plugin objects / classes. */
  plugins?: readonly (string | PluginExport)[];
  /** Also load every plugin package this package.json depends on (resolved from its directory). */
  packageJson?: string;
  /**
   * Where package names are resolved from. Default: the directory of the
   * application's entry module (`require.main`, else `process.argv[1]`), else
   * the directory @bpfhook/core is installed in. Never the working directory:
   * a package planted there, or in one of its parents, must not run.
   */
  resolveFrom?: string;
  /**
   * What proves programs safe (docs/SECURITY.md). "strict" (default): the
   * verifier must prove each program safe at load, against the context of
   * the attach type its section selects (again at attach when the chosen
   * type's context differs), and it then runs with no run-time checks;
   * a refusal fails the load with VERIFIER_REFUSED. "checked": no
   * verification, every program runs in the VM's checked mode. "off":
   * trusted input, neither.
   */
  verifier?: VerifierMode;
  /**
   * Checked mode for every program: bad memory accesses fault instead of
   * crashing. Alone, the same as `verifier: "checked"`; with `verifier`
   * given, run-time checks on top of that mode.
   */
  checked?: boolean;
  /** Instruction budget per program run (0: none). */
  budget?: number;
  /** "jit" (default) or "interpreter". */
  backend?: "jit" | "interpreter";
  /** The shared region that holds the maps of loaded objects. */
  region?: RuntimeRegionOptions;
  /** @deprecated Use `region: { size }`. */
  regionSize?: number;
  /** Parent DI container (default: tsyringe's root); the runtime makes a child. */
  container?: DependencyContainer;
  /**
   * @internal What agent mode sets: the process the attachments will live
   * in, handed to plugins' prepare() as `PluginHost.target`. `moduleRelative`
   * asks plugins to encode nothing process-local (module + link-time address
   * instead of an absolute address), for an attach made in another process
   * or a later image. Default: this process, absolute forms.
   */
  target?: RuntimeTarget;
}

/** RuntimeOptions.target. */
export interface RuntimeTarget {
  pid: number;
  moduleRelative?: boolean;
}

export interface RuntimeRegionOptions {
  /** Bytes (rounded up to a page; pages are allocated as touched). Default 64 MiB. */
  size?: number;
  /** Directory capacity: maps that may exist at once (1..65536). Default 256. */
  maxMaps?: number;
  /**
   * Remove regions left in /dev/shm by dead processes of this user at
   * Runtime.create (cleanStaleRegions). Default true.
   */
  cleanStale?: boolean;
}

/** 4 KiB header + the directory (256 bytes a map) + at least one page of data. */
const regionOptionsSchema = z
  .object({
    size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    maxMaps: z.number().int().min(1).max(65536).optional(),
    cleanStale: z.boolean().optional(),
  })
  .strict()
  .refine(
    (r) => r.size === undefined || r.size >= 4096 + Math.ceil(((r.maxMaps ?? 256) * 256) / 4096) * 4096 + 4096,
    { message: "size is too small for the header, the directory of maxMaps entries and one page of data" },
  );

export interface AttachOptions {
  /** Attach type by name ("uprobe") or id (6); default: chosen by the program's section. */
  type?: string | number;
  /**
   * A config entry for the plugin (`{ module, symbol }`, `{ source }` ...),
   * turned into private data by its parseConfig and validated by its schema
   * (default: parsed from the section).
   */
  data?: Record<string, unknown>;
  /** Value of bpf_get_attach_cookie() in the program: a u64 as a number, bigint or decimal string. */
  cookie?: bigint | number | string;
  /**
   * Attach even though the program's section states another context than
   * the chosen type's (a `tracepoint/...` program attached as a uprobe).
   */
  force?: boolean;
}

/** An open Runtime.batch(): the plugins that began theirs, the links attached. */
interface BatchState {
  depth: number;
  plugins: AttachPlugin[];
  links: Link[];
  ended: boolean;
}

export class Runtime implements NativeCaller {
  readonly registry: PluginRegistry;
  readonly container: DependencyContainer;
  private readonly nativeRt: NativeRuntime;
  private readonly pluginIndex = new Map<string, number>();
  private readonly links = new Set<Link>();
  private readonly objects: LoadedObject[] = [];
  private readonly linkPrograms = new Map<Link, Program>();
  private region: SharedRegion | undefined;
  /** Agent mode: programs and attachments go to the region's agent area. */
  private agent: AgentBackend | undefined;
  private closed = false;
  /** The open batch (Runtime.batch), nested calls share it. */
  private batchState: BatchState | undefined;
  /** RuntimeOptions.target as plugins see it; undefined: this process, absolute. */
  private target: AttachTarget | undefined;
  /** The verifier mode, and whether the VM runs checked (RuntimeOptions.verifier/.checked). */
  readonly verifierMode: VerifierMode;
  private readonly checkedVm: boolean;
  /** The verifier strict mode runs (VerifierToken, else verifyProgram). */
  private readonly verify: VerifyFunction;

  private constructor(readonly options: Readonly<RuntimeOptions>) {
    this.container = (options.container ?? rootContainer).createChildContainer();
    if (!this.container.isRegistered(PluginLoaderToken, true)) {
      this.container.register(PluginLoaderToken, { useClass: NodePluginLoader });
    }
    this.container.registerInstance(RuntimeToken, this);
    this.container.registerSingleton(PluginRegistryToken, PluginRegistry);
    this.registry = this.container.resolve<PluginRegistry>(PluginRegistryToken);
    ({ mode: this.verifierMode, checkedVm: this.checkedVm } = resolveVerifierMode(options.verifier, options.checked));
    this.verify = this.container.isRegistered(VerifierToken, true)
      ? this.container.resolve<VerifyFunction>(VerifierToken)
      : verifyProgram;
    this.nativeRt = new (native().NativeRuntime)();
    const t = options.target;
    this.target = t ? Object.freeze({ pid: t.pid, moduleRelative: t.moduleRelative ?? false }) : undefined;
    this.registry.setTarget(this.target);
  }

  /** Creates a runtime and registers its plugins; nothing native is attached yet. */
  static async create(options: RuntimeOptions = {}): Promise<Runtime> {
    checkOptions(options);
    if (options.region?.cleanStale !== false) {
      // Best effort: a region of a killed process is only wasted memory, and
      // an unreadable /dev/shm must not stop a runtime from starting.
      try {
        cleanStaleRegions({ keep: regionsWithLiveAgents() });
      } catch {
        // reported by `bpfhook clean`
      }
    }
    const rt = new Runtime(options);
    try {
      const from = options.resolveFrom ?? defaultResolveDir();
      for (const p of options.plugins ?? []) {
        if (typeof p === "string") rt.registry.registerPackage(p, from, rt.container);
        else rt.registry.register(p, rt.container);
      }
      if (options.packageJson) rt.registry.registerFromPackageJson(path.resolve(options.packageJson), rt.container);
    } catch (err) {
      rt.close();
      throw err;
    }
    return rt;
  }

  /**
   * A runtime made from a config file (docs/CONFIG.md): its plugins
   * (resolved from the file's directory), region and objects, the `.rodata`
   * constants and map sizes set, every program attached (by section or as
   * the file says). All or nothing: on a failure everything is detached and
   * closed, and the error names file:line:column and the field.
   * `overrides` win over the file's options (plugins given in code join).
   */
  static fromConfigFile(file: string | LoadedConfig, overrides?: ConfigOverrides): Promise<ConfiguredRuntime> {
    return fromConfigFile(file, overrides);
  }

  /** Registers one more plugin (object, class or package name). */
  use(plugin: string | PluginExport): AttachPlugin {
    this.assertOpen();
    return typeof plugin === "string"
      ? this.registry.registerPackage(plugin, this.options.resolveFrom ?? defaultResolveDir(), this.container)
      : this.registry.register(plugin, this.container);
  }

  /**
   * Loads an object: a clang-built ELF (path or bytes) or raw instructions
   * with maps given in code. Creates its maps, then loads and compiles every
   * program; on any failure nothing of it stays loaded.
   */
  load(source: LoadSource, options?: LoadOptions): LoadedObject {
    this.assertOpen();
    const modes = {
      checked: this.checkedVm,
      budget: this.options.budget ?? 0,
      interpreter: this.options.backend === "interpreter",
    };
    const obj = LoadedObject.create(
      this,
      this.sharedRegion(),
      source,
      (insns, name, maps, info) => {
        // Verified before anything native, in agent mode too (the agent runs
        // exactly these instructions, in fast mode).
        const verification = this.verifyAtLoad(insns, name, info);
        this.openHelperProviders(insns);
        // Loaded here in agent mode too: a bad program fails now, with the
        // same message; the agent loads the same instructions and maps.
        const program = this.nativeRt.loadProgram({
          name,
          insns,
          maps,
          // Checked mode admits map values: they live in this region.
          region: this.sharedRegion().native,
          ...modes,
        });
        this.agent?.addProgram(program, name, insns, maps, modes);
        return verification === undefined ? { native: program } : { native: program, verification };
      },
      // Program arrays hold this runtime's programs: the native runtime owns
      // them (and in agent mode the area mirrors their slots as program ids).
      (name, maxEntries) => {
        const local = this.nativeRt.createProgArray(maxEntries);
        const agent = this.agent;
        if (agent === undefined) return new ProgArray(name, local);
        agent.addProgArray(local, maxEntries);
        return new ProgArray(name, local, (slot, program) => agent.setSlot(local, slot, program?.native));
      },
      (o) => this.unload(o),
      options,
    );
    this.objects.push(obj);
    return obj;
  }

  /**
   * Strict mode: verifies a program against the context its section selects
   * and throws VERIFIER_REFUSED (LoadedObject prefixes file and section) on
   * a refusal. A section that selects no attach type gives UNKNOWN_CONTEXT;
   * a program refused with it stays loaded but pending (verified at attach
   * or run against the context it then gets).
   */
  private verifyAtLoad(insns: Uint8Array, name: string, info: ProgramLoadInfo): ProgramVerification | undefined {
    if (this.verifierMode !== "strict") return undefined;
    const registry = this.registry;
    const verification = new ProgramVerification(
      name,
      insns,
      verifierMaps(info.mapSpecs),
      // Plugins registered later (rt.use) may declare helpers the program
      // calls: the set is taken at each verification.
      () => verifierHelpers(registry.list()),
      this.verify,
      { file: info.file, objectName: info.objectName, section: info.section },
    );
    const context = contextOfSection(registry, info.section);
    const r = verification.verdict(context);
    if (!r.ok) {
      if (context !== UNKNOWN_CONTEXT) throw new BpfhookError("VERIFIER_REFUSED", r.error.message, { pc: r.error.pc });
      verification.pending = r;
    }
    return verification;
  }

  /** Attaches `program` by its section or by explicit type and private data. */
  async attach(program: Program, options: AttachOptions = {}): Promise<Link> {
    this.assertOpen();
    // Checked first: a bad cookie must not cost a plugin's prepare().
    const cookie = parseCookie(options.cookie, program.name);
    const { plugin, type, raw, where } = this.selectAttachPoint(program, options);
    this.checkProgramFits(program, plugin, type, options.force === true);
    // Strict: proven safe with this type's context (cached per layout; the
    // load verified it with its section's).
    program.verification?.require(contextOfAttach(this.registry, plugin, type, program.section), `attached as ${type.name}`);
    const data = this.registry.validate(plugin, type, raw, where);
    const host: PluginHost = { log: (level, message) => this.log(plugin.name, level, message), target: this.target };
    const info: AttachProgramInfo = {
      name: program.name,
      section: program.section,
      helperIds: program.helperIds,
      ...(program.code ? { code: program.code } : {}),
    };
    const prepared = plugin.prepare
      ? await callPlugin(plugin.name, "prepare", () => plugin.prepare!({ type, data, program: info }, host))
      : data;
    const request = { type, data: prepared, program: info };
    const bytes = callPluginSync(plugin.name, "encode", () => plugin.encode(request));
    const description = plugin.describe
      ? callPluginSync(plugin.name, "describe", () => plugin.describe!(request))
      : `${type.name} ${where}`;
    let id: number;
    if (this.agent) {
      id = await this.attachInAgent(plugin, program, type, bytes, cookie);
    } else {
      const index = this.openNativePlugin(plugin);
      this.joinBatch(plugin);
      id = this.nativeRt.attach(index, program.native, type.id, bytes, cookie);
    }
    const link = new Link(this.agent ?? this.nativeRt, id, program.name, plugin, type, description, (l) => {
      this.links.delete(l);
      this.linkPrograms.delete(l);
    });
    this.links.add(link);
    this.linkPrograms.set(link, program);
    this.batchState?.links.push(link);
    return link;
  }

  /**
   * Runs `fn` as one batch: plugins that batch (`beginBatch`/`endBatch`,
   * frida-uprobe) apply every attach made meanwhile at the end at once
   * (frida-uprobe: all functions patched in one pause of the threads); other
   * plugins attach one by one as usual. Batches nest (the outermost applies);
   * attaches on this runtime from elsewhere while one is open join it.
   * All or nothing: if `fn` throws, or a plugin cannot apply its part, every
   * link attached in the batch is detached and the error is thrown. Links
   * of a batching plugin fire only once the batch has ended.
   */
  async batch<T>(fn: () => T | Promise<T>): Promise<T> {
    this.assertOpen();
    const state = (this.batchState ??= { depth: 0, plugins: [], links: [], ended: false });
    state.depth++;
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      if (--state.depth === 0) this.endBatch(state, err);
      throw err;
    }
    if (--state.depth === 0) this.endBatch(state, undefined);
    return result;
  }

  /** Begins `plugin`'s batch before its first attach inside an open one. */
  private joinBatch(plugin: AttachPlugin): void {
    const state = this.batchState;
    if (!state || !plugin.beginBatch || !plugin.endBatch || state.plugins.includes(plugin)) return;
    callPluginSync(plugin.name, "beginBatch", () => plugin.beginBatch!(this));
    state.plugins.push(plugin);
  }

  /**
   * The outermost end: with `failed` (fn threw) the batch's links are
   * detached first, so the plugins' ends have nothing to apply; a plugin
   * whose end throws has failed its links, which are detached, and then the
   * rest too (all or nothing). Throws the first plugin error when fn did not.
   */
  private endBatch(state: BatchState, failed: unknown): void {
    if (state.ended) return; // close() inside the batch ended it
    state.ended = true;
    if (this.batchState === state) this.batchState = undefined;
    const detachAll = () => {
      for (const link of state.links.reverse()) {
        try {
          link.detach();
        } catch {
          // a failed batch's links are gone already
        }
      }
    };
    if (failed !== undefined) detachAll();
    let error: unknown;
    for (const plugin of state.plugins) {
      try {
        callPluginSync(plugin.name, "endBatch", () => plugin.endBatch!(this));
      } catch (err) {
        error ??= err;
      }
    }
    if (error !== undefined && failed === undefined) {
      detachAll();
      throw error;
    }
  }

  /**
   * @internal Agent mode (AgentSession): from now on programs and
   * attachments go to the agent area of this runtime's region, which is
   * created here; call before anything is loaded.
   */
  enableAgent(opts: NativeAgentAreaOptions = {}): AgentBackend {
    this.assertOpen();
    if (this.agent) return this.agent;
    if (this.objects.length > 0) throw new BpfhookError("BAD_ARGUMENT", "enableAgent: objects are loaded already");
    this.agent = new AgentBackend(this.sharedRegion(), opts);
    return this.agent;
  }

  /**
   * @internal Agent mode: the process attachments will live in, handed to
   * plugins (PluginHost.target) so they resolve there and encode nothing
   * process-local.
   */
  setAttachTarget(target: { pid: number; moduleRelative: boolean }): void {
    this.target = Object.freeze({ ...target });
    this.registry.setTarget(this.target);
  }

  /** The agent backend in agent mode, else undefined. */
  get agentBackend(): AgentBackend | undefined {
    return this.agent;
  }

  /** Records the attachment for the agent; once live, waits for its answer and throws its error. */
  private async attachInAgent(plugin: AttachPlugin, program: Program, type: AttachTypeSpec, bytes: Uint8Array, cookie: bigint): Promise<number> {
    const agent = this.agent!;
    let library = plugin.nativeLibrary;
    const origin = this.registry.origin(plugin.name);
    if (origin) library = assertInsidePackage(plugin.name, origin.packageDir, "native library", library);
    const id = agent.attach(agent.plugin(plugin, library), program.native, type.id, bytes, BigInt.asUintN(64, cookie));
    if (!agent.live) return id;
    const [outcome] = await agent.settle(agent.publish(), [id]);
    if (!outcome!.ok && outcome!.pid !== 0) {
      agent.detach(id);
      throw new BpfhookError(
        "ATTACH_FAILED",
        `[${plugin.name}] prog '${program.name}': in process ${outcome!.pid}: ${outcome!.message || `error ${outcome!.errno}`}`,
        { errno: outcome!.errno, plugin: plugin.name },
      );
    }
    return id;
  }

  /** NativeCaller: a plugin's attach-specific native function by name. */
  callNative(pluginName: string, name: string, input: Uint8Array, outSize: number): { rc: number; out: Buffer } {
    this.assertOpen();
    if (this.agent) {
      throw new BpfhookError(
        "AGENT_ERROR",
        `[${pluginName}] call '${name}': the plugin's native piece runs in the target process (agent mode), not here`,
        { plugin: pluginName },
      );
    }
    const plugin = this.registry.get(pluginName);
    if (!plugin) throw new BpfhookError("PLUGIN_NOT_FOUND", `plugin '${pluginName}' is not registered in this runtime`);
    const result = this.nativeRt.callPlugin(this.openNativePlugin(plugin), name, input, outSize);
    if (result.rc < 0) {
      // A program the call ran faulted (instruction budget, bounds, a helper
      // argument): say so, with the VM's message.
      if (result.fault !== undefined) {
        throw new BpfhookError(
          "VM_FAULT",
          `[${pluginName}] call '${name}' failed (${result.rc}): ${result.fault}`,
          { errno: result.rc, plugin: pluginName },
        );
      }
      throw new BpfhookError("ATTACH_FAILED", `[${pluginName}] call '${name}' failed (${result.rc})`, {
        errno: result.rc,
        plugin: pluginName,
      });
    }
    return result;
  }

  /**
   * The shared-memory region that holds this runtime's maps (created on the
   * first load; another process can open it by name, see SharedRegion.open).
   */
  sharedRegion(): SharedRegion {
    this.assertOpen();
    if (this.region === undefined) {
      const size = this.options.region?.size ?? this.options.regionSize;
      const maxMaps = this.options.region?.maxMaps;
      this.region = SharedRegion.create({
        ...(size === undefined ? {} : { size }),
        ...(maxMaps === undefined ? {} : { maxMaps }),
      });
    }
    return this.region;
  }

  /** Objects loaded and not yet unloaded. */
  get loadedObjects(): readonly LoadedObject[] {
    return [...this.objects];
  }

  /**
   * Unloads `obj` (what obj.close() does): detaches the links of its
   * programs, takes its programs out of every program array, releases the
   * programs, then closes its maps, which frees them in the region (their
   * entries and storage are reused by later loads). Idempotent.
   */
  unload(obj: LoadedObject): void {
    if (!this.objects.includes(obj)) return;
    const programs = new Set(obj.programs);
    // Programs first: nothing may run code that references the maps once
    // they are freed. Detach is synchronous (plugins wait for runs in flight);
    // if one fails, the object stays loaded and its maps stay allocated.
    // (detach() deletes the link from linkPrograms; a Map allows that while iterating.)
    for (const [link, program] of this.linkPrograms) {
      if (programs.has(program)) link.detach();
    }
    this.objects.splice(this.objects.indexOf(obj), 1);
    for (const other of [...this.objects, obj]) {
      for (const m of other.maps) {
        if (m.map instanceof ProgArray && !m.map.closed) m.map.dropPrograms(programs);
      }
    }
    obj.dispose();
  }

  /** Links still attached. */
  get attachments(): readonly Link[] {
    return [...this.links];
  }

  /** Detaches every link, frees programs and maps. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    // Inside a batch: its links go and the plugins' batches end (an engine
    // transaction left open would hold back every later attach).
    if (this.batchState) this.endBatch(this.batchState, new Error("runtime closed"));
    this.closed = true;
    for (const link of [...this.links].reverse()) {
      try {
        link.detach();
      } catch {
        // close() must finish: the native runtime's destroy detaches leftovers.
      }
    }
    this.linkPrograms.clear();
    this.agent?.close();
    this.nativeRt.close();
    for (const obj of this.objects) obj.dispose();
    this.objects.length = 0;
    this.region?.close();
    this.container.clearInstances();
  }

  private selectAttachPoint(program: Program, options: AttachOptions) {
    if (options.type !== undefined) {
      const { plugin, type } = this.registry.type(options.type);
      const where = `for prog '${program.name}'`;
      const raw = options.data !== undefined ? this.fromConfig(plugin, type, options.data) : this.fromSection(plugin, type, program);
      return { plugin, type, raw, where };
    }
    const match = this.registry.matchSection(program.section);
    if (!match) {
      const prefixes = this.registry
        .list()
        .flatMap((p) => p.attachTypes.flatMap((t) => [...t.sectionPrefixes, ...(t.sharedPrefixes ?? [])]))
        .join(", ");
      throw new BpfhookError(
        "NOT_FOUND",
        `prog '${program.name}': section '${program.section}' is served by no registered plugin ` +
          `(known prefixes: ${prefixes || "none"}); pass { type } or register the plugin`,
        { section: program.section },
      );
    }
    const raw =
      options.data !== undefined
        ? this.fromConfig(match.plugin, match.type, options.data)
        : callPluginSync(match.plugin.name, "parseSection", () =>
            match.plugin.parseSection(match.type, match.rest, program.section),
          );
    return { plugin: match.plugin, type: match.type, raw, where: `section '${program.section}'` };
  }

  /**
   * Before anything native: the program calls no helper its type refuses
   * (bpf_override_return in a plain uprobe would be silently ignored), and
   * its section states no other context than the type's, unless forced.
   */
  private checkProgramFits(program: Program, plugin: AttachPlugin, type: AttachTypeSpec, force: boolean): void {
    for (const r of type.refusedHelpers ?? []) {
      if (program.helperIds.includes(r.id)) {
        throw new BpfhookError(
          "BAD_ARGUMENT",
          `prog '${program.name}' calls ${r.name} (helper ${r.id}), which ${type.name} can't honour: ${r.reason}`,
          { section: program.section, plugin: plugin.name },
        );
      }
    }
    if (force || program.section === "") return;
    // A section the registry gives to this very type states its context
    // (bpftime's `kprobe/<CUDA kernel>` is nv-cuda's cuda_probe, not libbpf's kprobe).
    if (this.registry.matchSection(program.section)?.type === type) return;
    const stated = this.sectionContext(program.section);
    const wanted = typeContext(type);
    if (stated !== undefined && stated.context !== wanted) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `prog '${program.name}': section '${program.section}' states a ${stated.context} context (${stated.kind}), ` +
          `but attach type '${type.name}' gives it ${wanted}; pass { force: true } to attach it anyway`,
        { section: program.section, plugin: plugin.name },
      );
    }
  }

  /** The context a section's kind states: libbpf's names, else a registered type's. */
  private sectionContext(section: string): { kind: string; context: string } | undefined {
    const kind = section.split("/")[0] ?? section;
    const known = SECTION_CONTEXTS.get(kind);
    if (known) return { kind, context: known };
    const match = this.registry.matchSection(section);
    return match ? { kind: match.type.name, context: typeContext(match.type) } : undefined;
  }

  /** Explicit data is a config entry: the plugin's parseConfig (if any) turns it into private data. */
  private fromConfig(plugin: AttachPlugin, type: AttachTypeSpec, entry: Record<string, unknown>): unknown {
    if (!plugin.parseConfig) return entry;
    return callPluginSync(plugin.name, "parseConfig", () => plugin.parseConfig!(type, entry));
  }

  private fromSection(plugin: AttachPlugin, type: AttachTypeSpec, program: Program): unknown {
    const match = this.registry.matchSection(program.section);
    if (match && match.plugin === plugin && match.type === type) {
      return callPluginSync(plugin.name, "parseSection", () => plugin.parseSection(type, match.rest, program.section));
    }
    throw new BpfhookError(
      "BAD_ARGUMENT",
      `prog '${program.name}': attach type '${type.name}' given without data, and section '${program.section}' does not describe it`,
    );
  }

  /**
   * A plugin's custom helpers exist natively once its library is open (its
   * register_helpers runs then): open the registered plugins that declare a
   * helper these instructions call, before they are loaded (nv-cuda's GPU
   * helpers, which a program loads with before its attach).
   */
  private openHelperProviders(insns: Uint8Array): void {
    const ids = helperCalls(insns);
    if (ids.length === 0) return;
    for (const plugin of this.registry.list()) {
      if (this.pluginIndex.has(plugin.name) || !plugin.helpers?.some((h) => ids.includes(h.id))) continue;
      this.openNativePlugin(plugin);
    }
  }

  private openNativePlugin(plugin: AttachPlugin): number {
    let index = this.pluginIndex.get(plugin.name);
    if (index === undefined) {
      let library = plugin.nativeLibrary;
      const origin = this.registry.origin(plugin.name);
      // Checked again here, symlinks resolved, against what is on disk now.
      if (origin) library = assertInsidePackage(plugin.name, origin.packageDir, "native library", library);
      index = this.nativeRt.openPlugin(library, plugin.name, plugin.nativeGlobalSymbols !== undefined);
      this.pluginIndex.set(plugin.name, index);
    }
    return index;
  }

  private log(plugin: string, level: string, message: string): void {
    if (level === "debug" && !process.env.BPFHOOK_DEBUG) return;
    process.stderr.write(`bpfhook ${level}: [${plugin}] ${message}\n`);
  }

  private assertOpen(): void {
    if (this.closed) throw new BpfhookError("BAD_ARGUMENT", "runtime is closed");
  }
}

/**
 * Where plugin package names are resolved from by default: the embedding
 * application's entry module's directory, else (REPL, `node -e`) the
 * directory @bpfhook/core is installed in, whose node_modules hold the
 * plugins installed beside it. Not process.cwd(): see RuntimeOptions.resolveFrom.
 */
export function defaultResolveDir(): string {
  const entry = require.main?.filename ?? process.argv[1];
  if (entry && path.isAbsolute(entry) && existsSync(entry)) return path.dirname(realpathSync(entry));
  return path.resolve(__dirname, "..", "..");
}

function checkOptions(o: RuntimeOptions): void {
  if (o.region !== undefined) {
    const r = regionOptionsSchema.safeParse(o.region);
    if (!r.success) {
      const issues = r.error.issues.map((i) => `${i.path.length ? `region.${i.path.join(".")}` : "region"}: ${i.message}`);
      throw new BpfhookError("BAD_ARGUMENT", `option ${issues.join("; ")}`);
    }
  }
  if (o.regionSize !== undefined && (!Number.isSafeInteger(o.regionSize) || o.regionSize <= 0)) {
    throw new BpfhookError("BAD_ARGUMENT", `option 'regionSize' must be a positive integer, got ${o.regionSize}`);
  }
  if (o.backend !== undefined && o.backend !== "jit" && o.backend !== "interpreter") {
    throw new BpfhookError("BAD_ARGUMENT", `option 'backend' must be "jit" or "interpreter", got ${JSON.stringify(o.backend)}`);
  }
  if (o.verifier !== undefined && !VERIFIER_MODES.includes(o.verifier)) {
    throw new BpfhookError("BAD_ARGUMENT", `option 'verifier' must be "strict", "checked" or "off", got ${JSON.stringify(o.verifier)}`);
  }
  if (o.checked !== undefined && typeof o.checked !== "boolean") {
    throw new BpfhookError("BAD_ARGUMENT", `option 'checked' must be a boolean, got ${JSON.stringify(o.checked)}`);
  }
  if (o.budget !== undefined && (!Number.isSafeInteger(o.budget) || o.budget < 0)) {
    throw new BpfhookError("BAD_ARGUMENT", `option 'budget' must be a non-negative integer, got ${o.budget}`);
  }
  if (o.target !== undefined) {
    const t = o.target as Partial<RuntimeTarget> | null;
    if (t === null || typeof t !== "object" || !Number.isSafeInteger(t.pid) || (t.pid as number) <= 0) {
      throw new BpfhookError("BAD_ARGUMENT", `option 'target.pid' must be a positive integer, got ${JSON.stringify(t?.pid)}`);
    }
    if (t.moduleRelative !== undefined && typeof t.moduleRelative !== "boolean") {
      throw new BpfhookError("BAD_ARGUMENT", "option 'target.moduleRelative' must be a boolean");
    }
  }
  if (o.plugins !== undefined && !Array.isArray(o.plugins)) {
    throw new BpfhookError("BAD_ARGUMENT", "option 'plugins' must be an array of package names or plugin objects");
  }
}

/**
 * Contexts that libbpf's section names state (libbpf's section_defs): a
 * program written for one reads its context with that layout.
 */
const SECTION_CONTEXTS: ReadonlyMap<string, string> = new Map(
  [
    ["pt_regs", ["kprobe", "kretprobe", "uprobe", "uretprobe", "uprobe.s", "uretprobe.s", "kprobe.multi", "kretprobe.multi",
      "uprobe.multi", "uretprobe.multi", "ksyscall", "kretsyscall", "usdt", "usdt.s", "uprobe.override", "uoverride", "ureplace"]],
    ["tracepoint record", ["tracepoint", "tp"]],
    ["raw tracepoint", ["raw_tracepoint", "raw_tp", "raw_tracepoint.w", "raw_tp.w"]],
    ["BTF function arguments", ["tp_btf", "fentry", "fexit", "fmod_ret", "fentry.s", "fexit.s", "fmod_ret.s", "lsm", "lsm.s", "iter", "iter.s"]],
    ["xdp_md", ["xdp", "xdp.frags"]],
    ["__sk_buff", ["tc", "tcx", "classifier", "action", "socket", "sk_skb"]],
    ["perf event", ["perf_event"]],
  ].flatMap(([context, kinds]) => (kinds as string[]).map((k) => [k, context as string] as const)),
);

/** The context a type gives its programs: declared, else known from its prefixes, else its own name. */
function typeContext(type: AttachTypeSpec): string {
  if (type.context) return type.context;
  for (const p of type.sectionPrefixes) {
    const known = SECTION_CONTEXTS.get(p);
    if (known) return known;
  }
  return `${type.name} context`;
}
