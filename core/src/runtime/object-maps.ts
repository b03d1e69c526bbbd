/**
 * Creates an object's maps in the runtime's shared region from the loader's
 * specs, with codecs from BTF, and fills global data (.data, .rodata) with
 * its initial bytes. Program arrays are the exception: they hold
 * process-local programs, so the runtime makes them (makeProgArray). All or
 * nothing: a failure closes what was made.
 */
import { BpfhookError } from "../errors.js";
import type { MapSpec } from "../loader/index.js";
import { codec, Errno, mapError, type AnyMap, type Codec, type SharedRegion } from "../maps/index.js";
import { codecFromBtf } from "./btf-codec.js";
import type { ProgArray } from "./prog-array.js";

export interface ObjectMap {
  /** The map's name in its object (".bss", "counts"). */
  readonly name: string;
  /** Its name in the shared region (unique there; qualified on a clash). A program array has none: "". */
  readonly regionName: string;
  readonly spec: MapSpec;
  readonly map: AnyMap | ProgArray;
  /** The native handle programs reference. */
  readonly native: unknown;
  close(): void;
}

/** Makes a program array of `maxEntries` slots named `name` (the runtime's). */
export type ProgArrayMaker = (name: string, maxEntries: number) => ProgArray;

const PROG_ARRAY = 3;
const QUEUE = 22;
const STACK = 23;
const BLOOM_FILTER = 30;
/** Types read without key and value codecs. */
const NO_CODECS = new Set([
  4 /* perf event array */,
  7 /* stack trace: frames as bigint[] */,
  27 /* ringbuf */,
]);

export function createObjectMaps(
  region: SharedRegion,
  specs: readonly MapSpec[],
  objectName: string,
  makeProgArray?: ProgArrayMaker,
): ObjectMap[] {
  const made: ObjectMap[] = [];
  const taken = new Set(region.maps().map((d) => d.name));
  try {
    for (const spec of specs) {
      if (spec.type === PROG_ARRAY) {
        made.push(progArrayEntry(spec, objectName, makeProgArray));
        continue;
      }
      const regionName = uniqueName(spec.name, taken);
      taken.add(regionName);
      let map: AnyMap;
      try {
        map = region.createMap({
          name: regionName,
          type: spec.type,
          keySize: spec.keySize,
          valueSize: spec.valueSize,
          maxEntries: spec.maxEntries,
          flags: spec.flags,
          // The object owns its maps: unloading it (closing the last handle) frees them.
          freeOnClose: true,
          ...(spec.mapExtra !== undefined ? { mapExtra: spec.mapExtra } : {}),
          ...codecsFor(spec),
        } as never);
      } catch (err) {
        if (err instanceof BpfhookError) {
          throw new BpfhookError(err.code, `${objectName}: map '${spec.name}' (section ${spec.section}): ${withoutMapName(err.message)}`, {
            ...err.detail,
            symbol: spec.name,
            section: spec.section,
            cause: err,
          });
        }
        throw err;
      }
      const entry: ObjectMap = {
        name: spec.name,
        regionName,
        spec,
        map,
        native: (map as { native: unknown }).native,
        close: () => map.close(),
      };
      made.push(entry);
      if (spec.initialData && spec.initialData.some((b) => b !== 0)) {
        (map as unknown as { set(k: number, v: Buffer): void }).set(0, Buffer.from(spec.initialData));
      }
      // libbpf freezes .rodata and .kconfig after filling them: constants stay constant.
      if (spec.readonly) map.freeze();
    }
  } catch (err) {
    for (const m of made) m.close();
    throw err;
  }
  return made;
}

function progArrayEntry(spec: MapSpec, objectName: string, make: ProgArrayMaker | undefined): ObjectMap {
  function fail(err: BpfhookError): never {
    throw new BpfhookError(err.code, `${objectName}: map '${spec.name}' (section ${spec.section}): ${withoutMapName(err.message)}`, {
      ...err.detail,
      symbol: spec.name,
      section: spec.section,
      cause: err,
    });
  }
  // The kernel's checks for a program array: u32 index keys, u32 (fd) values.
  if (spec.keySize !== 4 || spec.valueSize !== 4 || spec.maxEntries < 1) {
    fail(
      mapError(spec.name, "create", -Errno.EINVAL, {
        reason: `program array: key and value size 4, maxEntries > 0 (got ${spec.keySize}, ${spec.valueSize}, ${spec.maxEntries})`,
      }),
    );
  }
  if (make === undefined) {
    fail(mapError(spec.name, "create", -Errno.EOPNOTSUPP, { reason: "program arrays need a runtime (they hold its programs)" }));
  }
  let map: ProgArray;
  try {
    map = make(spec.name, spec.maxEntries);
  } catch (err) {
    if (err instanceof BpfhookError) fail(err);
    throw err;
  }
  return { name: spec.name, regionName: "", spec, map, native: map.native, close: () => map.close() };
}

/** Map errors start with "map 'name': "; the object's message names the map once, itself. */
function withoutMapName(message: string): string {
  return message.replace(/^map '[^']*': /, "");
}

function uniqueName(name: string, taken: Set<string>): string {
  const base = name.replace(/[^\x21-\x7e]/g, "_").slice(0, 56);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) {
    const candidate = `${base}#${n}`;
    if (!taken.has(candidate)) return candidate;
  }
}

/**
 * Global data (.data, .rodata, .bss, .kconfig) reads as its raw bytes (its
 * layout is the datasec in spec.valueType); event channels and stack traces
 * take no codecs; queues, stacks and bloom filters get a value codec from BTF, others key
 * and value codecs.
 */
function codecsFor(spec: MapSpec): { key?: Codec<any>; value?: Codec<any> } {
  if (NO_CODECS.has(spec.type)) return {};
  if (spec.initialData !== undefined) return { key: codec.u32, value: codec.raw(spec.valueSize) };
  // Queues, stacks and bloom filters have values only (key size 0).
  if (spec.type === QUEUE || spec.type === STACK || spec.type === BLOOM_FILTER) {
    return { value: codecFromBtf(spec.valueType, spec.valueSize) };
  }
  return { key: codecFromBtf(spec.keyType, spec.keySize), value: codecFromBtf(spec.valueType, spec.valueSize) };
}
