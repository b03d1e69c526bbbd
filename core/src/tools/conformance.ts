#!/usr/bin/env node
/**
 * `npm run conformance -- <dir|file.data ...> [--checked] [--budget N] [--backend B]`
 *
 * Runs bpf_conformance tests in the interpreter and the JIT, prints one line
 * per failure and ends with "N passed, N failed" (the line CI reads). Exits 1
 * if anything failed, 2 on a usage error.
 */
import { existsSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { runConformance, type ConformanceOptions } from "../conformance/runner.js";
import { VM_BACKENDS, type VmBackend } from "../vm/options.js";

function parseBudget(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("expected a non-negative integer");
  return BigInt(value);
}

function parseBackend(value: string, previous: VmBackend[] | undefined): VmBackend[] {
  if (!VM_BACKENDS.includes(value as VmBackend)) throw new InvalidArgumentError(`expected ${VM_BACKENDS.join(" or ")}`);
  return [...(previous ?? []), value as VmBackend];
}

/** The `conformance` command, shared by this script and `bpfhook conformance`. */
export function conformanceCommand(name = "conformance"): Command {
  return new Command(name)
    .description("run bpf_conformance .data files in the interpreter and the JIT")
    .argument("<paths...>", "directories of .data files, or .data files")
    .option("--checked", "run in checked mode (bounds-checked loads and stores)")
    .option("--budget <n>", "instruction budget per run (0 = unlimited)", parseBudget)
    .option("--backend <name>", "only this backend (repeatable)", parseBackend)
    .option("-v, --verbose", "print passing tests too")
    .action((paths: string[], flags: { checked?: boolean; budget?: bigint; backend?: VmBackend[]; verbose?: boolean }) => {
      process.exitCode = runConformanceCli(paths, flags);
    });
}

function runConformanceCli(
  paths: string[],
  flags: { checked?: boolean; budget?: bigint; backend?: VmBackend[]; verbose?: boolean },
): number {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length > 0) {
    console.error(`conformance: no such file or directory: ${missing.join(", ")}`);
    return 2;
  }
  const opts: ConformanceOptions = {
    ...(flags.checked ? { checked: true } : {}),
    ...(flags.budget === undefined ? {} : { budget: flags.budget }),
    ...(flags.backend ? { backends: flags.backend } : {}),
  };
  const report = runConformance(paths, opts);
  for (const o of report.outcomes) {
    if (!o.passed) console.log(`FAIL ${o.file} [${o.backend}]: ${o.detail}`);
    else if (flags.verbose) console.log(`ok   ${o.file} [${o.backend}]: ${o.detail}`);
  }
  console.log(`${report.passed} passed, ${report.failed} failed`);
  return report.failed === 0 ? 0 : 1;
}

if (require.main === module) {
  const program = conformanceCommand().exitOverride();
  try {
    program.parse(process.argv);
  } catch (err) {
    // commander has printed the usage error (or help)
    process.exitCode = (err as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
}
