/**
 * Checks what callers hand to loadProgram / exec before any of it reaches
 * native code, so a mistake comes back as BAD_ARGUMENT naming the option
 * instead of a vague native error (or a crash).
 */
import { BpfhookError } from "../errors.js";

export type VmBackend = "interpreter" | "jit";
export const VM_BACKENDS: readonly VmBackend[] = ["interpreter", "jit"];

export interface VmOptions {
  /**
   * Check every load and store against the stack, the context and registered
   * regions; a bad access throws VM_FAULT instead of touching memory. Off by
   * default (programs are trusted to be verified).
   */
  checked?: boolean;
  /** Instructions per run before VM_FAULT (fault "budget"); 0 or absent = unlimited. */
  budget?: number | bigint;
  /** Helper id -> name of a natively implemented helper, e.g. { 5: "unwind" }. */
  helpers?: Readonly<Record<number, string>>;
  /** Program name that error messages start with ("prog 'sum': pc 3: ..."). */
  name?: string;
}

/** What the native layer needs, in its types. */
export interface CheckedVmOptions {
  checked: boolean;
  budget: bigint;
  helpers: [id: number, name: string][];
  name?: string;
}

const KNOWN = new Set(["checked", "budget", "helpers", "name"]);
const MAX_HELPER_ID = 65535; // bh::kMaxHelperId

function bad(fn: string, message: string): BpfhookError {
  return new BpfhookError("BAD_ARGUMENT", `${fn}: ${message}`);
}

const show = (v: unknown): string => (typeof v === "bigint" ? `${v}n` : JSON.stringify(v) ?? String(v));

export function checkCode(fn: string, code: Uint8Array): void {
  if (!(code instanceof Uint8Array)) throw bad(fn, "code must be a Buffer, a Uint8Array or an Insn[]");
  if (code.length === 0 || code.length % 8 !== 0) {
    throw bad(fn, `code must be a non-empty multiple of 8 bytes, got ${code.length}`);
  }
}

export function checkVmOptions(fn: string, opts: unknown, helperNames: readonly string[]): CheckedVmOptions {
  if (opts === undefined) return { checked: false, budget: 0n, helpers: [] };
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) throw bad(fn, "options must be an object");
  const o = opts as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) throw bad(fn, `unknown option '${key}' (known: ${[...KNOWN].join(", ")})`);
  }

  if (o.checked !== undefined && typeof o.checked !== "boolean") {
    throw bad(fn, `option 'checked' must be a boolean, got ${show(o.checked)}`);
  }

  let budget = 0n;
  if (typeof o.budget === "number" && Number.isSafeInteger(o.budget) && o.budget >= 0) budget = BigInt(o.budget);
  else if (typeof o.budget === "bigint" && o.budget >= 0n && o.budget < 1n << 64n) budget = o.budget;
  else if (o.budget !== undefined) {
    throw bad(fn, `option 'budget' must be a non-negative integer (instructions per run), got ${show(o.budget)}`);
  }

  const helpers: [number, string][] = [];
  if (o.helpers !== undefined) {
    if (typeof o.helpers !== "object" || o.helpers === null || Array.isArray(o.helpers)) {
      throw bad(fn, "option 'helpers' must be an object of helper id -> native helper name");
    }
    for (const [key, name] of Object.entries(o.helpers)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || id > MAX_HELPER_ID) {
        throw bad(fn, `option 'helpers': id '${key}' must be an integer in [0, ${MAX_HELPER_ID}]`);
      }
      if (typeof name !== "string" || !helperNames.includes(name)) {
        throw bad(fn, `option 'helpers[${key}]': unknown native helper ${show(name)} (known: ${helperNames.join(", ")})`);
      }
      helpers.push([id, name]);
    }
  }

  if (o.name !== undefined && typeof o.name !== "string") throw bad(fn, `option 'name' must be a string, got ${show(o.name)}`);
  return {
    checked: o.checked === true,
    budget,
    helpers,
    ...(typeof o.name === "string" ? { name: o.name } : {}),
  };
}

export function checkBackend(fn: string, backend: unknown): VmBackend {
  if (!VM_BACKENDS.includes(backend as VmBackend)) {
    throw bad(fn, `backend must be ${VM_BACKENDS.map((b) => `'${b}'`).join(" or ")}, got ${show(backend)}`);
  }
  return backend as VmBackend;
}

export function checkCtx(fn: string, ctx: unknown): Uint8Array | null {
  if (ctx === undefined || ctx === null) return null;
  if (!(ctx instanceof Uint8Array)) throw bad(fn, `ctx must be a Buffer, a Uint8Array or null, got ${typeof ctx}`);
  return ctx;
}
