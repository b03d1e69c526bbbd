/**
 * The plugin contract: the TypeScript counterpart of bpftime's
 * `base_attach_impl` + `attach_private_data`. A plugin is a plain object (or
 * an injectable class producing one) with a name, the attach types it serves,
 * a zod schema for its private data, and the path of its native piece, a
 * shared library implementing include/bpfhook/plugin.h.
 *
 * Flow for one attachment:
 *   section "uprobe/libc.so.6:malloc"  --parseSection-->  private data
 *   config entry {type: "uprobe", ...} --parseConfig--->  private data
 *   private data --schema.parse--> validated --prepare--> resolved (addresses...)
 *   resolved --encode--> bytes for the native piece's attach()
 */
import type { ZodType } from "zod";
import type { ContextLayout, HelperSignature } from "./verifier-types.js";

/**
 * One attach type a plugin serves: its id and name, the ELF section
 * prefixes that select it, and the context its programs get (what the
 * verifier lets them read and write).
 */
export interface AttachTypeSpec {
  /** Numeric id (see AttachTypeId); unique across all loaded plugins. */
  readonly id: number;
  /** Short name used in configs and APIs ("uprobe"); unique too. */
  readonly name: string;
  /**
   * ELF section prefixes that select this type, without the trailing "/"
   * ("uprobe" matches "uprobe/libc.so.6:malloc" and a bare "uprobe").
   */
  readonly sectionPrefixes: readonly string[];
  /**
   * Prefixes this type shares with other plugins' types (nv-cuda's `kprobe`,
   * whose sections name CUDA kernels or kernel functions): a section under
   * one goes to this type when the plugin's `claimsSection` says so, else to
   * the plugin that has the prefix in `sectionPrefixes`; with none, to the
   * first type that shares it (its prepare refuses what it cannot attach).
   * The plugin must implement `claimsSection`.
   */
  readonly sharedPrefixes?: readonly string[];
  /** Size in bytes of the context the program receives, when fixed (pt_regs: 168). */
  readonly contextSize?: number;
  /**
   * Names the program's context ("pt_regs", "tracepoint record" ...). Where a
   * program's section states another one, attaching it as this type is
   * refused unless the attach is forced. Default: known from the section
   * prefixes (libbpf's names), else the type's own name.
   */
  readonly context?: string;
  /**
   * Helpers a program attached as this type must not call, each with why
   * (checked in the program's instructions before anything native runs):
   * the kernel refuses bpf_override_return outside override-capable probes.
   */
  readonly refusedHelpers?: readonly RefusedHelper[];
  /**
   * What the verifier (strict mode, docs/SECURITY.md) lets a program of this
   * type read and write in its context: size, readable and writable byte
   * ranges. Absent: `contextSize` bytes, all readable, none writable; with
   * no `contextSize` either, a program may not touch its context at all.
   * The plugin's native piece must hand every run at least `size` bytes.
   */
  readonly contextLayout?: ContextLayout;
}

export interface RefusedHelper {
  readonly id: number;
  /** Completes "prog 'x' calls <name> (helper <id>): ". */
  readonly reason: string;
  readonly name: string;
}

/** The program being attached, as prepare() and encode() see it. */
export interface AttachProgramInfo {
  readonly name: string;
  readonly section: string;
  /** Ids of the helpers its instructions call, sorted; -1 for a call by register (callx). */
  readonly helperIds: readonly number[];
  /**
   * The linked program and its object's maps, for plugins that compile it
   * for another processor (nv-cuda: to PTX). Absent for raw instructions
   * loaded without an object.
   */
  readonly code?: AttachProgramCode;
}

/** AttachProgramInfo.code: what the loader linked (structurally, core's ProgramSpec and MapSpec). */
export interface AttachProgramCode {
  /** Linked 8-byte instructions, the program's own function first. */
  readonly insns: Uint8Array;
  readonly functions: readonly { readonly name: string; readonly start: number; readonly count: number }[];
  /** The object's maps, by map index (lddw src 1/2/5/6 imm). */
  readonly maps: readonly { readonly name: string; readonly type: number; readonly keySize: number; readonly valueSize: number; readonly maxEntries: number }[];
  /**
   * Raw access to one of the object's maps by its name in the object, for
   * plugins whose programs read tables the plugin fills (a USDT plugin:
   * libbpf's `__bpf_usdt_specs`). Keys and values are the bytes programs
   * see. Undefined for a name the object lacks and for program arrays.
   * Absent where the core gives no access (older cores).
   */
  readonly map?: (name: string) => AttachProgramMap | undefined;
}

