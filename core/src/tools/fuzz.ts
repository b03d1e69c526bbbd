#!/usr/bin/env node
/**
 * `npm run fuzz -- --seconds N [--seed S] [--out DIR] [--jobs J] [--count N] [--corpus DIR]`
 * `npm run fuzz -- --replay FILE`
 *
 * The differential fuzzer (core/src/fuzz, docs/FUZZING.md): prints programs
 * per second, the share the verifier accepted, the outcomes, and every
 * failure with its saved program and reproduction command. Exits 1 on any
 * crash, hang or mismatch (or, with a real verifier, any accepted unsafe
 * program), 2 on a usage error.
 */
import { existsSync, readFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { findUndefinedBehaviour } from "../fuzz/definedness.js";
import { replayProgram, runFuzz, type Failure, type FuzzSummary } from "../fuzz/driver.js";

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("expected a non-negative integer");
  return Number(value);
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number of seconds");
  return n;
}

const pct = (n: number, of: number): string => `${of === 0 ? "0.0" : ((100 * n) / of).toFixed(1)}%`;

function line(f: Failure): string {
  const tags = f.tags.length > 0 ? ` [${f.tags.join(", ")}]` : "";
  return `  ${f.kind} #${f.index} (${f.origin})${tags}: ${f.detail}${f.repro ? `\n    reproduce: ${f.repro}` : ""}`;
}

export function formatSummary(s: FuzzSummary): string {
  const out: string[] = [];
  out.push(
    `fuzz: seed ${s.seed}: ${s.programs} programs in ${(s.elapsedMs / 1000).toFixed(1)} s ` +
      `(${s.programsPerSecond.toFixed(0)} programs/s)`,
  );
  out.push(
    `verifier${s.placeholderVerifier ? " (placeholder: accepts everything)" : ""}: ` +
      `accepted ${s.accepted} (${pct(s.accepted, s.programs)}), refused ${s.refused} (${pct(s.refused, s.programs)})`,
  );
  const verdicts = Object.entries(s.verdicts).sort(([a], [b]) => a.localeCompare(b));
  out.push(`outcomes: ${verdicts.map(([k, n]) => `${k} ${n}`).join(", ")}`);
  const defects = Object.entries(s.defectsAccepted).sort(([a], [b]) => a.localeCompare(b));
  if (defects.length > 0) out.push(`deliberate defects accepted: ${defects.map(([k, n]) => `${k} ${n}`).join(", ")}`);
  out.push(`undefined-behaviour program accepted: ${s.undefinedBehaviour.length} (mismatches, crashes, hangs it explains)`);
  for (const f of s.undefinedBehaviour.slice(0, 5)) out.push(line(f));
  out.push(`crashes ${s.crashes}, hangs ${s.hangs}, mismatches ${s.mismatches}, failures ${s.failures.length}`);
  for (const f of s.failures.slice(0, 20)) out.push(line(f));
  if (s.failures.length > 20) out.push(`  ... and ${s.failures.length - 20} more`);
  return out.join("\n");
}

interface Flags {
  seconds?: number;
  count?: number;
  seed?: number;
  out: string;
  jobs: number;
  corpus?: string;
  hangMs: number;
  replay?: string;
  quiet?: boolean;
}

async function main(flags: Flags): Promise<number> {
  if (flags.replay !== undefined) {
    if (!existsSync(flags.replay)) {
      console.error(`fuzz: no such file: ${flags.replay}`);
      return 2;
    }
    const r = await replayProgram(flags.replay, flags.hangMs);
    if (r.died) {
      const ub = findUndefinedBehaviour(readFileSync(flags.replay));
      console.log(`${flags.replay}: ${r.died}${ub && r.fast ? ` (undefined behaviour: pc ${ub.pc}: ${ub.reason})` : ""}`);
      return 1;
    }
    const rec = r.record!;
    console.log(
      `${flags.replay}: ${rec.a ? "accepted" : "refused"}: ${rec.v}` +
        `${rec.d ? `: ${rec.d}` : ""}${rec.u ? ` (undefined behaviour: ${rec.u})` : ""}${rec.r ? `\n  verifier: ${rec.r}` : ""}`,
    );
    return rec.v === "mismatch" ? 1 : 0;
  }
  if (flags.seconds === undefined && flags.count === undefined) {
    console.error("fuzz: give --seconds N or --count N (or --replay FILE)");
    return 2;
  }
  const seed = flags.seed ?? (Date.now() % 1_000_000_000);
  const s = await runFuzz({
    seed,
    ...(flags.seconds !== undefined ? { seconds: flags.seconds } : {}),
    ...(flags.count !== undefined ? { count: flags.count } : {}),
    jobs: flags.jobs,
    out: flags.out,
    ...(flags.corpus !== undefined ? { corpusDir: flags.corpus } : {}),
    hangMs: flags.hangMs,
    ...(flags.quiet
      ? {}
      : {
          onProgress: (p: FuzzSummary) =>
            process.stderr.write(
              `\r${p.programs} programs, ${p.programsPerSecond.toFixed(0)}/s, ` +
                `${p.failures.length} failures, ${p.undefinedBehaviour.length} undefined-behaviour   `,
            ),
        }),
  });
  if (!flags.quiet) process.stderr.write("\n");
  console.log(formatSummary(s));
  return s.failures.length > 0 ? 1 : 0;
}

if (require.main === module) {
  new Command("fuzz")
    .description("differential fuzzing of the verifier, the interpreter and the JIT")
    .option("--seconds <n>", "run this long", parseSeconds)
    .option("--count <n>", "run this many programs (indexes 0..n-1 of the stream)", parseCount)
    .option("--seed <n>", "stream seed (default: from the clock, printed)", parseCount)
    .option("--out <dir>", "where failing programs are saved", "fuzz-findings")
    .option("--jobs <n>", "worker processes", parseCount, 1)
    .option("--corpus <dir>", "also mutate the raw programs (*.bin) of this directory")
    .option("--hang-ms <n>", "a program silent this long is a hang", parseCount, 5000)
    .option("--replay <file>", "run one saved program (raw bytes) and print its outcome")
    .option("-q, --quiet", "no progress line")
    .action(async (flags: Flags) => {
      process.exitCode = await main(flags);
    })
    .parseAsync(process.argv)
    .catch((e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exitCode = 2;
    });
}
