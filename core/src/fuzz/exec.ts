/**
 * Runs one fuzzed program the way the differential fuzzer judges it (in a
 * worker process: a fast-mode run may crash it).
 *
 *   verifyProgram(standard helpers, FUZZ_MAPS, FUZZ_CONTEXT)
 *   accepted -> interpreter and JIT in checked mode with a budget: a fault
 *               there means the program is unsafe on this input, and it never
 *               reaches fast mode (it would crash or hang the worker).
 *               Otherwise interpreter and JIT in fast mode (no checks, no
 *               budget). All four must agree on r0, fault, maps and context.
 *   refused  -> interpreter and JIT in checked mode with a budget: whether
 *               the checks fault where the verifier said (a statistic), and
 *               both backends must agree.
 *
 * Every run starts from the same maps (fresh ones, with the same contents)
 * and context; the context is one buffer reused, so its address is the same
 * in every run (and map value addresses may differ: programs whose results
 * depend on them leak addresses, which the ISA leaves undefined).
 */
import { decodeInsns, encodeInsns, type Insn } from "../asm/insn.js";
import { BpfhookError } from "../errors.js";
import type { NativeAddon, NativeMapHandle, NativeProgram, NativeRegionHandle, NativeRuntime } from "../native/addon-types.js";
import { native } from "../native/binding.js";
import { standardHelpers } from "../verifier/helpers.js";
import type { HelperSignature, VerifyResult } from "../verifier/types.js";
import { verifyProgram } from "../verifier/verify.js";
import { findUndefinedBehaviour } from "./definedness.js";
import { FUZZ_CONTEXT, FUZZ_MAPS, INITIAL_HASH, initialArrayValue, initialCtx } from "./env.js";

/** Instructions a checked run may execute before it counts as a hang. */
export const CHECKED_BUDGET = 1_000_000;

const FAULT_NAMES = ["none", "out_of_bounds", "budget", "call_depth", "bad_helper", "helper_exit", "helper_arg"];

export interface RunResult {
  /** r0 as hex, or the fault ("fault budget @12"). */
  result: string;
  faultKind?: string;
  faultPc?: number;
  /** Maps and context after the run. */
  state: string;
}

/** What the fuzzer learns from one program. */
export interface ProgramOutcome {
  accepted: boolean;
  /**
   * accepted: ok | load_refused | checked_fault:<kind> | mismatch | ub_mismatch
   * refused:  load_refused | fault_same_pc | fault_other_pc | no_fault | mismatch | ub_mismatch
   */
  verdict: string;
  /** For mismatches: the runs that disagree and how. */
  detail?: string;
  /** For ub_mismatch: the undefined behaviour that explains it. */
  ub?: string;
  /** The verifier's reason, when it refused. */
  refusal?: string;
}

/** Is `verifyProgram` the placeholder that accepts everything? (A load from address 0x1000 must be refused.) */
export function verifierIsPlaceholder(): boolean {
  const wild = encodeInsns([
    { opcode: 0xb7, dst: 1, src: 0, off: 0, imm: 0x1000 }, // mov r1, 0x1000
    { opcode: 0x79, dst: 0, src: 1, off: 0, imm: 0 }, // ldxdw r0, [r1+0]
    { opcode: 0x95, dst: 0, src: 0, off: 0, imm: 0 }, // exit
  ]);
  return verify(wild).ok;
}

