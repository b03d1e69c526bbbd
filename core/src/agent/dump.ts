/**
 * Map contents and buffer records as plain JSON-able values, for the CLI's
 * end-of-run print, `bpfhook maps` and `-j` output: numbers stay numbers
 * (u64s beyond 2^53 become decimal strings), structs become objects (BTF),
 * bytes without a type become hex strings.
 */
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
  if (NOT_DUMPED.has(type) || m.name === ".kconfig") return undefined;
  const entries: { key: unknown; value: unknown }[] = [];
  if (typeof map.entries === "function") {
    for (const [key, value] of map.entries()) {
      entries.push({ key: jsonValue(key), value: jsonValue(value) });
      if (entries.length >= DUMP_LIMIT) break;
    }
  }
  return { name: qualify ? `${objName}.${m.name}` : m.name, type, entries };
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