/** AttachProgramCode.map(): one map of the program's object, as bytes. */
export interface AttachProgramMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** The value's bytes, or undefined when the key has none. Throws a map error otherwise. */
  lookup(key: Uint8Array): Uint8Array | undefined;
  /** Writes (BPF_ANY); throws a map error (full, wrong sizes, ...). */
  update(key: Uint8Array, value: Uint8Array): void;
}

/** A helper a plugin's native piece registers, declared for tools, docs and the verifier. */
export interface HelperDecl {
  readonly id: number;
  readonly name: string;
  readonly description?: string;
  /**
   * How the verifier checks a call to it (argument kinds, return kind, map
   * types ...; `id` and `name` default to the declaration's). Without one, a
   * program that calls it is refused in strict mode: nothing proves the call
   * safe. Declare it as the native prototype (bh_helper_proto) says.
   */
  readonly signature?: HelperSignatureDecl;
}

/** HelperDecl.signature: a HelperSignature whose id and name may come from the declaration. */
export type HelperSignatureDecl = Omit<HelperSignature, "id" | "name"> & { readonly id?: number; readonly name?: string };

export interface AttachRequest<P> {
  /** The attach type chosen (from the section or the config entry). */
  readonly type: AttachTypeSpec;
  /** Private data, already validated by the plugin's schema. */
  readonly data: P;
  /** The program to attach (absent when a tool encodes without one). */
  readonly program?: AttachProgramInfo;
}

/** What the host lends a plugin while it prepares an attachment. */
export interface PluginHost {
  /** Logs with the plugin's name as context. */
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
  /**
   * The process the attachment will live in. Absent: this process, and
   * process-local values (absolute addresses) may be encoded.
   */
  readonly target?: AttachTarget;
}

/** Where an attachment will run (PluginHost.target). */
export interface AttachTarget {
  /** The process whose modules prepare() resolves in. */
  readonly pid: number;
  /**
   * Encode nothing process-local (no absolute address): the attach runs in
   * another process than the one prepare() ran in, or in a later image of it
   * (an agent in a forked child or after exec), so the native piece resolves
   * module-relative forms itself.
   */
  readonly moduleRelative: boolean;
}

/**
 * The plugin contract: what a plugin package's module exports as `plugin`
 * (or `default`). `P` is its private data, as its schema outputs it.
 *
 * The core calls, for one attachment: `parseSection` (or `parseConfig`),
 * then `privateDataSchema` (before anything native; a refusal names the
 * field), then `prepare` and `encode`; the bytes go to the native piece's
 * `attach` (`bh_plugin_ops` in `bpfhook/plugin.h`, whose `name` and ABI
 * must match `name` and `abiVersion` here). Build it with
 * {@link definePlugin}; test it with @bpfhook/testkit's `runContractTests`.
 */
export interface AttachPlugin<P = unknown> {
  /** npm-like name, unique ("frida-uprobe"); messages start with "[name]". */
  readonly name: string;
  readonly version?: string;
  /** The native ABI its shared library implements (PLUGIN_ABI_VERSION). */
  readonly abiVersion: number;
  readonly attachTypes: readonly AttachTypeSpec[];
  /** Validates private data before anything native is touched. */
  readonly privateDataSchema: ZodType<P>;
  /**
   * Absolute path of the native piece (a .so exporting bh_plugin_entry). A
   * plugin loaded from a package must keep it inside that package's directory.
   */
  readonly nativeLibrary: string;
  /**
   * The native piece is loaded with RTLD_LOCAL. A plugin whose C API other
   * libraries find with dlsym(RTLD_DEFAULT, ...) says why here, and is then
   * loaded with RTLD_GLOBAL (its symbols can then interpose on later
   * libraries' lookups, so keep its exported names prefixed).
   */
  readonly nativeGlobalSymbols?: string;
  /** Custom helpers its native piece registers (for docs and checks). */
  readonly helpers?: readonly HelperDecl[];

