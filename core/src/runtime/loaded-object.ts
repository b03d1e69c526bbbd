/**
 * An object loaded into a runtime: its maps (created in the shared region)
 * and its programs (loaded and compiled with those maps). Built all or
 * nothing: if one program fails to load, everything made so far is freed.
 */
import { BpfhookError } from "../errors.js";
import { describeMissingHelper } from "../kernel-names.js";
import type { NativeProgram } from "../native/addon-types.js";
import { loadObject } from "../loader/index.js";
import type { BpfObject, BtfTypeInfo, LoadObjectOptions, MapSpec } from "../loader/index.js";
import { Program } from "./program.js";
import type { Runtime } from "./runtime.js";
import { createObjectMaps, type ObjectMap, type ProgArrayMaker } from "./object-maps.js";
import type { ProgArray } from "./prog-array.js";
import type { AnyMap, SharedRegion } from "../maps/index.js";
import type { ProgramVerification } from "./verification.js";
import type { AttachProgramMap } from "@bpfhook/sdk";
import { native } from "../native/binding.js";
import { Errno, mapError } from "../maps/errors.js";
import { applyMaxEntries, applyRodata, type RodataValue } from "./load-tuning.js";

/** Raw instructions plus maps given in code, for embedding without clang. */
export interface RawObject {
  programs: readonly { name: string; section?: string; insns: Uint8Array }[];
  maps?: readonly MapSpec[];
  license?: string;
}

/**
 * Options of Runtime.load for ELF objects: loadObject's (a name for bytes,
 * kconfig values), plus what libbpf lets a skeleton set before load.
 */
export interface LoadOptions extends LoadObjectOptions {
  /**
   * Values of `const volatile` globals in `.rodata`, by variable name, set
   * before the map is frozen (as `skel->rodata->target_pid = 42` before
   * load): integers (bigint or "0x..." strings for 64-bit), bools, enums,
   * chars, strings for char arrays. Size- and type-checked against BTF.
   */
  rodata?: Readonly<Record<string, RodataValue>>;
  /** max_entries of maps by name, before they are created (bpf_map__set_max_entries). */
  maxEntries?: Readonly<Record<string, number>>;
}

/** A path to a clang-built .bpf.o, its bytes, or a raw object. */
export type LoadSource = string | Uint8Array | RawObject;

/** What a program loader gets besides the instructions: where the program comes from and the object's map specs. */
export interface ProgramLoadInfo {
  readonly section: string;
  readonly file: string | undefined;
  /** The object's name in messages: its file, or "(object)". */
  readonly objectName: string;
  /** The object's maps, indexed as the lddw imm (what `maps` are handles of). */
  readonly mapSpecs: readonly MapSpec[];
}

/** A loaded program: the native one, and its verification in strict mode. */
export interface LoadedProgramParts {
  readonly native: NativeProgram;
  readonly verification?: ProgramVerification;
}

export type ProgramLoader = (insns: Uint8Array, name: string, maps: unknown[], info: ProgramLoadInfo) => LoadedProgramParts;

export class LoadedObject {
  #disposed = false;
  /** Named BTF structs of a size (ring/perf records are decoded with them); none without BTF. */
  structsOfSize: (size: number) => BtfTypeInfo[] = () => [];

  private constructor(
    readonly name: string,
    readonly license: string,
    private readonly programsByName: ReadonlyMap<string, Program>,
    private readonly mapsByName: ReadonlyMap<string, ObjectMap>,
    private readonly onClose: (obj: LoadedObject) => void,
  ) {}

  static create(
    runtime: Runtime,
    region: SharedRegion,
    source: LoadSource,
    loadProgram: ProgramLoader,
    makeProgArray?: ProgArrayMaker,
    onClose: (obj: LoadedObject) => void = (obj) => obj.dispose(),
    options: LoadOptions = {},
  ): LoadedObject {
    const spec = toObject(source, options);
    const name = spec.file ?? "(object)";
    const maps = createObjectMaps(region, spec.maps, name, makeProgArray);
    const programs = new Map<string, Program>();
    try {
      const handles = maps.map((m) => m.native);
      for (const p of spec.programs) {
        if (programs.has(p.name)) {
          throw new BpfhookError("ELF_INVALID", `${name}: two programs named '${p.name}'`, { symbol: p.name });
        }
        let parts: LoadedProgramParts;
        try {
          parts = loadProgram(p.insns, p.name, handles, { section: p.section, file: spec.file, objectName: name, mapSpecs: spec.maps });
        } catch (err) {
          if (err instanceof BpfhookError) {
            const { message, pc } = nameHelpers(err.message);
            throw new BpfhookError(err.code, `${name}: section '${p.section}': ${message}`, {
              ...(pc === undefined ? {} : { pc }),
              ...err.detail,
              file: spec.file,
              section: p.section,
              symbol: p.name,
              cause: err,
            });
          }
          throw err;
        }
        programs.set(p.name, new Program(runtime, p.name, p.section, parts.native, p.insns, parts.verification, {
          insns: p.insns,
          functions: p.functions,
          maps: spec.maps,
          map: (mapName) => rawAccess(maps.find((m) => m.name === mapName)),
        }));
      }
    } catch (err) {
      for (const prog of programs.values()) prog.native.release();
      for (const m of maps) m.close();
      throw err;
    }
    const loaded = new LoadedObject(name, spec.license, programs, new Map(maps.map((m) => [m.name, m])), onClose);
    if (spec.structsOfSize) loaded.structsOfSize = spec.structsOfSize;
    return loaded;
  }