let helperTable: Map<number, HelperSignature> | undefined;
export function verify(code: Uint8Array): VerifyResult {
  helperTable ??= standardHelpers();
  return verifyProgram("fuzz", code, { maps: FUZZ_MAPS, context: FUZZ_CONTEXT, helpers: helperTable });
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/**
 * A runtime with the standard helpers, and for every run a fresh world: a
 * region holding the fuzzer's maps, filled with their initial contents, and
 * the context. Fresh because checked mode lets a program store anywhere in
 * the region that holds its maps (map headers, locks, free lists included):
 * a program that scribbles there must not change how the next run behaves.
 */
export class FuzzHost {
  readonly #addon: NativeAddon;
  readonly #rt: NativeRuntime;
  readonly ctx = initialCtx();
  readonly #ctx0 = initialCtx();
  readonly #arrInit: Buffer[][];
  readonly #key = Buffer.alloc(4);
  readonly #next = Buffer.alloc(4);
  readonly #values: Buffer[];
  readonly #hashValue = Buffer.alloc(8);

  constructor() {
    this.#addon = native();
    this.#arrInit = FUZZ_MAPS.map((m, i) =>
      m.type === 2 ? Array.from({ length: m.maxEntries }, (_, k) => initialArrayValue(i, k)) : [],
    );
    this.#values = FUZZ_MAPS.map((m) => Buffer.alloc(m.valueSize));
    this.#rt = new this.#addon.NativeRuntime();
  }

  /** Runs `code` once in a fresh world and returns what it did. */
  run(code: Uint8Array, opts: { checked: boolean; interpreter: boolean }): RunResult {
    const w = this.#world();
    try {
      const prog = this.#rt.loadProgram({
        name: "fuzz",
        insns: code,
        checked: opts.checked,
        interpreter: opts.interpreter,
        ...(opts.checked ? { budget: CHECKED_BUDGET } : {}),
        maps: w.maps,
        region: w.region,
      });
      try {
        return this.#exec(prog, w.maps);
      } finally {
        prog.release();
      }
    } finally {
      for (const m of w.maps) this.#addon.mapClose(m);
      this.#addon.regionClose(w.region);
    }
  }

  #world(): { region: NativeRegionHandle; maps: NativeMapHandle[] } {
    const a = this.#addon;
    const region = a.regionCreate(null, 64 << 10, 4);
    if (typeof region === "number") throw new BpfhookError("MAP_ERROR", `fuzz: cannot create a region (errno ${-region})`);
    const maps: NativeMapHandle[] = [];
    try {
      FUZZ_MAPS.forEach((m, i) => {
        const h = a.mapCreate(region, {
          name: m.name,
          type: m.type,
          keySize: m.keySize,
          valueSize: m.valueSize,
          maxEntries: m.maxEntries,
          flags: 0,
          mapExtra: 0n,
        });
        if (typeof h === "number") throw new BpfhookError("MAP_ERROR", `fuzz: cannot create map '${m.name}' (errno ${-h})`);
        maps.push(h);
        if (m.type === 2) {
          this.#arrInit[i]!.forEach((v, k) => {
            this.#key.writeUInt32LE(k);
            a.mapUpdate(h, this.#key, v, 0);
          });
        } else {
          for (const [k, value] of INITIAL_HASH) {
            this.#key.writeUInt32LE(k);
            this.#hashValue.writeBigUInt64LE(value);
            a.mapUpdate(h, this.#key, this.#hashValue, 0);
          }
        }
      });
    } catch (e) {
      for (const m of maps) a.mapClose(m);
      a.regionClose(region);
      throw e;
    }
    this.#ctx0.copy(this.ctx);
    return { region, maps };
  }

  /** Maps and context as text, for comparison and reports. */
  #snapshot(maps: readonly NativeMapHandle[]): string {
    const a = this.#addon;
    const parts = [`ctx=${hex(this.ctx)}`];
    FUZZ_MAPS.forEach((m, i) => {
      const h = maps[i]!;
      const v = this.#values[i]!;
      if (m.type === 2) {
        for (let k = 0; k < m.maxEntries; k++) {
          this.#key.writeUInt32LE(k);
          a.mapLookup(h, this.#key, v);
          parts.push(`${m.name}[${k}]=${hex(v)}`);
        }
        return;
      }
      const entries: string[] = [];
      let prev: Buffer | null = null;
      while (entries.length < 64 && a.mapNextKey(h, prev, this.#next) === 0) {
        prev = Buffer.from(this.#next);
        a.mapLookup(h, prev, v);
        entries.push(`${prev.readUInt32LE(0)}:${hex(v)}`);
      }
      parts.push(`${m.name}{${entries.sort().join(",")}}`);
    });
    return parts.join(" ");
  }

  #exec(prog: NativeProgram, maps: readonly NativeMapHandle[]): RunResult {
    let result: string;
    let faultKind: string | undefined;
    let faultPc: number | undefined;
    try {
      result = `0x${prog.run(this.ctx).toString(16)}`;
    } catch (e) {
      const err = e as { fault?: number; pc?: number; message?: string };
      faultKind = FAULT_NAMES[err.fault ?? 0] ?? `fault ${err.fault}`;
      faultPc = err.pc;
      result = `fault ${faultKind} @${faultPc}`;
      if (err.fault === undefined) result = `error: ${err.message}`;
    }
    return {
      result,
      ...(faultKind ? { faultKind } : {}),
      ...(faultPc !== undefined ? { faultPc } : {}),
      state: this.#snapshot(maps),
    };
  }

  close(): void {
    this.#rt.close();
  }
}

