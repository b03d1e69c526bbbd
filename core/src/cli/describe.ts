/**
 * What `bpfhook inspect` prints: an object's programs with the plugin and
 * attach type their section selects, and its maps; and whether the object
 * loads. It runs the checks a load runs (the loader, then map creation and
 * program loading, the VM's load-time checks included, in a scratch runtime
 * that is closed at once) and, per program, the checks an attach by section
 * runs before anything native (a plugin serves the section, its
 * parseSection accepts it, its schema accepts the result).
 */
import "reflect-metadata";
import { BpfhookError } from "../errors.js";
import { describeMapType } from "../kernel-names.js";
import { loadObject, type BpfObject, type ProgramSpec } from "../loader/index.js";
import { mapTypeName } from "../maps/types.js";
import { callPluginSync } from "../plugins/call-plugin.js";
import type { PluginRegistry } from "../plugins/registry.js";
import { Runtime } from "../runtime/runtime.js";
import { container as rootContainer } from "tsyringe";
import { VerifierToken } from "../plugins/tokens.js";
import type { VerifyFunction } from "../runtime/verification.js";
import { verifyProgram } from "../verifier/verify.js";
import { verdictLine, verifyPrograms, type ProgramVerdict } from "./verify.js";

const BUNDLED = ["@bpfhook/plugin-simple", "@bpfhook/plugin-frida-uprobe", "@bpfhook/plugin-syscall-trace"];

/** Exit codes of `bpfhook inspect`. */
export const InspectExit = {
  /**
   * Loads. Programs that cannot attach by their section are labelled but do
   * not fail the command: libbpf objects often carry bare sections
   * (`SEC("uprobe")`) meant for an attach with an explicit target.
   */
  OK: 0,
  /** A load would refuse the object. */
  LOAD_REFUSED: 1,
} as const;

export interface Description {
  text: string;
  json: unknown;
  exitCode: number;
  /** Why a load would refuse the object. */
  loadError?: BpfhookError;
}

interface AttachCheck {
  attach: string;
  attachable: boolean;
}

/** What inspect / verify may be given besides the file: a verifier instead of verifyProgram (tests), via DI. */
export interface CliVerifierOptions {
  verify?: VerifyFunction;
}

/** A runtime for the CLI's checks (strict: what a default load does), with `verify` registered when given. */
export async function scratchRuntime(o: CliVerifierOptions = {}): Promise<Runtime> {
  if (o.verify === undefined) return Runtime.create({ verifier: "strict" });
  const container = rootContainer.createChildContainer();
  container.register(VerifierToken, { useValue: o.verify });
  return Runtime.create({ verifier: "strict", container });
}

/** Reads `file` (the loader's errors propagate: nothing to describe), then checks and describes it. */
export async function inspectObject(file: string, pluginNames?: readonly string[], o: CliVerifierOptions = {}): Promise<Description> {
  const obj = loadObject(file);
  const notes: string[] = [];
  let rt: Runtime | undefined;
  try {
    rt = await scratchRuntime(o);
  } catch (err) {
    notes.push(`load checks skipped: ${(err as Error).message}`);
  }
  try {
    let loadError: BpfhookError | undefined;
    let verdicts: ProgramVerdict[] | undefined;
    if (rt !== undefined) {
      registerPlugins(rt, pluginNames ?? BUNDLED, pluginNames !== undefined, notes);
      verdicts = verifyPrograms(obj, rt.registry, o.verify ?? verifyProgram);
      try {
        rt.load(file);
      } catch (err) {
        if (!(err instanceof BpfhookError)) throw err;
        loadError = err;
      }
    }
    const checks = obj.programs.map((p) => (rt === undefined ? { attach: "not checked", attachable: true } : attachBySection(rt.registry, p)));
    return describe(obj, checks, notes, loadError, verdicts);
  } finally {
    rt?.close();
  }
}

