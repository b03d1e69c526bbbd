/**
 * The fuzzing driver: spreads the stream of a seed over worker processes
 * (worker.ts), watches them (a worker that dies was running the program it
 * announced last: that program crashed; one silent for `hangMs` is killed
 * and its program hung), tallies outcomes and saves every failing program as
 * raw bytes, disassembly and a JSON note with a one-line reproduction.
 *
 * Failures (exit 1 of `npm run fuzz`): a crash or hang, a mismatch between
 * runs on defined behaviour, and, once a real verifier is in place (not the
 * placeholder that accepts everything), any accepted program that faults in
 * checked mode, that the VM refuses to load, or that carries a deliberate
 * defect tag. Mismatches, crashes and hangs of programs that use undefined
 * behaviour (definedness.ts) are counted apart as "undefined-behaviour
 * program accepted": the verifier must refuse those programs, so with a real
 * verifier they are failures too.
 */
import { UNSAFE_TAGS } from "./generator.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { disassemble } from "../asm/disassembler.js";
import { formatRaw } from "../asm/raw.js";
import { findUndefinedBehaviour } from "./definedness.js";
import { verifierIsPlaceholder } from "./exec.js";
import { readCorpus, streamProgram } from "./stream.js";
import type { WorkerArgs, WorkerRecord } from "./worker.js";


/**
 * Defects a verifier must refuse: every unsafe one, and the undefined
 * behaviour the issue names (uninitialised registers and stack, scratch
 * registers after a call). A stack pointer held in a register
 * (ub:pointer-leak) and a nondeterministic helper (ub:nondet-helper) are
 * legal; they count only when they make the backends differ.
 */
const MUST_REFUSE_TAGS: ReadonlySet<string> = new Set([...UNSAFE_TAGS, "ub:uninit-stack", "ub:uninit-reg", "ub:scratch-after-call"]);
/** Helpers whose results differ from run to run: ktime (5, 125, 160), prandom (7), the CPU (8). */
const NONDETERMINISTIC_HELPERS: ReadonlySet<number> = new Set([5, 7, 8, 125, 160]);

function callsNondeterministicHelper(code: Uint8Array): boolean {
  const v = new DataView(code.buffer, code.byteOffset, code.byteLength);
  for (let off = 0; off + 8 <= code.byteLength; off += 8) {
    if (v.getUint8(off) === 0x85 && v.getUint8(off + 1) >> 4 === 0 && NONDETERMINISTIC_HELPERS.has(v.getInt32(off + 4, true))) return true;
  }
  return false;
}

/** Undefined behaviour an accepted program must not have (the definedness check's wording). */
const MUST_REFUSE_UB = /before it is written|outside the frame|out of bounds/;
export interface FuzzOptions {
  seed: number;
  /** Run for this long (or until `count` programs, whichever comes first). */
  seconds?: number;
  count?: number;
  /** Worker processes (default 1). */
  jobs?: number;
  /** Where failing programs are saved (default: nothing is saved). */
  out?: string;
  corpusDir?: string;
  /** A worker silent this long on one program is killed (default 5000 ms). */
  hangMs?: number;
  /** Save up to this many undefined-behaviour programs under out/ub (default 20). */
  keepUb?: number;
  /** Test hook: make the worker crash or hang in this program's fast-mode phase. */
  inject?: { kind: "crash" | "hang"; index: number };
  /** Called about once a second with the running totals. */
  onProgress?: (s: FuzzSummary) => void;
}

export type FailureKind =
  | "crash"
  | "hang"
  | "mismatch"
  | "crash_checked"
  | "hang_checked"
  | "unsafe_accepted"
  | "defect_accepted"
  | "load_refused_accepted";

export interface Failure {
  kind: FailureKind | `ub_${string}`;
  index: number;
  origin: string;
  tags: string[];
  detail: string;
  /** Saved program (raw bytes), when `out` was given. */
  file?: string;
  repro?: string;
}

export interface FuzzSummary {
  seed: number;
  programs: number;
  accepted: number;
  refused: number;
  /** "accepted:ok", "refused:fault_same_pc", ... */
  verdicts: Record<string, number>;
  /** Deliberate defect tags of generated programs the verifier accepted. */
  defectsAccepted: Record<string, number>;
  /** Mismatches, crashes and hangs explained by undefined behaviour. */
  undefinedBehaviour: Failure[];
  failures: Failure[];
  crashes: number;
  hangs: number;
  mismatches: number;
  placeholderVerifier: boolean;
  elapsedMs: number;
  programsPerSecond: number;
}

