/**
 * bpfhook-plugin-usdt: USDT probes (<sys/sdt.h>, `.note.stapsdt`) for
 * bpfhook, written against @bpfhook/sdk alone, as any third party would.
 *
 *   section  usdt/<binary or library path>:<provider>:<name>
 *   config   { type: usdt, path, provider, name, usdtCookie? }
 *
 * prepare() reads the module's notes, parses each site's argument specs as
 * libbpf does (args.ts) and writes them into the program's own
 * `__bpf_usdt_specs` map (libbpf's usdt.bpf.h reads it); each site's spec id
 * travels to the native piece, which hands it to the program as the attach
 * cookie (usdt.bpf.h: LINUX_HAS_BPF_COOKIE, which bpfhook sets, makes
 * bpf_get_attach_cookie() the spec id). The native piece hooks every site
 * with the SDK's hook engine, module-relative (the module's path and the
 * link-time address), so the same bytes work embedded and in an agent.
 */
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { definePlugin, PLUGIN_ABI_VERSION, readElfImage, StructWriter } from "@bpfhook/sdk";
import type { AttachProgramInfo, AttachTypeSpec, ContextLayout, ElfSymbol } from "@bpfhook/sdk";
import { encodeSpec, parseArgs, SPEC_SIZE } from "./args.js";
import { dataSymbol, enclosingFunction, readUsdtSites, sectionAt, UsdtError } from "./stapsdt.js";

export { ARG_CONST, ARG_REG, ARG_REG_DEREF, encodeSpec, parseArg, parseArgs, SPEC_SIZE } from "./args.js";
export type { ArgSpec } from "./args.js";
export { readUsdtSites } from "./stapsdt.js";
export type { UsdtSite } from "./stapsdt.js";

export const PLUGIN_NAME = "usdt";
/** Our attach type id (third parties pick >= 4096). */
export const USDT_ATTACH_TYPE = 4242;
const PT_REGS_SIZE = 168;
const PT_REGS: ContextLayout = {
  name: "pt_regs",
  size: PT_REGS_SIZE,
  readable: [{ offset: 0, size: PT_REGS_SIZE }],
  writable: [],
};
export const USDT: AttachTypeSpec = {
  id: USDT_ATTACH_TYPE,
  name: "usdt",
  sectionPrefixes: ["usdt"],
  context: "pt_regs",
  contextSize: PT_REGS_SIZE,
  contextLayout: PT_REGS,
};

/** Where `npm run build:native` puts the native piece. */
export const NATIVE_LIBRARY = path.resolve(__dirname, "..", "build", "libbpfhook_usdt.so");
/** The maps usdt.bpf.h declares. */
export const SPECS_MAP = "__bpf_usdt_specs";

const cookie = z.union([z.bigint(), z.number().int().nonnegative(), z.string().regex(/^(0x[0-9a-fA-F]+|\d+)$/)]);
export const usdtSchema = z
  .object({
    path: z.string().min(1),
    provider: z.string().min(1),
    name: z.string().min(1),
    /** bpf_usdt_cookie() (libbpf's bpf_usdt_opts.usdt_cookie). */
    usdtCookie: cookie.optional(),
  })
  .strict();
export type UsdtTarget = z.infer<typeof usdtSchema>;

export interface PreparedSite {
  /** The site (a nop). */
  readonly vaddr: bigint;
  /**
   * Where it is hooked: the first of a run of adjacent sites (gcc puts the
   * nops of consecutive probes back to back, closer than the 5 bytes a hook
   * patches), so that every probe of the run shares one hook; the program
   * still sees pt_regs.ip = the site.
   */
  readonly hookVaddr: bigint;
  readonly funcOffset: bigint;
  readonly funcSize: bigint;
  readonly semaphore: bigint;
  readonly specId: number;
}
export interface UsdtPrivateData extends UsdtTarget {
  /** Set by prepare(). */
  readonly prepared?: { readonly module: string; readonly sites: readonly PreparedSite[]; readonly specs: boolean };
}