  /**
   * Optional: the context layout of one section of `type`, where it differs
   * from the type's `contextLayout` (syscall_trace: sys_enter_* sections get
   * trace_event_raw_sys_enter, sys_exit_* trace_event_raw_sys_exit).
   * `rest` is what parseSection gets. Undefined: the type's layout. The
   * verifier proves the section's programs against it; the native piece
   * must hand every run at least its `size` bytes (and at least the type's
   * layout size to a program attached by config entry or forced).
   */
  contextLayoutFor?(type: AttachTypeSpec, rest: string): ContextLayout | undefined;
  /**
   * Optional; required by a type with `sharedPrefixes`: whether a section
   * under one of them is this plugin's (nv-cuda: the name is a CUDA kernel of
   * the target). `rest` is what follows the prefix and its "/"; `target` is
   * the runtime's (PluginHost.target; undefined: this process). Called at
   * load and at attach, cached by the registry per section and target:
   * keep it cheap and do not throw (a throw is reported as the plugin's).
   */
  claimsSection?(type: AttachTypeSpec, rest: string, section: string, target: AttachTarget | undefined): boolean;
  /**
   * A section name to unvalidated private data. `rest` is what follows the
   * matched prefix and its "/" ("libc.so.6:malloc"), or "" for a bare prefix.
   */
  parseSection(type: AttachTypeSpec, rest: string, section: string): unknown;
  /** A config entry (minus its `type`) to unvalidated private data. */
  parseConfig?(type: AttachTypeSpec, entry: Record<string, unknown>): unknown;
  /**
   * Turns validated data into what the native piece needs (e.g. resolves a
   * symbol to an address). May throw a BpfhookError-like error; may be async.
   */
  prepare?(request: AttachRequest<P>, host: PluginHost): P | Promise<P>;
  /** Encodes prepared data into the bytes the native attach() decodes. */
  encode(request: AttachRequest<P>): Uint8Array;
  /** bpftime's to_string(): a short human description of an attachment. */
  describe?(request: AttachRequest<P>): string;
  /**
   * Optional batching (both or neither). `Runtime.batch()` calls beginBatch
   * before this plugin's first attach inside the batch and endBatch once when
   * the batch ends, so the plugin can apply many attachments at once
   * (frida-uprobe: one pause of the process's threads for all of them).
   * endBatch throws if the batch could not be applied: every attachment made
   * in it has then failed, and the runtime detaches their links. Plugins
   * without these hooks attach one by one, inside a batch too.
   */
  beginBatch?(native: NativeCaller): void;
  endBatch?(native: NativeCaller): void;
}

/** A plugin package's module exports one of these as `plugin` or `default`. */
// biome-ignore lint: constructor parameters are whatever the plugin injects
export type PluginExport<P = unknown> = AttachPlugin<P> | (new (...args: any[]) => AttachPlugin<P>);

/**
 * Identity helper that checks the object against the contract at compile
 * time (and infers `P` from the schema where it can).
 *
 * @example
 * ```ts
 * export const plugin = definePlugin({
 *   name: "ticker", abiVersion: PLUGIN_ABI_VERSION,
 *   attachTypes: [{ id: 4321, name: "ticker", sectionPrefixes: ["tick"] }],
 *   privateDataSchema: z.object({ channel: z.string().min(1) }),
 *   nativeLibrary: path.resolve(__dirname, "..", "build", "Release", "libbpfhook_ticker.so"),
 *   parseSection: (_type, rest) => ({ channel: rest }),
 *   encode: ({ data }) => new StructWriter().cstring(data.channel).finish(),
 * });
 * ```
 */
export function definePlugin<P>(plugin: AttachPlugin<P>): AttachPlugin<P> {
  return plugin;
}

/**
 * Calls a plugin's attach-specific native function (ops->call) by name; the
 * Runtime implements it. Plugins' TypeScript helpers take this, not the
 * Runtime, so they depend on the SDK alone.
 */
export interface NativeCaller {
  /**
   * Returns the native function's result `rc` (>= 0) and its `out` buffer of
   * `outSize` bytes; throws a BpfhookError for a negative result.
   */
  callNative(plugin: string, name: string, input: Uint8Array, outSize: number): { rc: number; out: Buffer };
}