const WORKER = path.join(__dirname, "worker.js");

interface Slot {
  child: ChildProcess;
  stride: number;
  /** Index announced by S and not yet answered by R. */
  current: number | undefined;
  fast: boolean;
  since: number;
  stderr: string;
  done: boolean;
  restarts: number;
  /** When the watchdog killed it. */
  hungAt?: number;
  /** First index not yet answered. */
  next: number;
}

export function runFuzz(opts: FuzzOptions): Promise<FuzzSummary> {
  const jobs = Math.max(1, opts.jobs ?? 1);
  const hangMs = opts.hangMs ?? 5000;
  const keepUb = opts.keepUb ?? 20;
  const started = Date.now();
  const deadline = opts.seconds !== undefined ? started + opts.seconds * 1000 : undefined;
  if (deadline === undefined && opts.count === undefined) throw new Error("runFuzz: give seconds or count");
  const placeholder = verifierIsPlaceholder();
  const corpus = readCorpus(opts.corpusDir);

  const s: FuzzSummary = {
    seed: opts.seed,
    programs: 0,
    accepted: 0,
    refused: 0,
    verdicts: {},
    defectsAccepted: {},
    undefinedBehaviour: [],
    failures: [],
    crashes: 0,
    hangs: 0,
    mismatches: 0,
    placeholderVerifier: placeholder,
    elapsedMs: 0,
    programsPerSecond: 0,
  };

  let savedUb = 0;
  const save = (f: Failure, code: Uint8Array, ub: boolean): void => {
    if (!opts.out) return;
    if (ub && savedUb++ >= keepUb) return;
    const dir = ub ? path.join(opts.out, "ub") : opts.out;
    mkdirSync(dir, { recursive: true });
    const base = path.join(dir, `${f.kind}-s${opts.seed}-i${f.index}`);
    writeFileSync(`${base}.bin`, code);
    let asm: string;
    try {
      asm = disassemble(code, { labels: true, helperNames: true });
    } catch {
      asm = formatRaw(code);
    }
    writeFileSync(`${base}.asm`, `${asm}\n`);
    f.file = `${base}.bin`;
    f.repro = `npm run fuzz -- --replay ${f.file}`;
    writeFileSync(`${base}.json`, `${JSON.stringify({ ...f, seed: opts.seed }, null, 2)}\n`);
  };

  const count = (key: string): void => {
    s.verdicts[key] = (s.verdicts[key] ?? 0) + 1;
  };

  /** A failure, or with `ubFirst` an undefined-behaviour finding when the program has undefined behaviour. */
  const report = (
    kind: FailureKind,
    index: number,
    detail: string,
    ubFirst: boolean,
    ubText?: string,
    accepted = true,
  ): void => {
    const p = streamProgram(opts.seed, index, corpus);
    const ub = ubFirst ? (ubText ?? describeUb(p.code)) : undefined;
    const f: Failure = {
      kind: ub ? `ub_${kind}` : kind,
      index,
      origin: p.origin,
      tags: p.tags,
      detail: ub ? `${detail} (undefined behaviour: ${ub})` : detail,
    };
    save(f, p.code, ub !== undefined);
    if (ub) {
      s.undefinedBehaviour.push(f);
      // A real verifier must refuse reads of what was never written and
      // accesses out of bounds. A value that depends on an address or on a
      // nondeterministic helper is a program's right (the fuzzer runs each
      // backend on a fresh region, so map addresses differ between runs).
      // The definedness check is path-insensitive: in a program that reads the
      // clock or random numbers it may blame a read on a path the verifier
      // proved dead, while the difference is the helper's.
      if (accepted && !placeholder && MUST_REFUSE_UB.test(ub) && !callsNondeterministicHelper(p.code)) s.failures.push(f);
      return;
    }
    s.failures.push(f);
    if (kind === "crash" || kind === "crash_checked") s.crashes++;
    else if (kind === "hang" || kind === "hang_checked") s.hangs++;
    else if (kind === "mismatch") s.mismatches++;
  };

  const onRecord = (rec: WorkerRecord): void => {
    s.programs++;
    if (rec.a) s.accepted++;
    else s.refused++;
    count(`${rec.a ? "accepted" : "refused"}:${rec.v}`);
    const defects = (rec.t ?? []).filter((t) => t !== "mutated");
    const generated = !(rec.t ?? []).includes("mutated");
    if (rec.a && generated) for (const t of defects) s.defectsAccepted[t] = (s.defectsAccepted[t] ?? 0) + 1;
    if (rec.v === "mismatch") report("mismatch", rec.i, rec.d ?? "", false);
    else if (rec.v === "ub_mismatch") report("mismatch", rec.i, rec.d ?? "", true, rec.u, rec.a === 1);
    else if (rec.a && !placeholder) {
      // Accepted, then refused by the VM's structural validator at load:
      // counted (accepted:load_refused), not a failure, since a load runs both.
      if (rec.v.startsWith("checked_fault:")) report("unsafe_accepted", rec.i, `accepted, but ${rec.v}`, false);
      else if (rec.v !== "load_refused" && generated && defects.some((t) => MUST_REFUSE_TAGS.has(t))) {
        report("defect_accepted", rec.i, `accepted: ${defects.join(", ")}`, false);
      }
    }
  };

  return new Promise((resolve) => {
    const slots: Slot[] = [];
    let progress = Date.now();

    const finishIfDone = (): void => {
      if (!slots.every((sl) => sl.done)) return;
      clearInterval(timer);
      s.elapsedMs = Date.now() - started;
      s.programsPerSecond = s.programs / Math.max(0.001, s.elapsedMs / 1000);
      resolve(s);
    };

    const start = (w: number, from: number, restarts: number): void => {
      if (opts.count !== undefined && from >= opts.count) {
        if (slots[w]) slots[w]!.done = true;
        else slots[w] = { done: true } as Slot; // nothing to run: never started
        return finishIfDone();
      }
      const args: WorkerArgs = {
        seed: opts.seed,
        start: from,
        stride: jobs,
        ...(opts.count !== undefined ? { end: opts.count } : {}),
        ...(deadline !== undefined ? { deadline } : {}),
        ...(opts.corpusDir !== undefined ? { corpusDir: opts.corpusDir } : {}),
      };
      const env = opts.inject ? { ...process.env, BPFHOOK_FUZZ_INJECT: `${opts.inject.kind}:${opts.inject.index}` } : process.env;
      const child = spawn(process.execPath, [WORKER, JSON.stringify(args)], { stdio: ["ignore", "ignore", "pipe", "pipe"], env });
      const slot: Slot = { child, stride: jobs, current: undefined, fast: false, since: Date.now(), stderr: "", done: false, restarts, next: from };
      slots[w] = slot;
      let buf = "";
      let ended = false;
      child.stderr!.on("data", (d: Buffer) => {
        slot.stderr = (slot.stderr + d.toString()).slice(-2000);
      });
      (child.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith("S ")) {
            slot.current = Number(line.slice(2));
            slot.fast = false;
            slot.since = Date.now();
          } else if (line === "F") {
            slot.fast = true;
            slot.since = Date.now();
          } else if (line.startsWith("R ")) {
            const rec = JSON.parse(line.slice(2)) as WorkerRecord;
            onRecord(rec);
            slot.current = undefined;
            slot.next = rec.i + jobs;
          } else if (line === "E") ended = true;
        }
      });
      child.on("close", (code, signal) => {
        const cur = slot.current;
        if (!ended) removeRegionsOf(child.pid);
        if (ended && cur === undefined) {
          slot.done = true;
          return finishIfDone();
        }
        if (cur !== undefined) {
          const hung = signal === "SIGKILL" && slot.hungAt !== undefined;
          const how = hung ? `no answer for ${slot.fast ? hangMs : 4 * hangMs} ms` : `worker died (${signal ?? `exit ${code}`})`;
          const where = slot.fast ? "fast mode" : "checked mode";
          const tail = slot.stderr.trim().split("\n").slice(-3).join(" | ");
          const detail = `${how} in ${where}${tail ? `: ${tail}` : ""}`;
          // Checked mode must never crash or hang (it has a budget): no undefined behaviour excuses it.
          // The program counts as run: fast mode means the verifier accepted it.
          s.programs++;
          if (slot.fast) s.accepted++;
          count(`${slot.fast ? "accepted" : "died"}:${hung ? "hang" : "crash"}${slot.fast ? "" : "_checked"}`);
          if (slot.fast) report(hung ? "hang" : "crash", cur, detail, true);
          else report(hung ? "hang_checked" : "crash_checked", cur, detail, false);
          if (deadline === undefined || Date.now() < deadline) return start(w, cur + jobs, restarts);
          slot.done = true;
          return finishIfDone();
        }
        // Died between programs: the worker itself is broken. Retry a little, then give up.
        if (restarts < 3 && !(deadline !== undefined && Date.now() >= deadline)) return start(w, slot.next, restarts + 1);
        s.failures.push({
          kind: "crash",
          index: -1,
          origin: "worker",
          tags: [],
          detail: `worker exited (${signal ?? `exit ${code}`}) outside a program: ${slot.stderr.trim().slice(-500)}`,
        });
        s.crashes++;
        slot.done = true;
        finishIfDone();
      });
    };

    const timer = setInterval(() => {
      const now = Date.now();
      for (const sl of slots) {
        if (sl.done || sl.current === undefined || sl.hungAt !== undefined) continue;
        // Checked mode ends on its budget; it may still be slow (a split-locked
        // misaligned atomic costs milliseconds where the kernel throttles them).
        if (now - sl.since > (sl.fast ? hangMs : 4 * hangMs)) {
          sl.hungAt = now;
          sl.child.kill("SIGKILL");
        }
      }
      if (deadline !== undefined && now > deadline + hangMs + 2000) {
        for (const sl of slots) if (!sl.done && sl.current === undefined) sl.child.kill("SIGKILL");
      }
      if (opts.onProgress && now - progress >= 1000) {
        progress = now;
        s.elapsedMs = now - started;
        s.programsPerSecond = s.programs / Math.max(0.001, s.elapsedMs / 1000);
        opts.onProgress(s);
      }
    }, 100);

    for (let w = 0; w < jobs; w++) start(w, w, 0);
  });
}

