/**
 * The abstract machine state: registers (typed values) and stack bytes per
 * frame, the ring-buffer records the path holds, and the subsumption test
 * that lets a state be pruned when one already verified at the same pc
 * covers it (the kernel's states_equal / regsafe / stacksafe).
 */
import { formatScalar, isConst, sConst, sEqual, sWithin, S_UNKNOWN, type Scalar } from "./scalar.js";

export type PtrKind =
  | "ctx"
  | "stack"
  | "map_ptr"
  | "map_value"
  | "map_value_or_null"
  | "map_key"
  | "ringbuf_mem"
  | "ringbuf_mem_or_null"
  | "func";

/**
 * One register's abstract value. Pointers: base + off (constant) + vr (the
 * variable part, a scalar; constant 0 when there is none).
 */
export type Reg =
  | { readonly k: "uninit"; readonly why?: string }
  | { readonly k: "released"; readonly why: string }
  | { readonly k: "scalar"; readonly s: Scalar; readonly id: number }
  | Ptr;

export interface Ptr {
  readonly k: PtrKind;
  readonly off: number;
  readonly vr: Scalar;
  /** map_ptr, map_value(_or_null), map_key: the map index. */
  readonly map?: number;
  /** stack: the frame index (0 = the program's own function). */
  readonly frame?: number;
  /** _or_null kinds: copies with the same id are refined together by a null check. */
  readonly id?: number;
  /** ringbuf kinds: the reference (the reserve) the record belongs to. */
  readonly ref?: number;
  /** ringbuf_mem: the record's size. */
  readonly size?: number;
  /** func: the callback's pc. */
  readonly target?: number;
}

export const UNINIT: Reg = { k: "uninit" };
export const scalarReg = (s: Scalar, id = 0): Reg => ({ k: "scalar", s, id });
export const UNKNOWN_SCALAR = scalarReg(S_UNKNOWN);
export const ZERO_VR = sConst(0n);
export const isPtr = (r: Reg): r is Ptr => r.k !== "uninit" && r.k !== "released" && r.k !== "scalar";

/** Stack byte kinds. */
export const enum Slot {
  INVALID = 0,
  MISC = 1,
  ZERO = 2,
  SPILL = 3,
}

export const STACK_SIZE = 512;
export const MAX_FRAMES = 8;

export interface Spill {
  readonly reg: Reg;
  /** 8, or 4 for a 32-bit scalar spilled at the slot's start. */
  readonly size: number;
}

export class Frame {
  constructor(
    public regs: Reg[],
    /** Byte kinds, index 0 = fp-512. */
    public bytes: Uint8Array,
    /** Per 4-byte unit, where a spill starts (8-byte spills start on even units). */
    public spills: (Spill | undefined)[],
    /** The call instruction that made this frame (-1 for the program's own). */
    readonly callsite: number,
    /** A callback frame returns to its helper call (another iteration may follow). */
    readonly callback: boolean,
  ) {}

  static fresh(callsite: number, callback: boolean): Frame {
    const regs = Array.from<Reg>({ length: 11 }).fill(UNINIT);
    return new Frame(regs, new Uint8Array(STACK_SIZE), Array.from<Spill | undefined>({ length: STACK_SIZE / 4 }).fill(undefined), callsite, callback);
  }

  clone(): Frame {
    return new Frame(this.regs.slice(), this.bytes.slice(), this.spills.slice(), this.callsite, this.callback);
  }
}

export class State {
  constructor(
    public frames: Frame[],
    /** Acquired ring-buffer records: ref id -> the reserve's pc. */
    public refs: Map<number, number>,
    public pc: number,
    /** The checkpoint this path last passed (pruning bookkeeping). */
    public parent: Checkpoint | undefined,
    /** The last branch pcs (oldest first), for messages. */
    public path: number[],
    /** The last back edge taken [from, to], for "loop not proven to end". */
    public backEdge: [number, number] | undefined,
    /** Just back from a callback, at its helper call (another iteration may follow). */
    public fromCallback = false,
    /** Instructions and jumps since this path last recorded a checkpoint. */
    public insnsSince = 0,
    public jumpsSince = 0,
  ) {}

