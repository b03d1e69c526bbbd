/**
 * Loads, stores and atomics through typed pointers: the region each pointer
 * kind may reach (context layout, 512-byte stack frame, map value, ring-buffer
 * record), byte-granular stack initialisation with spills, and what a load
 * yields. Helper memory arguments use the same region checks.
 */
import { isConst, sConst, sSext, sTrunc, S_UNKNOWN, type Scalar } from "./scalar.js";
import { Refusal } from "./refusal.js";
import { isPtr, scalarReg, Slot, STACK_SIZE, UNKNOWN_SCALAR, type Frame, type Ptr, type Reg, type State } from "./state.js";
import type { ContextLayout, VerifierMap } from "./types.js";

export interface MemEnv {
  readonly maps: readonly VerifierMap[];
  readonly context: ContextLayout;
  mapName(i: number): string;
  describe(r: Reg): string;
}

/** The byte range [lo, hi) a pointer access may touch, relative to its base. */
function span(p: Ptr, insnOff: number, size: number): [number, number] {
  const lo = p.off + insnOff + Number(p.vr.smin);
  const hi = p.off + insnOff + Number(p.vr.smax) + size;
  return [lo, hi];
}

const BOUND = 1 << 29;
function checkVarBounded(pc: number, reg: number, p: Ptr, env: MemEnv): void {
  if (p.vr.smin < -BigInt(BOUND) || p.vr.smax > BigInt(BOUND)) {
    throw new Refusal(pc, `${env.describe(p)} has an unbounded variable offset: bound the index before adding it`, reg);
  }
}

function inRanges(lo: number, hi: number, ranges: readonly { offset: number; size: number }[]): boolean {
  for (let b = lo; b < hi; ) {
    const r = ranges.find((x) => b >= x.offset && b < x.offset + x.size);
    if (r === undefined) return false;
    b = r.offset + r.size;
  }
  return true;
}

export type Access = "read" | "write";

/**
 * Checks that [ptr+insnOff, +size) (every offset the pointer may have) is
 * inside its region for `access`. `what` names the access in messages.
 */
export function checkRegion(env: MemEnv, st: State, pc: number, reg: number, p: Reg, insnOff: number, size: number, access: Access, what: string): void {
  void st; // kept for symmetry with the stack checks that need it
  if (!isPtr(p)) {
    if (p.k === "scalar") {
      const addr = isConst(p.s) ? ` (address 0x${BigInt.asUintN(64, p.s.umin + BigInt(insnOff)).toString(16)})` : "";
      throw new Refusal(pc, `${what} through a number${addr}, not a pointer`, reg);
    }
    throw new Refusal(pc, `${what} through r${reg}, which is ${env.describe(p)}`, reg);
  }
  if (p.k === "map_value_or_null" || p.k === "ringbuf_mem_or_null") {
    throw new Refusal(pc, `${what} through a pointer that may be NULL: compare it with 0 first`, reg);
  }
  if (p.k === "map_ptr" || p.k === "func") throw new Refusal(pc, `${what} through a ${p.k === "func" ? "function" : "map"} pointer`, reg);
  checkVarBounded(pc, reg, p, env);
  const [lo, hi] = span(p, insnOff, size);
  const where = (base: string): string => (lo === hi - size ? `${base}${lo >= 0 ? "+" : ""}${lo}` : `${base}+[${lo}, ${hi - size}]`);
  switch (p.k) {
    case "ctx": {
      if (!isConst(p.vr) && env.context.variableOffsets !== true) throw new Refusal(pc, `${what} at a variable offset into the context (${env.context.name})`, reg);
      const ranges = access === "read" ? (env.context.readable ?? [{ offset: 0, size: env.context.size }]) : (env.context.writable ?? []);
      if (lo < 0 || hi > env.context.size) {
        throw new Refusal(pc, `${what} of ${size} bytes at ${where("ctx")} outside the ${env.context.size}-byte context (${env.context.name})`, reg);
      }
      if (!inRanges(lo, hi, ranges)) {
        throw new Refusal(pc, `${what} of ${size} bytes at ${where("ctx")}: the context (${env.context.name}) is ${access === "read" ? "not readable" : "not writable"} there`, reg);
      }
      return;
    }
    case "stack":
      if (lo < -STACK_SIZE || hi > 0) {
        throw new Refusal(pc, `${what} of ${size} bytes at ${where("fp")} outside the ${STACK_SIZE}-byte stack frame [fp-${STACK_SIZE}, fp)`, reg);
      }
      return;
    case "map_value":
    case "map_key": {
      const m = env.maps[p.map!]!;
      const limit = p.k === "map_value" ? m.valueSize : m.keySize;
      if (lo < 0 || hi > limit) {
        throw new Refusal(pc, `${what} of ${size} bytes at ${where(p.k === "map_value" ? "value" : "key")} outside the ${limit}-byte ${p.k === "map_value" ? "value" : "key"} of map '${m.name}'`, reg);
      }
      if (access === "write" && p.k === "map_key") throw new Refusal(pc, `${what} into a map key (read-only)`, reg);
      if (access === "write" && m.readOnly) throw new Refusal(pc, `${what} into read-only map '${m.name}' (frozen global data)`, reg);
      return;
    }
    case "ringbuf_mem":
      if (lo < 0 || hi > p.size!) {
        throw new Refusal(pc, `${what} of ${size} bytes at ${where("record")} outside the ${p.size}-byte ring-buffer record`, reg);
      }
      return;
  }
}

