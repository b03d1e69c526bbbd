/**
 * A fuzzing worker (a child process of the driver, driver.ts): runs programs
 * of the stream and reports on fd 3, one line each, written synchronously so
 * that a line is out before the next program can crash the process:
 *
 *   S <index>        about to run program <index>
 *   F                its fast-mode runs start (a crash after this is fast mode's)
 *   R <json>         its outcome ({ i, a, v, ... })
 *   E                done (deadline or end of range reached)
 *
 * Arguments: one JSON object (WorkerArgs) in argv[2].
 */
import { readFileSync, writeSync } from "node:fs";
import { checkProgram, FuzzHost, type ProgramOutcome } from "./exec.js";
import { readCorpus, streamProgram } from "./stream.js";

export interface WorkerArgs {
  seed: number;
  start: number;
  stride: number;
  /** Exclusive end of the index range (absent: until the deadline). */
  end?: number;
  /** Date.now() after which the worker stops. */
  deadline?: number;
  corpusDir?: string;
  /** Run this raw program file only (index -1). */
  replay?: string;
}

/** One R line. */
export interface WorkerRecord {
  i: number;
  /** accepted */
  a: 0 | 1;
  v: string;
  t?: string[];
  d?: string;
  u?: string;
  r?: string;
}

const FD = 3;
function say(line: string): void {
  const buf = Buffer.from(`${line}\n`);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(FD, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    }
  }
}

function record(i: number, o: ProgramOutcome, tags: readonly string[]): WorkerRecord {
  return {
    i,
    a: o.accepted ? 1 : 0,
    v: o.verdict,
    ...(tags.length > 0 ? { t: [...tags] } : {}),
    ...(o.detail !== undefined ? { d: o.detail } : {}),
    ...(o.ub !== undefined ? { u: o.ub } : {}),
    ...(o.refusal !== undefined ? { r: o.refusal } : {}),
  };
}

function main(): void {
  const args = JSON.parse(process.argv[2] ?? "{}") as WorkerArgs;
  const host = new FuzzHost();
  // Test hook (test/39): BPFHOOK_FUZZ_INJECT="crash:<index>" or "hang:<index>"
  // makes the worker die or spin in that program's fast-mode phase, so the
  // driver's crash and hang handling can be tested without a VM bug.
  const inject = /^(crash|hang):(\d+)$/.exec(process.env.BPFHOOK_FUZZ_INJECT ?? "");
  let current = -2;
  const onFast = (): void => {
    say("F");
    if (inject && Number(inject[2]) === current) {
      if (inject[1] === "crash") process.kill(process.pid, "SIGSEGV");
      for (;;); // hang
    }
  };
  try {
    if (args.replay !== undefined) {
      const code = readFileSync(args.replay);
      say("S -1");
      say(`R ${JSON.stringify(record(-1, checkProgram(host, code, onFast), []))}`);
    } else {
      const corpus = readCorpus(args.corpusDir);
      for (let i = args.start; args.end === undefined || i < args.end; i += args.stride) {
        if (args.deadline !== undefined && Date.now() >= args.deadline) break;
        const p = streamProgram(args.seed, i, corpus);
        current = i;
        say(`S ${i}`);
        say(`R ${JSON.stringify(record(i, checkProgram(host, p.code, onFast), p.tags))}`);
      }
    }
    say("E");
  } finally {
    host.close();
  }
}

main();