/** `bpfhook verify`: the verdict per program; exit 1 when one is refused. */
export async function verifyObjectFile(
  file: string,
  opts: { program?: string; context?: string; plugin?: readonly string[] } & CliVerifierOptions = {},
): Promise<{ text: string; json: unknown; exitCode: number }> {
  const obj = loadObject(file);
  const notes: string[] = [];
  const rt = await scratchRuntime(opts);
  try {
    registerPlugins(rt, opts.plugin ?? BUNDLED, opts.plugin !== undefined, notes);
    const verdicts = verifyPrograms(obj, rt.registry, opts.verify ?? verifyProgram, {
      ...(opts.program === undefined ? {} : { only: opts.program }),
      ...(opts.context === undefined ? {} : { contextType: opts.context }),
    });
    const refused = verdicts.filter((v) => !v.ok).length;
    const lines = [...notes, ...verdicts.map(verdictLine), `${verdicts.length - refused} of ${verdicts.length} programs verified`];
    return { text: lines.join("\n"), json: { file: obj.file, programs: verdicts }, exitCode: refused > 0 ? 1 : 0 };
  } finally {
    rt.close();
  }
}

/**
 * The bundled plugins resolve next to core only: a package of the same name
 * planted in the working directory (or a parent) must not run (SECURITY.md).
 * Plugins the user names with --plugin resolve from the working directory
 * first (the user named them there), then next to core.
 */
function registerPlugins(rt: Runtime, names: readonly string[], named: boolean, notes: string[]): void {
  const dirs = named ? [process.cwd(), __dirname] : [__dirname];
  for (const name of names) {
    let lastError: unknown;
    for (const dir of dirs) {
      try {
        rt.registry.registerPackage(name, dir, rt.container);
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err;
      }
    }
    if (lastError !== undefined) notes.push(`plugin ${name} not loaded: ${(lastError as Error).message}`);
  }
}

/** What Runtime.attach(program) with no options checks before anything native. */
function attachBySection(registry: PluginRegistry, p: ProgramSpec): AttachCheck {
  const match = registry.matchSection(p.section);
  if (match === undefined) return { attach: "not attachable by section: no registered plugin serves it", attachable: false };
  const label = `${match.type.name} (${match.type.id}) via ${match.plugin.name}`;
  try {
    const raw = callPluginSync(match.plugin.name, "parseSection", () => match.plugin.parseSection(match.type, match.rest, p.section));
    registry.validate(match.plugin, match.type, raw, `section '${p.section}'`);
    return { attach: label, attachable: true };
  } catch (err) {
    if (!(err instanceof BpfhookError)) throw err;
    return { attach: `not attachable by section (${label}): ${err.message}`, attachable: false };
  }
}

function describe(
  obj: BpfObject,
  checks: AttachCheck[],
  notes: string[],
  loadError: BpfhookError | undefined,
  verdicts: ProgramVerdict[] | undefined,
): Description {
  const programs = obj.programs.map((p, i) => ({
    name: p.name,
    section: p.section,
    instructions: p.insns.length / 8,
    attach: checks[i]!.attach,
    attachable: checks[i]!.attachable,
    ...(verdicts === undefined ? {} : { verifier: verdicts[i]! }),
  }));
  const maps = obj.maps.map((m) => ({
    name: m.name,
    type: mapTypeName(m.type) ?? describeMapType(m.type),
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    flags: m.flags,
    section: m.section,
  }));
  const unattachable = programs.filter((p) => !p.attachable).length;
  const verdict =
    loadError !== undefined
      ? `load: refused: ${loadError.message}`
      : `load: ok${unattachable > 0 ? `; ${unattachable} of ${programs.length} programs cannot attach by section` : ""}`;
  const lines = [
    `${obj.file ?? "(buffer)"}: license "${obj.license}"`,
    `programs (${programs.length}):`,
    ...programs.map((p) => `  ${p.name.padEnd(24)} ${p.section.padEnd(44)} ${String(p.instructions).padStart(5)} insns  ${p.attach}`),
    ...(verdicts === undefined ? [] : ["verifier (strict):", ...verdicts.map((v) => `  ${verdictLine(v)}`)]),
    `maps (${maps.length}):`,
    ...maps.map(
      (m) =>
        `  ${m.name.padEnd(24)} ${m.type.padEnd(16)} key ${String(m.keySize).padStart(3)}  value ${String(m.valueSize).padStart(5)}  entries ${m.maxEntries}`,
    ),
    ...notes,
    verdict,
  ];
  const exitCode = loadError !== undefined ? InspectExit.LOAD_REFUSED : InspectExit.OK;
  const load = loadError !== undefined ? { ok: false, error: loadError.message, code: loadError.code } : { ok: true };
  const out: Description = { text: lines.join("\n"), json: { file: obj.file, license: obj.license, programs, maps, load }, exitCode };
  if (loadError !== undefined) out.loadError = loadError;
  return out;
}