/** "usdt/<path>:<provider>:<name>": the path may itself hold ':'. */
export function parseUsdtSection(rest: string, section: string): UsdtTarget {
  const parts = rest.split(":");
  if (parts.length < 3 || parts.some((p) => p === "")) {
    throw Object.assign(new Error(`section '${section}': expected usdt/<binary or library path>:<provider>:<name>`), {
      code: "BAD_ARGUMENT",
    });
  }
  const name = parts.pop()!;
  const provider = parts.pop()!;
  return { path: parts.join(":"), provider, name };
}

/**
 * Spec ids per object: __bpf_usdt_specs is the object's, shared by its
 * programs (AttachProgramCode.maps is the object's one list). Identical specs
 * share an id, as in libbpf; ids are not reused while the object lives.
 */
const specIds = new WeakMap<object, { next: number; byBytes: Map<string, number> }>();

function specIdFor(program: AttachProgramInfo, bytes: Buffer, where: string): number {
  const code = program.code!;
  const map = code.map!(SPECS_MAP)!;
  let ids = specIds.get(code.maps);
  if (!ids) specIds.set(code.maps, (ids = { next: 0, byBytes: new Map() }));
  const key = bytes.toString("hex");
  const known = ids.byBytes.get(key);
  if (known !== undefined) return known;
  if (ids.next >= map.maxEntries) {
    throw Object.assign(
      new Error(`${where}: ${SPECS_MAP} is full (${map.maxEntries} specs; raise BPF_USDT_MAX_SPEC_CNT in the program)`),
      { code: "LIMIT" },
    );
  }
  const id = ids.next++;
  const k = Buffer.alloc(4);
  k.writeUInt32LE(id);
  map.update(k, bytes);
  ids.byBytes.set(key, id);
  return id;
}

/** The program reads libbpf's spec map: fill it. Else the sites carry the runtime's cookie. */
function usesSpecs(program: AttachProgramInfo | undefined, where: string): boolean {
  const map = program?.code?.map?.(SPECS_MAP);
  if (!map) return false;
  if (map.valueSize !== SPEC_SIZE || map.keySize !== 4) {
    throw Object.assign(
      new Error(`${where}: ${SPECS_MAP} has ${map.keySize}-byte keys and ${map.valueSize}-byte values; usdt.bpf.h's are 4 and ${SPEC_SIZE}`),
      { code: "BAD_ARGUMENT" },
    );
  }
  return true;
}

export function describeTarget(d: UsdtTarget): string {
  return `${d.path}:${d.provider}:${d.name}`;
}

