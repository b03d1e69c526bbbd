/**
 * How the Runtime uses the verifier (core/src/verifier): which mode, which
 * context a program is verified against, which maps and helpers it is
 * given, the verdicts kept per context layout, and the error a refusal
 * becomes. The verifier itself is reached only through the VerifyFunction
 * the Runtime resolves (VerifierToken), so tests and tools can swap it.
 */
import type { AttachPlugin, AttachTypeSpec, ContextLayout, HelperSignature } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";
import type { MapSpec } from "../loader/index.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { standardHelpers } from "../verifier/helpers.js";
import type { VerifierMap, VerifierMode, VerifyOptions, VerifyResult } from "../verifier/types.js";

/** What a Runtime calls to verify: `verifyProgram`'s shape. */
export type VerifyFunction = (name: string, insns: Uint8Array, opts: VerifyOptions) => VerifyResult;

export const VERIFIER_MODES: readonly VerifierMode[] = ["strict", "checked", "off"];

/**
 * The context of a program whose section no registered attach type selects
 * (raw programs, `tracepoint/...` without a plugin): none at all. A program
 * verified against it never touches its context, so it is safe with any;
 * one that does is verified again, against the real context, when it is
 * attached (or run with Program.run) and not before.
 */
export const UNKNOWN_CONTEXT: ContextLayout = Object.freeze({ name: "unknown context", size: 0 });

/** RuntimeOptions.verifier and .checked to the mode and whether the VM runs checked. */
export function resolveVerifierMode(verifier: VerifierMode | undefined, checked: boolean | undefined): { mode: VerifierMode; checkedVm: boolean } {
  // `checked: true` alone is the old spelling of verifier "checked"; with a
  // mode given it adds run-time checks to it (strict + checked: both).
  const mode = verifier ?? (checked === true ? "checked" : "strict");
  return { mode, checkedVm: mode === "checked" || checked === true };
}

/**
 * The layout a type gives its programs: declared, else `contextSize`
 * readable bytes (read-only: no plugin in the tree lets a program write a
 * context it did not declare writable), else none.
 */
export function contextOfType(type: AttachTypeSpec): ContextLayout {
  if (type.contextLayout !== undefined) return type.contextLayout;
  if (type.contextSize !== undefined && type.contextSize > 0) return { name: type.context ?? `${type.name} context`, size: type.contextSize };
  return { ...UNKNOWN_CONTEXT, name: `${type.name} context (undeclared)` };
}

/**
 * The context a section selects at load: the plugin's layout for that
 * section (`contextLayoutFor`), else its attach type's, else UNKNOWN_CONTEXT.
 */
export function contextOfSection(registry: PluginRegistry, section: string): ContextLayout {
  const match = section === "" ? undefined : registry.matchSection(section);
  if (match === undefined) return UNKNOWN_CONTEXT;
  return sectionLayout(match.plugin, match.type, match.rest) ?? contextOfType(match.type);
}

/**
 * The context a program attached as `type` gets: its section's layout when
 * the section selects this very type, else the type's.
 */
export function contextOfAttach(registry: PluginRegistry, plugin: AttachPlugin, type: AttachTypeSpec, section: string): ContextLayout {
  const match = section === "" ? undefined : registry.matchSection(section);
  const own = match !== undefined && match.plugin === plugin && match.type === type;
  return (own ? sectionLayout(plugin, type, match.rest) : undefined) ?? contextOfType(type);
}

function sectionLayout(plugin: AttachPlugin, type: AttachTypeSpec, rest: string): ContextLayout | undefined {
  if (plugin.contextLayoutFor === undefined) return undefined;
  const c = plugin.contextLayoutFor(type, rest);
  if (c === undefined) return undefined;
  // The plugin's promise, but a layout whose ranges leave it would let a
  // proven program read past what the plugin hands it.
  const inside = [...(c.readable ?? []), ...(c.writable ?? [])].every((r) => r.offset >= 0 && r.offset + r.size <= c.size);
  if (!inside || !(c.size >= 0)) {
    throw new BpfhookError("PLUGIN_INVALID", `[${plugin.name}] contextLayoutFor('${rest}'): a range lies outside the layout's ${c.size} bytes`, {
      plugin: plugin.name,
    });
  }
  return c;
}

/** One key per distinct layout (the name is only for messages, but two names may mean two plugins' promises). */
export function layoutKey(c: ContextLayout): string {
  let key = layoutKeys.get(c);
  if (key === undefined) {
    const ranges = (r: ContextLayout["readable"]) => (r === undefined ? "*" : r.map((x) => `${x.offset}+${x.size}`).join(","));
    key = `${c.name}|${c.size}|r:${ranges(c.readable)}|w:${c.writable === undefined ? "-" : ranges(c.writable)}`;
    // Plugins' layouts are module constants: an attach finds its key without building it.
    if (Object.isFrozen(c)) layoutKeys.set(c, key);
  }
  return key;
}