  program(name: string): Program {
    const p = this.programsByName.get(name);
    if (!p) {
      throw new BpfhookError(
        "NOT_FOUND",
        `${this.name}: no program '${name}' (programs: ${[...this.programsByName.keys()].join(", ") || "none"})`,
        { symbol: name },
      );
    }
    return p;
  }

  get programs(): Program[] {
    return [...this.programsByName.values()];
  }

  /**
   * The map `name` (".bss", "counts"), typed by the caller: `obj.map<BpfMap<number, bigint>>("counts")`,
   * `obj.map<ProgArray>("jmp_table")`.
   */
  map<M extends AnyMap | ProgArray = AnyMap>(name: string): M {
    return this.objectMap(name).map as M;
  }

  /** The map with its spec and region name. */
  objectMap(name: string): ObjectMap {
    const m = this.mapsByName.get(name);
    if (!m) {
      throw new BpfhookError(
        "NOT_FOUND",
        `${this.name}: no map '${name}' (maps: ${[...this.mapsByName.keys()].join(", ") || "none"})`,
        { symbol: name },
      );
    }
    return m;
  }

  get maps(): ObjectMap[] {
    return [...this.mapsByName.values()];
  }

  /** True once the object is unloaded (close(), or its runtime's close). */
  get closed(): boolean {
    return this.#disposed;
  }

  /**
   * Unloads the object: detaches its programs' links, takes them out of
   * program arrays, releases them, and frees its maps in the shared region
   * (their space is reused by later loads). Handles to its maps and programs
   * stop working. Idempotent.
   */
  close(): void {
    if (this.#disposed) return;
    this.onClose(this);
  }

  /** @internal Frees programs and maps; the runtime calls it on unload and close. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.programsByName.values()) p.native.release();
    for (const m of this.mapsByName.values()) m.close();
  }
}

/**
 * The VM names a helper nobody registered by number only ("call to
 * unregistered helper 502"); say which helper that is and who could provide
 * it, from the one table of names.
 */
function nameHelpers(message: string): { message: string; pc?: number } {
  const m = /\b(callx? to) unregistered helper (\d+)/.exec(message);
  if (m === null) return { message };
  const pc = /\bpc (\d+):/.exec(message);
  const named = message.replace(m[0], `${m[1]} ${describeMissingHelper(Number(m[2]))}`);
  return pc === null ? { message: named } : { message: named, pc: Number(pc[1]) };
}

function toObject(source: LoadSource, options: LoadOptions): BpfObject {
  if (typeof source === "string" || source instanceof Uint8Array) {
    const { rodata, maxEntries, ...loaderOptions } = options;
    const obj = loadObject(source, loaderOptions);
    const name = obj.file ?? "(object)";
    if (maxEntries !== undefined) obj.maps = applyMaxEntries(obj.maps, maxEntries, name);
    if (rodata !== undefined) obj.maps = applyRodata(obj.maps, rodata, name);
    return obj;
  }
  if (!source || !Array.isArray(source.programs)) {
    throw new BpfhookError("BAD_ARGUMENT", "load(): expected a path, ELF bytes, or { programs: [...], maps?: [...] }");
  }
  if (options.rodata !== undefined && Object.keys(options.rodata).length > 0) {
    // No BTF, no variables to find by name: refused rather than silently ignored.
    throw new BpfhookError("BAD_ARGUMENT", "load(): 'rodata' needs an ELF object with BTF; a raw object has no .rodata variables", {
      field: "rodata",
    });
  }
  const maps = options.maxEntries === undefined ? [...(source.maps ?? [])] : applyMaxEntries([...(source.maps ?? [])], options.maxEntries, "(object)");
  return {
    license: source.license ?? "",
    maps,
    programs: source.programs.map((p, i) => {
      if (typeof p.name !== "string" || !(p.insns instanceof Uint8Array) || p.insns.length % 8 !== 0) {
        throw new BpfhookError(
          "BAD_ARGUMENT",
          `load(): programs[${i}] needs a name and insns as a Uint8Array of 8-byte instructions`,
        );
      }
      const count = p.insns.length / 8;
      return {
        name: p.name,
        section: p.section ?? "",
        insns: p.insns,
        offset: 0,
        size: p.insns.length,
        functions: [{ name: p.name, section: p.section ?? "", start: 0, count }],
      };
    }),
  };
}

/**
 * A plugin's raw view of one of the object's maps (AttachProgramCode.map):
 * bytes in and out, the object's own handle, no codecs. Program arrays have
 * no bytes to give.
 */
function rawAccess(m: ObjectMap | undefined): AttachProgramMap | undefined {
  if (m === undefined || m.regionName === "") return undefined;
  const { name, type, keySize, valueSize, maxEntries } = m.spec;
  const handle = m.native as never;
  const key = (k: Uint8Array, op: string): Uint8Array => {
    if (k.length !== keySize) throw mapError(name, op, -Errno.EINVAL, { reason: `key of ${k.length} bytes, the map's is ${keySize}` });
    return k;
  };
  return {
    name,
    type,
    keySize,
    valueSize,
    maxEntries,
    lookup(k) {
      const out = Buffer.alloc(valueSize);
      const rc = native().mapLookup(handle, key(k, "lookup"), out);
      if (rc === -Errno.ENOENT) return undefined;
      if (rc < 0) throw mapError(name, "lookup", rc);
      return out;
    },
    update(k, v) {
      if (v.length !== valueSize) throw mapError(name, "update", -Errno.EINVAL, { reason: `value of ${v.length} bytes, the map's is ${valueSize}` });
      const rc = native().mapUpdate(handle, key(k, "update"), v, 0);
      if (rc < 0) throw mapError(name, "update", rc);
    },
  };
}