  get top(): Frame {
    return this.frames[this.frames.length - 1]!;
  }

  clone(): State {
    return new State(this.frames.map((f) => f.clone()), new Map(this.refs), this.pc, this.parent, this.path.slice(), this.backEdge, this.fromCallback, this.insnsSince, this.jumpsSince);
  }
}

/** A state kept at a prune point. branches: paths below it still being explored (0: complete). */
export interface Checkpoint {
  /** Dropped once the checkpoint leaves its pc's list (only the branch count is still needed). */
  state: State | undefined;
  branches: number;
  readonly parent: Checkpoint | undefined;
}

/** Id maps old -> new and new -> old, so that the correspondence is one to one. */
class IdMap {
  private readonly fwd = new Map<number, number>();
  private readonly back = new Map<number, number>();
  private fresh = -1;
  /** Reused across comparisons: allocation dominated pruning otherwise. */
  reset(): this {
    if (this.fwd.size > 0) {
      this.fwd.clear();
      this.back.clear();
    }
    this.fresh = -1;
    return this;
  }
  check(oldId: number, newId: number): boolean {
    if (oldId === 0) return true;
    if (newId === 0) newId = this.fresh--;
    const f = this.fwd.get(oldId);
    if (f !== undefined) return f === newId;
    if (this.back.has(newId)) return false;
    this.fwd.set(oldId, newId);
    this.back.set(newId, oldId);
    return true;
  }
  mapped(oldId: number): number | undefined {
    return this.fwd.get(oldId);
  }
}

const ID_MAP = new IdMap();
const REF_MAP = new IdMap();

function regSafe(o: Reg, n: Reg, ids: IdMap, refs: IdMap, exact: boolean): boolean {
  if (o.k === "uninit") return exact ? n.k === "uninit" : true;
  if (o.k === "released" || n.k === "released") return o.k === n.k;
  if (o.k === "scalar") {
    if (n.k !== "scalar") return false;
    return (exact ? sEqual(o.s, n.s) : sWithin(o.s, n.s)) && (isConst(o.s) || ids.check(o.id, n.id));
  }
  if (n.k !== o.k) return false;
  const np = n as Ptr;
  if (o.off !== np.off || o.map !== np.map || o.frame !== np.frame || o.size !== np.size || o.target !== np.target) return false;
  if (!(exact ? sEqual(o.vr, np.vr) : sWithin(o.vr, np.vr))) return false;
  if (o.id !== undefined && !ids.check(o.id, np.id ?? 0)) return false;
  if (o.ref !== undefined && !refs.check(o.ref, np.ref ?? 0)) return false;
  return true;
}

/** The spill covering byte i of a frame. */
function spillAt(f: Frame, i: number): Spill | undefined {
  const u = i >> 2;
  const here = f.spills[u];
  if (here !== undefined) return here;
  const before = u > 0 ? f.spills[u - 1] : undefined;
  return before !== undefined && before.size === 8 ? before : undefined;
}

/** Bytes that read as a number: plain, zero, or part of a spilled number. */
function numberByte(f: Frame, i: number): boolean {
  const b = f.bytes[i]!;
  return b === Slot.MISC || b === Slot.ZERO || (b === Slot.SPILL && spillAt(f, i)?.reg.k === "scalar");
}

/**
 * units: the frame's relevant 4-byte units (cfg.ts), or undefined for all.
 * Where a unit's value decides nothing, any number matches any number.
 */