/** Stack byte index of fp+off in a frame. */
const idx = (off: number): number => STACK_SIZE + off;

/** Forgets spills overlapping [lo, hi) (frame offsets): their other bytes become plain numbers. */
function breakSpills(f: Frame, lo: number, hi: number): void {
  const a = idx(lo);
  const z = idx(hi);
  // Spills sit on 4-byte units; an 8-byte one may start one unit before the range.
  for (let u = Math.max(0, (a >> 2) - 1); u * 4 < z; u++) {
    const sp = f.spills[u];
    if (sp === undefined || u * 4 + sp.size <= a) continue;
    f.spills[u] = undefined;
    for (let b = u * 4; b < u * 4 + sp.size; b++) if (f.bytes[b] === Slot.SPILL) f.bytes[b] = Slot.MISC;
  }
}

/** Stack write of `size` bytes at a fixed fp offset; `value` is the stored register (undefined: an unknown number). */
export function stackWrite(f: Frame, off: number, size: number, value: Reg | undefined): void {
  breakSpills(f, off, off + size);
  const i = idx(off);
  // 8-byte spills of anything at 8-aligned slots; 32-bit numbers at any 4-aligned offset (clang spills u32 locals so).
  if (value !== undefined && ((size === 8 && i % 8 === 0) || (size === 4 && i % 4 === 0 && value.k === "scalar"))) {
    const reg = value.k === "scalar" && size === 4 ? scalarReg(sTrunc(value.s, 32), 0) : value;
    f.spills[i >> 2] = { reg, size };
    f.bytes.fill(Slot.SPILL, i, i + size);
    return;
  }
  const zero = value !== undefined && value.k === "scalar" && isConst(value.s) && value.s.umin === 0n;
  f.bytes.fill(zero ? Slot.ZERO : Slot.MISC, i, i + size);
}

/** Variable-offset or helper write over [lo, hi): initialised bytes become numbers; uninitialised stay so (it may not be written). */
export function stackWriteRange(f: Frame, lo: number, hi: number, surely: boolean): void {
  breakSpills(f, lo, hi);
  for (let b = idx(lo); b < idx(hi); b++) {
    if (surely || f.bytes[b] !== Slot.INVALID) f.bytes[b] = Slot.MISC;
  }
}

/** All bytes of [lo, hi) initialised, or a refusal naming the first that is not. */
export function stackCheckInit(f: Frame, lo: number, hi: number, pc: number, reg: number, what: string): void {
  for (let b = idx(lo); b < idx(hi); b++) {
    if (f.bytes[b] === Slot.INVALID) {
      throw new Refusal(pc, `${what} reads uninitialised stack at fp${b - STACK_SIZE} (bytes [fp${lo}, fp${hi === 0 ? "" : hi}) must all be written first)`, reg);
    }
  }
}

/** What a load of `size` bytes from fixed offset `off` of a frame gives. */
export function stackRead(f: Frame, off: number, size: number, signed: boolean, pc: number, reg: number): Reg {
  stackCheckInit(f, off, off + size, pc, reg, `a load of ${size} bytes at fp${off}`);
  const i = idx(off);
  const sp = i % 4 === 0 ? f.spills[i >> 2] : undefined;
  if (sp !== undefined && f.bytes[i] === Slot.SPILL) {
    if (size === sp.size) return signed && sp.reg.k === "scalar" ? scalarReg(sSext(sp.reg.s, size * 8)) : sp.reg;
    if (sp.reg.k === "scalar" && size < sp.size) {
      const t = sTrunc(sp.reg.s, size * 8);
      return scalarReg(signed ? sSext(t, size * 8) : t);
    }
  }
  let zero = true;
  for (let b = i; b < i + size; b++) if (f.bytes[b] !== Slot.ZERO) zero = false;
  if (zero) return scalarReg(sConst(0n));
  return sizedUnknown(size, signed);
}

export function sizedUnknown(size: number, signed: boolean): Reg {
  if (size === 8) return UNKNOWN_SCALAR;
  const t = sTrunc(S_UNKNOWN, size * 8);
  return scalarReg(signed ? sSext(t, size * 8) : t);
}

/** A constant read from a frozen map's bytes, when known. */
export function frozenRead(m: VerifierMap, at: number, size: number, signed: boolean): Scalar | undefined {
  if (!m.readOnly || m.initialData === undefined || at < 0 || at + size > m.initialData.length) return undefined;
  let v = 0n;
  for (let b = size - 1; b >= 0; b--) v = (v << 8n) | BigInt(m.initialData[at + b]!);
  return signed ? sSext(sConst(v), size * 8) : sConst(v);
}