function prepare(data: UsdtTarget, program: AttachProgramInfo | undefined): UsdtPrivateData {
  const where = `usdt ${describeTarget(data)}`;
  let module: string;
  try {
    module = fs.realpathSync(data.path);
  } catch {
    throw new UsdtError(`${where}: no file ${data.path}`, "NOT_FOUND");
  }
  const image = readElfImage(module);
  const all = readUsdtSites(module, image);
  const sites = all.filter((s) => s.provider === data.provider && s.name === data.name);
  if (sites.length === 0) {
    const names = [...new Set(all.map((s) => `${s.provider}:${s.name}`))];
    throw new UsdtError(
      `${where}: no such probe in ${module} (its probes: ${names.join(", ") || "none, no .note.stapsdt"})`,
      "NOT_FOUND",
    );
  }
  const specs = usesSpecs(program, where);
  const usdtCookie = data.usdtCookie === undefined ? 0n : BigInt(data.usdtCookie);
  const funcs = new Map<string, ElfSymbol[]>();
  const allPcs = new Set(all.map((s) => s.pc));
  const prepared: PreparedSite[] = sites.map((s, i) => {
    const at = `${where}: site ${i} (0x${s.pc.toString(16)})`;
    let hookVaddr = s.pc;
    while (allPcs.has(hookVaddr - 1n)) hookVaddr--;
    const fn = enclosingFunction(image, s.pc, funcs);
    if (!fn) throw new UsdtError(`${at}: in no function of the symbol tables (the hook needs the function to check instruction boundaries)`, "NOT_FOUND");
    if (s.semaphore !== 0n && sectionAt(image, s.semaphore) !== ".probes") {
      throw new UsdtError(`${at}: semaphore 0x${s.semaphore.toString(16)} is not in .probes`, "BAD_ARGUMENT");
    }
    let specId = 0;
    if (specs) {
      let args;
      try {
        args = parseArgs(s.args, s.pc, (name) => dataSymbol(image, name));
      } catch (err) {
        throw Object.assign(new Error(`${at}: ${(err as Error).message}`), { code: "BAD_ARGUMENT" });
      }
      specId = specIdFor(program!, encodeSpec(args, usdtCookie), at);
    }
    if (hookVaddr < fn.value) hookVaddr = s.pc; // a run never crosses into the function before
    return { vaddr: s.pc, hookVaddr, funcOffset: hookVaddr - fn.value, funcSize: fn.size, semaphore: s.semaphore, specId };
  });
  return { ...data, prepared: { module, sites: prepared, specs } };
}

/**
 * Private data (native/plugin.cpp decode() reads it):
 *   u32 magic 'USDT', u32 nsites, u32 flags (1: sites carry spec ids; 2: the program calls no helper), u32 0,
 *   nsites x { u64 vaddr, u64 hook_vaddr, u64 func_offset (of hook_vaddr), u64 func_size, u64 semaphore,
 *              u32 spec_id, u32 0 },
 *   module path\0, description\0
 */
export const PRIVATE_MAGIC = 0x54445355;
export const FLAG_SPEC_IDS = 1;
/** The program calls no helper: with JIT code the hook need not save vector state (the costly part inside a function). */
export const FLAG_NO_HELPERS = 2;
export function encodeUsdt(data: UsdtPrivateData, program?: AttachProgramInfo): Uint8Array {
  const p = data.prepared;
  if (!p) throw new Error(`usdt ${describeTarget(data)}: encode() before prepare()`);
  const flags = (p.specs ? FLAG_SPEC_IDS : 0) | (program !== undefined && program.helperIds.length === 0 ? FLAG_NO_HELPERS : 0);
  const w = new StructWriter().u32(PRIVATE_MAGIC).u32(p.sites.length).u32(flags).u32(0);
  for (const s of p.sites) w.u64(s.vaddr).u64(s.hookVaddr).u64(s.funcOffset).u64(s.funcSize).u64(s.semaphore).u32(s.specId).u32(0);
  return w.cstring(p.module).cstring(`${data.provider}:${data.name}`).finish();
}

export const plugin = definePlugin<UsdtPrivateData>({
  name: PLUGIN_NAME,
  version: "0.1.0",
  abiVersion: PLUGIN_ABI_VERSION,
  attachTypes: [USDT],
  privateDataSchema: usdtSchema as unknown as z.ZodType<UsdtPrivateData>,
  nativeLibrary: NATIVE_LIBRARY,
  parseSection: (_type, rest, section) => parseUsdtSection(rest, section),
  parseConfig: (_type, entry) => entry,
  // Sites are found in the file and hooked module-relative, so the same
  // bytes serve this process and an agent's (host.target).
  prepare: ({ data, program }) => prepare(data, program),
  encode: ({ data, program }) => encodeUsdt(data, program),
  describe: ({ data }) => {
    const p = data.prepared;
    const where = p ? ` (${p.sites.length} site${p.sites.length === 1 ? "" : "s"} in ${p.module})` : "";
    return `usdt ${describeTarget(data)}${where}`;
  },
});
export default plugin;