function stackSafe(o: Frame, n: Frame, ids: IdMap, refs: IdMap, exact: boolean, units: Uint32Array | undefined, at: number): boolean {
  for (let i = 0; i < STACK_SIZE; i++) {
    const ob = o.bytes[i]!;
    const nb = n.bytes[i]!;
    if (ob === Slot.INVALID) {
      if (exact && nb !== Slot.INVALID) return false;
      continue;
    }
    if (units !== undefined && (units[at + (i >> 7)]! & (1 << ((i >> 2) & 31))) === 0 && numberByte(o, i)) {
      if (!numberByte(n, i)) return false;
      continue;
    }
    if (ob === Slot.SPILL) {
      const os = i % 4 === 0 ? o.spills[i / 4] : undefined;
      if (os === undefined) {
        if (nb !== Slot.SPILL) return false;
        continue; // inside a spill checked at its first byte
      }
      const ns = nb === Slot.SPILL ? n.spills[i / 4] : undefined;
      if (ns === undefined || ns.size !== os.size || !regSafe(os.reg, ns.reg, ids, refs, exact)) return false;
      continue;
    }
    if (ob === nb) continue;
    if (exact) return false;
    // Old read these bytes as an unknown number: anything initialised that reads as a number is covered.
    if (ob === Slot.MISC && (nb === Slot.ZERO || (nb === Slot.SPILL && spillAt(n, i)?.reg.k === "scalar"))) continue;
    return false;
  }
  return true;
}

/**
 * Whether every execution from `n` is one from `o` (so o's verdict covers
 * n). liveRegs(frameIndex) gives the registers live in each frame and
 * those of them whose value matters (cfg.ts relevance).
 * exact: the same state (infinite loop detection).
 */
export function statesEqual(
  o: State,
  n: State,
  liveRegs: (frame: number) => readonly [number, number],
  exact: boolean,
  stackUnits?: { readonly sets: Uint32Array; readonly at: number },
): boolean {
  if (o.frames.length !== n.frames.length || o.refs.size !== n.refs.size) return false;
  const ids = ID_MAP.reset();
  const refs = REF_MAP.reset();
  for (let f = 0; f < o.frames.length; f++) {
    const of = o.frames[f]!;
    const nf = n.frames[f]!;
    if (of.callsite !== nf.callsite) return false;
    const [live, relevant] = liveRegs(f);
    for (let r = 0; r < 10; r++) {
      if ((live & (1 << r)) === 0) continue;
      const a = of.regs[r]!;
      const b = nf.regs[r]!;
      // A number whose value decides nothing from here on: any number will do.
      if ((relevant & (1 << r)) === 0 && a.k === "scalar" && b.k === "scalar") continue;
      if (!regSafe(a, b, ids, refs, exact)) return false;
    }
  }
  const top = o.frames.length - 1;
  for (let f = 0; f <= top; f++) {
    // Callers' frames may be read through pointers by the running frame: all of them count.
    const units = f === top ? stackUnits?.sets : undefined;
    if (!stackSafe(o.frames[f]!, n.frames[f]!, ids, refs, exact, units, stackUnits?.at ?? 0)) return false;
  }
  for (const r of o.refs.keys()) {
    const m = refs.mapped(r);
    if (m !== undefined && !n.refs.has(m)) return false;
  }
  return true;
}

/** For messages: "ctx+0", "fp-8", "map_value(counts+8)", "scalar(umax=255)". */
export function formatReg(r: Reg, mapName: (i: number) => string): string {
  const offs = (p: Ptr): string => {
    const base = p.off === 0 ? "" : p.off > 0 ? `+${p.off}` : String(p.off);
    return isConst(p.vr) && p.vr.umin === 0n ? base : `${base}+${formatScalar(p.vr)}`;
  };
  switch (r.k) {
    case "uninit":
      return r.why ?? "not initialised";
    case "released":
      return r.why;
    case "scalar":
      return formatScalar(r.s);
    case "ctx":
      return `ctx${offs(r) || "+0"}`;
    case "stack":
      return `fp${offs(r) || "-0"}${r.frame !== undefined && r.frame > 0 ? ` (frame ${r.frame})` : ""}`;
    case "map_ptr":
      return `map_ptr(${mapName(r.map!)})`;
    case "map_value":
    case "map_value_or_null":
    case "map_key":
      return `${r.k}(${mapName(r.map!)}${offs(r)})`;
    case "ringbuf_mem":
    case "ringbuf_mem_or_null":
      return `${r.k}(size=${r.size}${offs(r)})`;
    case "func":
      return `func(pc ${r.target})`;
  }
}
