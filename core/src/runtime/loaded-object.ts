/**
 * An object loaded into a runtime: its maps (created in the shared region)
 * and its programs (loaded and compiled with those maps). Built all or
 * nothing: if one program fails to load, everything made so far is freed.
 */
import { BpfhookError } from "../errors.js";
import type { NativeProgram } from "../native/addon-types.js";
import { loadObject } from "../loader/index.js";
import type { BpfObject, MapSpec } from "../loader/index.js";
import { Program } from "./program.js";
import type { Runtime } from "./runtime.js";
import { createObjectMaps, type ObjectMap, type ProgArrayMaker } from "./object-maps.js";
import type { ProgArray } from "./prog-array.js";
import type { AnyMap, SharedRegion } from "../maps/index.js";

/** Raw instructions plus maps given in code, for embedding without clang. */
export interface RawObject {
  programs: readonly { name: string; section?: string; insns: Uint8Array }[];
  maps?: readonly MapSpec[];
  license?: string;
}

/** A path to a clang-built .bpf.o, its bytes, or a raw object. */
export type LoadSource = string | Uint8Array | RawObject;

export type ProgramLoader = (insns: Uint8Array, name: string, maps: unknown[]) => NativeProgram;

export class LoadedObject {
  private constructor(
    readonly name: string,
    readonly license: string,
    private readonly programsByName: ReadonlyMap<string, Program>,
    private readonly mapsByName: ReadonlyMap<string, ObjectMap>,
  ) {}

  static create(
    runtime: Runtime,
    region: SharedRegion,
    source: LoadSource,
    loadProgram: ProgramLoader,
    makeProgArray?: ProgArrayMaker,
  ): LoadedObject {
    const spec = toObject(source);
    const name = spec.file ?? "(object)";
    const maps = createObjectMaps(region, spec.maps, name, makeProgArray);
    const programs = new Map<string, Program>();
    try {
      const handles = maps.map((m) => m.native);
      for (const p of spec.programs) {
        if (programs.has(p.name)) {
          throw new BpfhookError("ELF_INVALID", `${name}: two programs named '${p.name}'`, { symbol: p.name });
        }
        let nativeProgram: NativeProgram;
        try {
          nativeProgram = loadProgram(p.insns, p.name, handles);
        } catch (err) {
          if (err instanceof BpfhookError) {
            throw new BpfhookError(err.code, `${name}: section '${p.section}': ${err.message}`, {
              ...err.detail,
              file: spec.file,
              section: p.section,
              symbol: p.name,
              cause: err,
            });
          }
          throw err;
        }
        programs.set(p.name, new Program(runtime, p.name, p.section, nativeProgram, p.insns));
      }
    } catch (err) {
      for (const prog of programs.values()) prog.native.release();
      for (const m of maps) m.close();
      throw err;
    }
    return new LoadedObject(name, spec.license, programs, new Map(maps.map((m) => [m.name, m])));
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

  /** @internal Frees programs and maps; the runtime calls it on close. */
  dispose(): void {
    for (const p of this.programsByName.values()) p.native.release();
    for (const m of this.mapsByName.values()) m.close();
  }
}

function toObject(source: LoadSource): BpfObject {
  if (typeof source === "string" || source instanceof Uint8Array) return loadObject(source);
  if (!source || !Array.isArray(source.programs)) {
    throw new BpfhookError("BAD_ARGUMENT", "load(): expected a path, ELF bytes, or { programs: [...], maps?: [...] }");
  }
  return {
    license: source.license ?? "",
    maps: [...(source.maps ?? [])],
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