function describeUb(code: Uint8Array): string | undefined {
  const u = findUndefinedBehaviour(code);
  return u ? `pc ${u.pc}: ${u.reason}` : undefined;
}

/** Runs one saved program in a worker (a crash or hang there is reported, not suffered). */
export function replayProgram(file: string, hangMs = 5000): Promise<{ record?: WorkerRecord; died?: string; fast: boolean }> {
  return new Promise((resolve) => {
    const args: WorkerArgs = { seed: 0, start: 0, stride: 1, replay: file };
    const child = spawn(process.execPath, [WORKER, JSON.stringify(args)], { stdio: ["ignore", "inherit", "pipe", "pipe"] });
    let buf = "";
    let record: WorkerRecord | undefined;
    let fast = false;
    let stderr = "";
    let hung = false;
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    (child.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split("\n")) {
        if (line === "F") fast = true;
        if (line.startsWith("R ")) record = JSON.parse(line.slice(2)) as WorkerRecord;
      }
      buf = buf.slice(buf.lastIndexOf("\n") + 1);
    });
    const timer = setTimeout(() => {
      hung = true;
      child.kill("SIGKILL");
    }, hangMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (record) return resolve({ record, fast });
      const how = hung ? `hang (no answer for ${hangMs} ms)` : `crash (${signal ?? `exit ${code}`})`;
      resolve({ died: `${how} in ${fast ? "fast" : "checked"} mode${stderr ? `: ${stderr.trim().slice(-500)}` : ""}`, fast });
    });
  });
}

/**
 * A worker killed in a run leaves its region (/dev/shm/bpfhook-<pid>-<random>)
 * behind: remove that worker's only, not every stale region of the user
 * (other runs and tests own theirs).
 */
function removeRegionsOf(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    for (const name of readdirSync("/dev/shm")) {
      if (name.startsWith(`bpfhook-${pid}-`)) rmSync(path.join("/dev/shm", name), { force: true });
    }
  } catch {
    // no /dev/shm: nothing to clean
  }
}
