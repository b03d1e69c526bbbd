/**
 * Calls: helper arguments against their signatures (memory + size pairs,
 * map pointers, keys and values, the context, constant strings, ring-buffer
 * records and their release), what a helper returns, and the frames of
 * subprograms and callbacks.
 */
import { describeMissingHelper } from "../kernel-names.js";
import { checkRegion, stackCheckInit, stackWriteRange, type MemEnv } from "./memory.js";
import { Refusal } from "./refusal.js";
import { isConst, sConst, sRangeU, type Scalar } from "./scalar.js";
import { Frame, isPtr, MAX_FRAMES, scalarReg, UNKNOWN_SCALAR, ZERO_VR, type Ptr, type Reg, type State } from "./state.js";
import type { HelperSignature } from "./types.js";

export interface CallEnv extends MemEnv {
  readonly helpers: ReadonlyMap<number, HelperSignature>;
  /** A register read as an operand: refuses uninitialised and released ones. */
  use(st: State, pc: number, r: number): Reg;
  newId(): number;
  /** Queues another path (a fork of st). */
  fork(st: State): void;
}

const MAX_SIZE = 1n << 29n;

/** Clobbers r1-r5 after a call; r0 is set by the caller of this. */
export function clobberArgs(st: State, pc: number): void {
  for (let r = 1; r <= 5; r++) st.top.regs[r] = { k: "uninit", why: `not initialised (clobbered by the call at pc ${pc})` };
}

function memArg(env: CallEnv, st: State, pc: number, reg: number, p: Reg, size: Scalar, access: "read" | "write", what: string, partial = false): void {
  if (size.umax === 0n) return;
  checkRegion(env, st, pc, reg, p, 0, Number(size.umax), access, what);
  const q = p as Ptr;
  if (q.k !== "stack") return;
  const f = st.frames[q.frame!]!;
  const lo = q.off + Number(q.vr.smin);
  const hi = q.off + Number(q.vr.smax) + Number(size.umax);
  if (access === "read") {
    stackCheckInit(f, lo, hi, pc, reg, what);
  } else if (isConst(q.vr) && !partial) {
    stackWriteRange(f, lo, lo + Number(size.umin), true);
    stackWriteRange(f, lo + Number(size.umin), hi, false);
  } else {
    stackWriteRange(f, lo, hi, false);
  }
}

function sizeArg(env: CallEnv, st: State, pc: number, reg: number, zeroOk: boolean, name: string): Scalar {
  const r = env.use(st, pc, reg);
  if (r.k !== "scalar") throw new Refusal(pc, `${name}: the size in r${reg} must be a number`, reg);
  if (r.s.smin < 0n) throw new Refusal(pc, `${name}: the size in r${reg} may be negative; bound it (if (n > 0 && n <= sizeof buf))`, reg);
  if (r.s.umax >= MAX_SIZE) throw new Refusal(pc, `${name}: the size in r${reg} is unbounded; bound it before the call`, reg);
  if (!zeroOk && r.s.umin === 0n) throw new Refusal(pc, `${name}: the size in r${reg} may be 0, which this argument does not allow`, reg);
  return r.s;
}

/** Marks every copy of a released record unusable. */
function release(st: State, ref: number, pc: number): void {
  st.refs.delete(ref);
  const dead: Reg = { k: "released", why: `a ring-buffer record released at pc ${pc}` };
  for (const f of st.frames) {
    f.regs = f.regs.map((r) => (isPtr(r) && r.ref === ref ? dead : r));
    f.spills = f.spills.map((s) => (s !== undefined && isPtr(s.reg) && s.reg.ref === ref ? { ...s, reg: dead } : s));
  }
}

function constStr(env: CallEnv, pc: number, reg: number, p: Reg, name: string): void {
  if (p.k !== "map_value" || !isConst(p.vr)) {
    throw new Refusal(pc, `${name}: r${reg} must point into a read-only map value (a string constant in .rodata)`, reg);
  }
  const m = env.maps[p.map!]!;
  const at = p.off + Number(p.vr.umin);
  if (!m.readOnly) throw new Refusal(pc, `${name}: r${reg} points into map '${m.name}', which is not read-only: the string could change`, reg);
  if (m.initialData === undefined) throw new Refusal(pc, `${name}: the bytes of map '${m.name}' are not known, so the string's NUL cannot be proven`, reg);
  if (at < 0 || at >= m.valueSize) throw new Refusal(pc, `${name}: r${reg} is outside map '${m.name}'`, reg);
  for (let i = at; i < m.valueSize && i < m.initialData.length; i++) if (m.initialData[i] === 0) return;
  throw new Refusal(pc, `${name}: the string at offset ${at} of map '${m.name}' has no NUL before the end of the value`, reg);
}

