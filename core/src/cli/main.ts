#!/usr/bin/env node
/**
 * The bpfhook command line: look inside eBPF objects, assemble and
 * disassemble, compile eBPF C, run the conformance suite.
 *
 *   bpfhook inspect prog.bpf.o        programs, sections, maps, which plugin serves each section; does it load
 *   bpfhook verify prog.bpf.o [-p x] [--context uprobe]   the verifier's verdict per program
 *   bpfhook disasm prog.bpf.o [-p x]  linked instructions of each program
 *   bpfhook asm prog.s -o prog.bin    assemble text to raw instructions
 *   bpfhook compile prog.bpf.c        clang -O2 -g -target bpf with the flags these machines need
 *   bpfhook conformance <dir>         bpf_conformance .data files in both backends
 *   bpfhook ptx prog.bpf.o [-p x] [--arch sm_90]   the PTX a program compiles to (nv-cuda plugin)
 *   bpfhook clean                     remove shared regions left by killed processes
 *   bpfhook new-plugin DIR [--name N] [--attach-type-id ID] [--prefix P]   scaffold a plugin package
 *   bpfhook run [-j] (-c CONFIG | OBJ...) -- CMD     start CMD with the agent and the programs attached
 *   bpfhook attach [-j] -p PID (-c CONFIG | OBJ...)   inject the agent into a running process
 *   bpfhook detach -p PID | maps -p PID [--watch] | ps
 */
import { readFileSync, writeFileSync } from "node:fs";
import { Command } from "commander";
import { assemble, disassemble, encodeInsns } from "../asm/index.js";
import { BpfhookError } from "../errors.js";
import { loadObject } from "../loader/index.js";
import { cleanStaleRegions } from "../maps/region.js";
import { compileBpfC } from "../toolchain/clang.js";
import { conformanceCommand } from "../tools/conformance.js";
import { inspectObject, verifyObjectFile } from "./describe.js";
import { describeScaffold, scaffoldPlugin } from "./new-plugin.js";
import { ptxCommand } from "./ptx.js";
import { attachCommand, collect, detachCommand, mapsCommand, psCommand, runCommand } from "./agent-commands.js";

