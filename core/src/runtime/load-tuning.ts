/**
 * What libbpf lets a skeleton change between open and load, applied to the
 * loader's specs before any map exists:
 *
 * - `rodata`: values of `const volatile` globals (bpf_map__initial_value /
 *   skel->rodata->x = ...). `.rodata` is frozen right after it is filled
 *   (object-maps.ts), so this is the only moment they can be set. Variables
 *   are found by name in the BTF DATASEC of every read-only global data
 *   section except `.kconfig` (whose values come from the `kconfig` option).
 * - `maxEntries`: a map's max_entries (bpf_map__set_max_entries).
 *
 * Errors are BAD_ARGUMENT with detail.field ("rodata.target_pid",
 * "maxEntries.counts") so a config file can point at the line that set it.
 */
import { BpfhookError } from "../errors.js";
import type { BtfTypeInfo, MapSpec } from "../loader/index.js";

export type RodataValue = boolean | number | bigint | string;

const PROG_ARRAY = 3;

function fail(object: string, field: string, symbol: string, message: string): never {
  throw new BpfhookError("BAD_ARGUMENT", `${object}: ${field}: ${message}`, { field, symbol, file: object });
}

/** Returns specs with `maxEntries` applied (new objects; the loader's stay as they were). */
export function applyMaxEntries(
  specs: MapSpec[],
  sizes: Readonly<Record<string, number>>,
  object: string,
): MapSpec[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const out = new Map<string, MapSpec>();
  for (const [name, value] of Object.entries(sizes)) {
    const field = `maxEntries.${name}`;
    const spec = byName.get(name);
    if (!spec) fail(object, field, name, `no map '${name}' (maps: ${specs.map((s) => s.name).join(", ") || "none"})`);
    if (spec.initialData !== undefined) {
      // Global data is one value (entry 0) whose layout the programs were compiled against.
      fail(object, field, name, `'${name}' is global data (section ${spec.section}): it has exactly one entry`);
    }
    if (!Number.isSafeInteger(value) || value < 1 || value > 0xffffffff) {
      fail(object, field, name, `max_entries must be an integer from 1 to 4294967295, got ${String(value)}`);
    }
    if (spec.type === PROG_ARRAY && value > 1 << 20) {
      fail(object, field, name, `a program array holds at most 1048576 slots, got ${value}`);
    }
    out.set(name, { ...spec, maxEntries: value });
  }
  return specs.map((s) => out.get(s.name) ?? s);
}

/**
 * Returns specs whose read-only global data holds `values`. Each value must
 * fit its variable: integers (range by size and sign, bigint or decimal/hex
 * string for 64-bit ones), bools, enums (number or enumerator name), chars
 * (number or one-byte string) and char arrays (a string that fits, NUL
 * padded).
 */
export function applyRodata(
  specs: MapSpec[],
  values: Readonly<Record<string, RodataValue>>,
  object: string,
): MapSpec[] {
  const patched = new Map<MapSpec, Uint8Array>();
  for (const [name, value] of Object.entries(values)) {
    const field = `rodata.${name}`;
    let found: { spec: MapSpec; offset: number; type: BtfTypeInfo } | undefined;
    const known: string[] = [];
    for (const spec of specs) {
      if (!spec.readonly || spec.initialData === undefined || spec.name === ".kconfig") continue;
      for (const m of spec.valueType?.kind === "datasec" ? (spec.valueType.members ?? []) : []) {
        known.push(m.name);
        if (m.name === name) found = { spec, offset: m.offset, type: m.type };
      }
    }
    if (!found) {
      fail(
        object,
        field,
        name,
        `no const volatile variable '${name}' in .rodata (BTF needed: build with -g; variables: ${known.join(", ") || "none"})`,
      );
    }
    const bytes = encodeValue(found.type, value, (msg) => fail(object, field, name, msg));
    if (found.offset + bytes.length > found.spec.initialData!.length) {
      fail(object, field, name, `variable lies outside ${found.spec.section} (offset ${found.offset})`);
    }
    let data = patched.get(found.spec);
    if (!data) {
      data = Uint8Array.from(found.spec.initialData!);
      patched.set(found.spec, data);
    }
    data.set(bytes, found.offset);
  }
  return specs.map((s) => {
    const data = patched.get(s);
    return data ? { ...s, initialData: data } : s;
  });
}

function typeName(t: BtfTypeInfo): string {
  return t.name || t.kind;
}

function toBigInt(value: RodataValue, bad: (m: string) => never, what: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) bad(`${what} needs an integer, got ${value}`);
    return BigInt(value);
  }
  if (typeof value === "string" && /^-?(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) {
    return value.startsWith("-") ? -BigInt(value.slice(1)) : BigInt(value);
  }
  return bad(`${what} needs an integer, got ${JSON.stringify(value)}`);
}

function encodeValue(type: BtfTypeInfo, value: RodataValue, bad: (m: string) => never): Uint8Array {
  const size = type.size;
  if (type.kind === "array" && type.element && type.element.size === 1 && (type.element.kind === "int")) {
    if (typeof value !== "string") bad(`${typeName(type)} is a char[${type.length}]: give a string, got ${typeof value}`);
    const bytes = Buffer.from(value, "utf8");
    if (bytes.length > size) bad(`"${value}" is ${bytes.length} bytes, char[${type.length}] holds ${size}`);
    const out = new Uint8Array(size);
    out.set(bytes);
    return out;
  }
  if (type.kind === "int" && type.bool) {
    if (typeof value !== "boolean") bad(`${typeName(type)} is a bool: give true or false, got ${JSON.stringify(value)}`);
    return Uint8Array.of(value ? 1 : 0);
  }
  let n: bigint;
  if (type.kind === "enum") {
    const e = typeof value === "string" ? type.enumValues?.find((v) => v.name === value) : undefined;
    n = e ? e.value : toBigInt(value, bad, `enum ${typeName(type)}`);
  } else if (type.kind === "int") {
    if (typeof value === "boolean") bad(`${typeName(type)} is an integer, got ${value}`);
    // clang marks no char in BTF (no BTF_INT_CHAR): any 1-byte int takes a 1-byte string.
    if (size === 1 && typeof value === "string" && Buffer.byteLength(value) === 1) n = BigInt(Buffer.from(value)[0]!);
    else n = toBigInt(value, bad, typeName(type));
  } else {
    return bad(`${typeName(type)} (${type.kind}) can't be set from a config: integers, bools, enums, chars and char arrays can`);
  }
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) bad(`${typeName(type)} has size ${size}: not an integer size`);
  const bits = BigInt(size * 8);
  const signed = type.signed === true;
  const min = signed ? -(1n << (bits - 1n)) : 0n;
  const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  if (n < min || n > max) bad(`${n} does not fit ${typeName(type)} (${signed ? "signed" : "unsigned"}, ${size} bytes: ${min}..${max})`);
  const out = Buffer.alloc(size);
  const u = BigInt.asUintN(size * 8, n);
  for (let i = 0; i < size; i++) out[i] = Number((u >> BigInt(8 * i)) & 0xffn);
  return out;
}