interface Labeled {
  name: string;
  run: RunResult;
}

/** The first pair of runs that disagree, described; undefined when all agree. */
function disagreement(runs: readonly Labeled[]): string | undefined {
  const [first, ...rest] = runs;
  for (const other of rest) {
    // Where a budget runs out is the backend's business, and whether: the JIT
    // charges per block, the interpreter per instruction, so a run near the
    // budget may end in one and not the other. A budget fault agrees with anything.
    if (first!.run.faultKind === "budget" || other.run.faultKind === "budget") continue;
    if (other.run.result !== first!.run.result) {
      return `${first!.name} ${first!.run.result} vs ${other.name} ${other.run.result}`;
    }
    if (other.run.state !== first!.run.state) {
      const a = first!.run.state.split(" ");
      const b = other.run.state.split(" ");
      const diff = a.map((p, k) => (p === b[k] ? undefined : `${p} vs ${b[k]}`)).filter((d) => d !== undefined);
      return `${first!.name} vs ${other.name}: ${diff.join("; ") || "state differs"}`;
    }
  }
  return undefined;
}

/** Both backends, each in its own fresh world; a load error (the VM's validator) as a string. */
function runBoth(host: FuzzHost, code: Uint8Array, checked: boolean): [RunResult, RunResult] | string {
  try {
    return [host.run(code, { checked, interpreter: true }), host.run(code, { checked, interpreter: false })];
  } catch (e) {
    if (e instanceof BpfhookError && e.code === "VM_LOAD") return e.message;
    throw e;
  }
}

function judgeMismatch(code: Uint8Array, accepted: boolean, detail: string, refusal?: string): ProgramOutcome {
  const ub = findUndefinedBehaviour(code);
  return {
    accepted,
    verdict: ub ? "ub_mismatch" : "mismatch",
    detail,
    ...(ub ? { ub: `pc ${ub.pc}: ${ub.reason}` } : {}),
    ...(refusal !== undefined ? { refusal } : {}),
  };
}

/** Runs one program through the whole differential check. */
export function checkProgram(
  host: FuzzHost,
  code: Uint8Array,
  onFast?: () => void,
  verifier: (code: Uint8Array) => VerifyResult = verify,
): ProgramOutcome {
  const v = verifier(code);
  const accepted = v.ok;
  const refusal = v.ok ? undefined : v.error.message;
  const withRefusal = refusal !== undefined ? { refusal } : {};

  const checked = runBoth(host, code, true);
  if (typeof checked === "string") return { accepted, verdict: "load_refused", detail: checked, ...withRefusal };
  const [ci, cj] = checked;
  const checkedRuns = [
    { name: "interpreter/checked", run: ci },
    { name: "jit/checked", run: cj },
  ];
  const d = disagreement(checkedRuns);
  if (d !== undefined) return judgeMismatch(code, accepted, d, refusal);

  if (!v.ok) {
    if (ci.faultKind === undefined) return { accepted, verdict: "no_fault", ...withRefusal };
    return { accepted, verdict: ci.faultPc === v.error.pc ? "fault_same_pc" : "fault_other_pc", ...withRefusal };
  }
  if (ci.faultKind !== undefined) return { accepted, verdict: `checked_fault:${ci.faultKind}` };
  if (cj.faultKind !== undefined) return { accepted, verdict: `checked_fault:${cj.faultKind}` };

  onFast?.();
  const fast = runBoth(host, code, false);
  if (typeof fast === "string") return { accepted, verdict: "load_refused", detail: `fast mode: ${fast}` };
  const [fi, fj] = fast;
  const all = disagreement([...checkedRuns, { name: "interpreter/fast", run: fi }, { name: "jit/fast", run: fj }]);
  if (all !== undefined) return judgeMismatch(code, accepted, all);
  return { accepted, verdict: "ok" };
}

/** Programs as bytes, from raw files or Insn arrays. */
export function programBytes(p: Uint8Array | readonly Insn[]): Uint8Array {
  return p instanceof Uint8Array ? p : encodeInsns(p);
}
export { decodeInsns };