function program(): Command {
  const cli = new Command("bpfhook")
    .description("userspace eBPF: load, inspect and attach clang-built programs")
    .version(readVersion());

  cli
    .command("inspect")
    .description(
      "list an object's programs (with the plugin that serves each section) and maps, and check that it loads; " +
        "exit 0: it loads (programs that cannot attach by their section are labelled so), 1: a load would refuse it " +
        "(the verifier's verdict per program is listed: a strict load refuses a program it refuses)",
    )
    .argument("<object>", "an ELF object built by clang -target bpf")
    .option("--plugin <name>", "a plugin package to match sections against, repeatable (default: the bundled ones)", collect)
    .option("--json", "print JSON instead of text")
    .action(async (file: string, opts: { plugin?: string[]; json?: boolean }) => {
      const out = await inspectObject(file, opts.plugin);
      console.log(opts.json ? JSON.stringify(out.json, bigintJson, 2) : out.text);
      if (out.loadError !== undefined) console.error(`bpfhook: ${out.loadError.message}`);
      process.exitCode = out.exitCode;
    });

  cli
    .command("verify")
    .description(
      "run the verifier on an object's programs as a strict load would (the context of the attach type each section " +
        "selects, or --context's); exit 0: every program verified, 1: one was refused (the message says where and why)",
    )
    .argument("<object>", "an ELF object built by clang -target bpf")
    .option("-p, --program <name>", "only this program")
    .option("--context <type>", "verify against this attach type's context (name or id: uprobe, simple, 6 ...)")
    .option("--plugin <name>", "a plugin package whose attach types and helpers to use, repeatable (default: the bundled ones)", collect)
    .option("--json", "print JSON instead of text")
    .action(async (file: string, opts: { program?: string; context?: string; plugin?: string[]; json?: boolean }) => {
      const out = await verifyObjectFile(file, {
        ...(opts.program === undefined ? {} : { program: opts.program }),
        ...(opts.context === undefined ? {} : { context: opts.context }),
        ...(opts.plugin === undefined ? {} : { plugin: opts.plugin }),
      });
      console.log(opts.json ? JSON.stringify(out.json, bigintJson, 2) : out.text);
      process.exitCode = out.exitCode;
    });

  cli
    .command("ptx")
    .description("compile programs to PTX for CUDA kernels (a module ptxas accepts on its own; nv-cuda plugin)")
    .argument("<object>", "an ELF object built by clang -target bpf")
    .option("-p, --program <name>", "only this program")
    .option("--arch <sm>", "the module's .target", "sm_90")
    .option("-o, --output <file>", "write the module here instead of stdout")
    .action((file: string, opts: { program?: string; arch: string; output?: string }) => {
      const text = ptxCommand(file, opts);
      if (opts.output) writeFileSync(opts.output, text);
      else process.stdout.write(text);
    });

  cli
    .command("disasm")
    .description("disassemble the programs of an object (linked: subprograms appended, maps as indexes)")
    .argument("<object>", "an ELF object built by clang -target bpf")
    .option("-p, --program <name>", "only this program")
    .action((file: string, opts: { program?: string }) => {
      const obj = loadObject(file);
      const progs = opts.program ? obj.programs.filter((p) => p.name === opts.program) : obj.programs;
      if (progs.length === 0) {
        throw new BpfhookError(
          "NOT_FOUND",
          `${file}: no program '${opts.program}' (programs: ${obj.programs.map((p) => p.name).join(", ")})`,
        );
      }
      for (const p of progs) {
        console.log(`${p.name} (section ${p.section}, ${p.insns.length / 8} instructions):`);
        console.log(disassemble(p.insns, { helperNames: true }));
        console.log("");
      }
    });

  cli
    .command("asm")
    .description("assemble eBPF assembly (the conformance suite's syntax) into raw 8-byte instructions")
    .argument("<source>", "assembly text file, or - for standard input")
    .requiredOption("-o, --output <file>", "where to write the instructions")
    .action((source: string, opts: { output: string }) => {
      const text = readFileSync(source === "-" ? 0 : source, "utf8");
      const bytes = encodeInsns(assemble(text));
      writeFileSync(opts.output, bytes);
      console.log(`${opts.output}: ${bytes.length / 8} instructions`);
    });

  cli
    .command("compile")
    .description("compile eBPF C with clang -O2 -g -target bpf and the include paths bpfhook needs")
    .argument("<source>", "a .bpf.c file")
    .option("-o, --output <file>", "object to write (default: next to the source, .bpf.o)")
    .option("-I, --include <dir...>", "more include folders")
    .option("-D, --define <name...>", "preprocessor definitions")
    .action((source: string, opts: { output?: string; include?: string[]; define?: string[] }) => {
      const out = compileBpfC(source, {
        ...(opts.output ? { out: opts.output } : {}),
        ...(opts.include ? { includeDirs: opts.include } : {}),
        ...(opts.define ? { defines: opts.define } : {}),
      });
      console.log(out);
    });

  cli
    .command("clean")
    .description(
      "remove shared-memory regions (/dev/shm/bpfhook-*) of this user whose creating process is gone " +
        "(killed by a signal); regions of live processes are kept",
    )
    .option("--json", "print JSON instead of text")
    .action((opts: { json?: boolean }) => {
      const removed = cleanStaleRegions();
      if (opts.json) {
        console.log(JSON.stringify({ removed }, null, 2));
        return;
      }
      for (const r of removed) console.log(`removed ${r.name} (creator pid ${r.pid} is gone)`);
      console.log(`${removed.length} stale region${removed.length === 1 ? "" : "s"} removed`);
    });

  cli
    .command("new-plugin")
    .description(
      "write a plugin package into DIR that builds and passes its tests with no edit: TypeScript side (definePlugin, " +
        "zod schema, section prefix, context layout, a custom helper), native side (CMake + cmake-js against the SDK's " +
        "headers), mocha tests with @bpfhook/testkit (contract tests, a program counting into a map), README; " +
        "@bpfhook/* are depended on by file: paths to the packages this command runs from",
    )
    .argument("<dir>", "the package's folder (created; must be empty or absent)")
    .option("--name <name>", "plugin and attach type name (default: DIR's name without 'bpfhook-plugin-')")
    .option("--attach-type-id <id>", "attach type id, 4096..65535 (default: derived from the name)")
    .option("--prefix <prefix>", "section prefix (default: the name with '-' as '_')")
    .action((dir: string, opts: { name?: string; attachTypeId?: string; prefix?: string }) => {
      const id = opts.attachTypeId === undefined ? undefined : Number(opts.attachTypeId);
      const result = scaffoldPlugin({
        dir,
        ...(opts.name === undefined ? {} : { name: opts.name }),
        ...(id === undefined ? {} : { attachTypeId: id }),
        ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
      });
      console.log(describeScaffold(result));
    });

  cli.addCommand(runCommand());
  cli.addCommand(attachCommand());
  cli.addCommand(detachCommand());
  cli.addCommand(mapsCommand());
  cli.addCommand(psCommand());
  cli.addCommand(conformanceCommand());
  return cli;
}

function readVersion(): string {
  try {
    return (JSON.parse(readFileSync(`${__dirname}/../../package.json`, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof BpfhookError || userFacing(err)) {
      console.error(`bpfhook: ${(err as Error).message}`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

/**
 * An error about the user's input rather than a bug, told in one line like a
 * BpfhookError: a file that cannot be read or written (Node's system errors:
 * "ENOENT: no such file or directory, open 'x.s'"), or a plugin's own coded
 * error (nv-cuda's FATBIN_INVALID, PTX_INSERT ...). Anything else keeps its
 * stack trace.
 */
function userFacing(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; syscall?: unknown };
  if (typeof e.syscall === "string") return true;
  return typeof e.code === "string" && /^[A-Z][A-Z0-9]*_[A-Z0-9_]+$/.test(e.code) && !e.code.startsWith("ERR_");
}

void main();