export interface HelperResult {
  /** The callback to enter, for helpers that call one. */
  callback?: { target: number; args: Reg[] };
}

/** Checks a helper call and applies its effects on arguments and r0..r5. */
export function callHelper(env: CallEnv, st: State, pc: number, id: number): HelperResult {
  const sig = env.helpers.get(id);
  if (sig === undefined) throw new Refusal(pc, `call to ${describeMissingHelper(id)}`);
  const name = sig.name;
  const regs = st.top.regs;
  let map: number | undefined;
  let pendingMem: { reg: number; p: Reg; access: "read" | "write"; nullOk: boolean } | undefined;
  let record: Ptr | undefined;
  let target: number | undefined;
  const mapOf = (reg: number): number => {
    if (map === undefined) throw new Refusal(pc, `${name}: r${reg} needs the map argument first`, reg);
    return map;
  };
  const fixedMem = (reg: number, size: number, access: "read" | "write", what: string): void => {
    const p = env.use(st, pc, reg);
    memArg(env, st, pc, reg, p, sConst(BigInt(size)), access, `${name}: ${what} (r${reg})`, sig.partialWrite === true);
  };
  for (let a = 0; a < 5; a++) {
    const kind = sig.args[a] ?? "none";
    const reg = a + 1;
    switch (kind) {
      case "none":
        break;
      case "anything":
        env.use(st, pc, reg);
        break;
      case "ptr_to_mem":
      case "ptr_to_mem_or_null":
      case "ptr_to_uninit_mem":
        pendingMem = { reg, p: env.use(st, pc, reg), access: kind === "ptr_to_uninit_mem" ? "write" : "read", nullOk: kind === "ptr_to_mem_or_null" };
        break;
      case "const_size":
      case "const_size_or_zero": {
        const size = sizeArg(env, st, pc, reg, kind === "const_size_or_zero", name);
        if (pendingMem === undefined) break;
        const { p, access, nullOk } = pendingMem;
        if (nullOk && p.k === "scalar" && isConst(p.s) && p.s.umin === 0n) {
          if (size.umax !== 0n) throw new Refusal(pc, `${name}: r${pendingMem.reg} is NULL but the size in r${reg} may be non-zero`, reg);
        } else {
          memArg(env, st, pc, pendingMem.reg, p, size, access, `${name}: ${access === "write" ? "buffer" : "memory"} of up to ${size.umax} bytes (r${pendingMem.reg})`, sig.partialWrite === true);
        }
        pendingMem = undefined;
        break;
      }
      case "ptr_to_long":
        fixedMem(reg, 8, "write", "8-byte result");
        break;
      case "const_map_ptr": {
        const p = env.use(st, pc, reg);
        if (p.k !== "map_ptr") throw new Refusal(pc, `${name}: r${reg} must be a map (lddw of a map), not ${env.describe(p)}`, reg);
        const m = env.maps[p.map!]!;
        if (sig.mapTypes !== undefined && !sig.mapTypes.includes(m.type)) {
          throw new Refusal(pc, `${name}: map '${m.name}' has type ${m.type}, which this helper does not take`, reg);
        }
        map = p.map!;
        break;
      }
      case "ptr_to_map_key":
        fixedMem(reg, env.maps[mapOf(reg)]!.keySize, "read", `key of map '${env.maps[mapOf(reg)]!.name}'`);
        break;
      case "ptr_to_map_value":
        fixedMem(reg, env.maps[mapOf(reg)]!.valueSize, "read", `value of map '${env.maps[mapOf(reg)]!.name}'`);
        break;
      case "ptr_to_uninit_map_value":
        fixedMem(reg, env.maps[mapOf(reg)]!.valueSize, "write", `value buffer of map '${env.maps[mapOf(reg)]!.name}'`);
        break;
      case "ptr_to_ctx": {
        const p = env.use(st, pc, reg);
        if (p.k !== "ctx" || p.off !== 0 || !isConst(p.vr) || p.vr.umin !== 0n) {
          throw new Refusal(pc, `${name}: r${reg} must be the context pointer as the program received it, not ${env.describe(p)}`, reg);
        }
        break;
      }
      case "ptr_to_const_str":
        constStr(env, pc, reg, env.use(st, pc, reg), name);
        break;
      case "ptr_to_ringbuf_mem": {
        const p = env.use(st, pc, reg);
        if (p.k === "ringbuf_mem_or_null") throw new Refusal(pc, `${name}: the record in r${reg} may be NULL: compare it with 0 first`, reg);
        if (p.k !== "ringbuf_mem") throw new Refusal(pc, `${name}: r${reg} must be a record from bpf_ringbuf_reserve, not ${env.describe(p)}`, reg);
        if (p.off !== 0 || !isConst(p.vr) || p.vr.umin !== 0n) throw new Refusal(pc, `${name}: pass the record as bpf_ringbuf_reserve returned it (r${reg} is ${env.describe(p)})`, reg);
        record = p;
        break;
      }
      case "ptr_to_func": {
        const p = env.use(st, pc, reg);
        if (p.k !== "func") throw new Refusal(pc, `${name}: r${reg} must be a function (a callback), not ${env.describe(p)}`, reg);
        target = p.target!;
        break;
      }
      case "ptr_to_stack_or_null": {
        const p = env.use(st, pc, reg);
        const isNull = p.k === "scalar" && isConst(p.s) && p.s.umin === 0n;
        if (!isNull && (p.k !== "stack" || !isConst(p.vr))) {
          throw new Refusal(pc, `${name}: r${reg} must be NULL or a pointer to the stack at a constant offset, not ${env.describe(p)}`, reg);
        }
        break;
      }
    }
  }
  if (sig.tailCall && st.refs.size > 0) {
    throw new Refusal(pc, `${name}: a ring-buffer record reserved at pc ${[...st.refs.values()][0]} is still held; submit or discard it before the tail call`);
  }
  let callback: HelperResult["callback"];
  if (sig.callback !== undefined) {
    if (target === undefined) throw new Refusal(pc, `${name}: no callback`);
    if (st.frames.length >= MAX_FRAMES) throw new Refusal(pc, `${name}: the callback would need more than ${MAX_FRAMES} frames`);
    const ctxArg = regs[sig.callback === "loop" ? 3 : 3]!;
    if (sig.callback === "loop") {
      callback = { target, args: [scalarReg(sRangeU(0n, (1n << 23n) - 1n)), ctxArg] };
    } else {
      const m = mapOf(1);
      const base = { off: 0, vr: ZERO_VR, map: m };
      callback = { target, args: [{ k: "map_ptr", ...base }, { k: "map_key", ...base }, { k: "map_value", ...base }, ctxArg] };
    }
  }
  // Effects: release, then r0.
  if (sig.releasesRecord && record !== undefined) release(st, record.ref!, pc);
  let r0: Reg = UNKNOWN_SCALAR;
  if (sig.ret === "map_value_or_null") {
    r0 = { k: "map_value_or_null", off: 0, vr: ZERO_VR, map: mapOf(1), id: env.newId() };
  } else if (sig.ret === "ringbuf_mem_or_null") {
    const sizeReg = (sig.retSizeArg ?? 1) + 1;
    const s = env.use(st, pc, sizeReg);
    if (s.k !== "scalar" || !isConst(s.s)) {
      throw new Refusal(pc, `${name}: the record size in r${sizeReg} must be a known constant, not ${env.describe(s)}`, sizeReg);
    }
    if (s.s.umin === 0n || s.s.umin >= MAX_SIZE) throw new Refusal(pc, `${name}: record size ${s.s.umin} out of range`, sizeReg);
    const ref = env.newId();
    st.refs.set(ref, pc);
    r0 = { k: "ringbuf_mem_or_null", off: 0, vr: ZERO_VR, id: ref, ref, size: Number(s.s.umin) };
  }
  regs[0] = r0;
  if (callback === undefined) clobberArgs(st, pc);
  return callback === undefined ? {} : { callback };
}

/** Enters a subprogram or callback: a new frame with r1.. set to args. */
export function enterFrame(st: State, callsite: number, target: number, args: Reg[], callback: boolean): void {
  if (st.frames.length >= MAX_FRAMES) {
    throw new Refusal(callsite, `call depth: more than ${MAX_FRAMES} frames (the VM's limit)`);
  }
  const f = Frame.fresh(callsite, callback);
  args.forEach((a, i) => (f.regs[i + 1] = a));
  f.regs[10] = { k: "stack", off: 0, vr: ZERO_VR, frame: st.frames.length };
  st.frames.push(f);
  st.pc = target;
}