const layoutKeys = new WeakMap<ContextLayout, string>();

/**
 * The loader's map specs as the verifier sees them: global data in
 * .rodata/.kconfig read-only, with its frozen bytes (after `rodata`
 * overrides), so `const volatile` bounds are constants and strings in it
 * prove their NUL.
 */
export function verifierMaps(specs: readonly MapSpec[]): VerifierMap[] {
  return specs.map((m) => ({
    name: m.name,
    type: m.type,
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    ...(m.readonly === true ? { readOnly: true } : {}),
    ...(m.readonly === true && m.initialData !== undefined ? { initialData: m.initialData } : {}),
  }));
}

/** The standard helpers plus every registered plugin's declared signatures. */
export function verifierHelpers(plugins: readonly AttachPlugin[]): Map<number, HelperSignature> {
  const helpers = standardHelpers();
  const standard = new Set(helpers.keys());
  for (const plugin of plugins) {
    for (const h of plugin.helpers ?? []) {
      // A plugin cannot loosen a standard helper's signature.
      if (h.signature === undefined || standard.has(h.id)) continue;
      helpers.set(h.id, { ...h.signature, id: h.id, name: h.signature.name ?? h.name });
    }
  }
  return helpers;
}

/** Where a program comes from, for messages. */
export interface ProgramOrigin {
  readonly file: string | undefined;
  /** "file.bpf.o" or "(object)". */
  readonly objectName: string;
  readonly section: string;
}

/**
 * One program's verification in strict mode: its instructions and maps, and
 * the verdict per context layout (verified once per layout: a program
 * attached many times as one type is verified once).
 */
export class ProgramVerification {
  readonly #verdicts = new Map<string, VerifyResult>();
  readonly #runSizes = new Set<number>();

  constructor(
    readonly name: string,
    private readonly insns: Uint8Array,
    private readonly maps: readonly VerifierMap[],
    private readonly helpers: () => ReadonlyMap<number, HelperSignature>,
    private readonly verify: VerifyFunction,
    readonly origin: ProgramOrigin,
  ) {}

  /** The verdict for `context` (cached). */
  verdict(context: ContextLayout): VerifyResult {
    const key = layoutKey(context);
    let r = this.#verdicts.get(key);
    if (r === undefined) {
      r = this.verify(this.name, this.insns, { maps: this.maps, context, helpers: this.helpers() });
      this.#verdicts.set(key, r);
    }
    return r;
  }

  /**
   * Set when the load verified against UNKNOWN_CONTEXT and was refused: the
   * program is safe with no context we know yet; attach and run verify it
   * against theirs, and program arrays refuse it (a tail call hands it a
   * context nobody verified it with).
   */
  pending: Extract<VerifyResult, { ok: false }> | undefined;

  /** Program arrays: refuses a program whose load left it pending. */
  requireLoadVerified(when: string): void {
    if (this.pending !== undefined) throw refusal(this.pending, this.origin, this.name, when);
  }

  /** True once the program was proven safe with no context access (UNKNOWN_CONTEXT): then it is safe with any. */
  get safeWithAnyContext(): boolean {
    const r = this.#verdicts.get(layoutKey(UNKNOWN_CONTEXT));
    return r !== undefined && r.ok;
  }

  /**
   * Program.run(ctx): the program gets exactly these bytes, readable and
   * writable. Sizes proven once are remembered (run() is for tests and
   * drivers, which call it in loops).
   */
  requireRun(size: number): void {
    if (this.#runSizes.has(size) || this.safeWithAnyContext) return;
    this.require(size === 0 ? UNKNOWN_CONTEXT : { name: `${size}-byte run context`, size, writable: [{ offset: 0, size }] }, "run");
    this.#runSizes.add(size);
  }

  /** Throws VERIFIER_REFUSED unless the program is proven safe with `context`. */
  require(context: ContextLayout, when: string): void {
    if (this.safeWithAnyContext) return;
    const r = this.verdict(context);
    if (!r.ok) throw refusal(r, this.origin, this.name, when);
  }
}

/**
 * A refusal as a BpfhookError: the verifier's message, prefixed like a
 * load error ("file.bpf.o: section 's': prog 'p': pc 4: ..."), with the
 * file, section, symbol and pc in the detail.
 */
export function refusal(r: Extract<VerifyResult, { ok: false }>, origin: ProgramOrigin, symbol: string, when?: string): BpfhookError {
  const e = r.error;
  const at = when === undefined ? "" : ` (${when})`;
  return new BpfhookError("VERIFIER_REFUSED", `${origin.objectName}: section '${origin.section}'${at}: ${e.message}`, {
    pc: e.pc,
    ...(origin.file === undefined ? {} : { file: origin.file }),
    section: origin.section,
    symbol,
  });
}
