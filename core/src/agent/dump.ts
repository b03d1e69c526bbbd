/**
 * Map contents and buffer records as plain JSON-able values, for the CLI's
 * end-of-run print, `bpfhook maps` and `-j` output: numbers stay numbers
 * (u64s beyond 2^53 become decimal strings), structs become objects (BTF),
 * bytes without a type become hex strings.
 */
import type { BtfTypeInfo } from "../loader/index.js";
import { codecFromBtf } from "../runtime/btf-codec.js";
import type { LoadedObject } from "../runtime/loaded-object.js";
import type { ObjectMap } from "../runtime/object-maps.js";

export interface MapDump {
  /** "map", or "object.map" when several objects are loaded. */
  name: string;
  type: string;
  entries: { key: unknown; value: unknown }[];
}

/** Types whose contents are events or code, not entries. */
const NOT_DUMPED = new Set(["ringbuf", "perf_event_array", "prog_array", "stack_trace"]);
/** At most this many entries per map in a dump. */
export const DUMP_LIMIT = 10_000;

export function mapDump(objName: string, m: ObjectMap, qualify: boolean): MapDump | undefined {
  const map = m.map as unknown as { typeName?: string; entries?: () => Iterable<[unknown, unknown]>; values?: () => Iterable<unknown> };
  const type = map.typeName ?? "unknown";
  // Constants (.rodata, .kconfig) say nothing about the run.
  if (NOT_DUMPED.has(type) || m.name === ".kconfig" || m.name.startsWith(".rodata")) return undefined;
  const datasec = m.spec.valueType?.kind === "datasec" ? m.spec.valueType : undefined;
  const entries: { key: unknown; value: unknown }[] = [];
  if (typeof map.entries === "function") {
    for (const [key, value] of map.entries()) {
      entries.push({ key: jsonValue(key), value: datasec && Buffer.isBuffer(value) ? globals(datasec, value) : jsonValue(value) });
      if (entries.length >= DUMP_LIMIT) break;
    }
  }
  // Numeric keys in order: a histogram reads top to bottom.
  if (entries.every((e) => typeof e.key === "number")) entries.sort((a, b) => (a.key as number) - (b.key as number));
  return { name: qualify ? `${objName}.${m.name}` : m.name, type, entries };
}

/** A global data section (.bss, .data): its variables by name, decoded from BTF. */
function globals(sec: BtfTypeInfo, value: Buffer): unknown {
  const out: Record<string, unknown> = {};
  for (const v of sec.members ?? []) {
    const size = v.type.size;
    if (v.offset + size > value.length || size === 0) continue;
    try {
      out[v.name] = jsonValue(codecFromBtf(v.type, size).decode(value, v.offset));
    } catch {
      out[v.name] = value.subarray(v.offset, v.offset + size).toString("hex");
    }
  }
  return out;
}

/** A ring/perf record: decoded with the object's struct of that size when there is one. */
export function recordValue(obj: LoadedObject, rec: Buffer): unknown {
  const candidates = obj.structsOfSize(rec.length);
  const pick = candidates.length === 1 ? candidates[0] : candidates.find((t) => /event/i.test(t.name));
  if (pick) {
    try {
      return jsonValue(codecFromBtf(pick, rec.length).decode(rec, 0));
    } catch {
      // fall through to bytes
    }
  }
  return rec.toString("hex");
}

/** bigint -> number when safe, else string; Buffers -> hex; recursively. */
export function jsonValue(v: unknown): unknown {
  if (typeof v === "bigint") return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, jsonValue(x)]));
  }
  return v;
}
