/**
 * The agent-mode commands: run, attach, detach, maps, ps (docs/AGENT.md).
 *
 * Exit codes: run exits with its command's status (128 + signal when
 * killed); every command exits 1 when bpfhook itself fails (bad input, a
 * refused attach, a refused ptrace) after printing the error, and 0
 * otherwise.
 */
import { Command } from "commander";
import { BpfhookError } from "../errors.js";
import { AgentSession, type AgentSessionOptions } from "../agent/session.js";
import { findAgentRegions, regionsOfProcess } from "../agent/discover.js";
import { AttachState, PROC_STATE_NAMES, processAlive } from "../agent/area.js";
import { jsonValue } from "../agent/dump.js";
import { Printer } from "./output.js";
import { loadConfigFile } from "../config/load.js";
import type { SharedRegion } from "../maps/index.js";
import type { VerifierMode } from "../verifier/types.js";
import { VERIFIER_MODES } from "../runtime/verification.js";

interface CommonOpts {
  json?: boolean;
  config?: string;
  plugin?: string[];
  keepProbes?: boolean;
  agentLog?: string;
  quiet?: boolean;
  verbose?: boolean;
  regionSize?: string;
  startTimeout?: string;
  verifier?: string;
}

/** A repeatable option's values ("--plugin a --plugin b"): one value each, so an object after it stays an object. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function commonOptions(cmd: Command): Command {
  return cmd
    .option("-j, --json", "one JSON object a line: {\"type\": ..., \"data\": ...}")
    .option("-c, --config <file>", "a config file (YAML or JSON, docs/CONFIG.md)")
    .option(
      "--plugin <name-or-dir>",
      "one more plugin package: an npm name (from the working directory) or a directory; repeat for several",
      collect,
    )
    .option("--keep-probes", "keep the probes attached if bpfhook dies (default: the agent detaches them)")
    .option("--agent-log <file>", "where the agent in the target logs: a file, or 'stderr' (default: through bpfhook)")
    .option("--region-size <bytes>", "size of the shared region (default: the config's, else 64 MiB)")
    .option("--verifier <mode>", "strict (default: programs proven safe at load), checked (run-time checks) or off (trusted); wins over the config's")
    .option("--start-timeout <ms>", "bound on waiting for the agent to start and to answer", "5000")
    .option("-q, --quiet", "no progress lines")
    .option("-v, --verbose", "also the agent's info lines (plugins loaded, each attachment)");
}

function sessionOptions(objects: string[], o: CommonOpts, printer: Printer): AgentSessionOptions {
  const regionSize = o.regionSize === undefined ? undefined : parsePositive(o.regionSize, "--region-size");
  const start = parsePositive(o.startTimeout ?? "5000", "--start-timeout");
  return {
    ...(o.config ? { config: o.config } : {}),
    objects,
    plugins: o.plugin ?? [],
    ...(o.keepProbes ? { keepProbesOnExit: true } : {}),
    ...(o.agentLog ? { agentLog: o.agentLog } : {}),
    ...(regionSize === undefined ? {} : { regionSize }),
    ...(o.verifier === undefined ? {} : { verifier: parseVerifierMode(o.verifier) }),
    startTimeoutMs: start,
    settleTimeoutMs: Math.max(start, 10_000),
    progress: (m) => printer.progress(m),
  };
}

/** --verifier's value, refused with the modes listed. */
export function parseVerifierMode(v: string): VerifierMode {
  if (!(VERIFIER_MODES as readonly string[]).includes(v)) {
    throw new BpfhookError("BAD_ARGUMENT", `--verifier: expected ${VERIFIER_MODES.join(", ")}, got '${v}'`);
  }
  return v as VerifierMode;
}

function parsePositive(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new BpfhookError("BAD_ARGUMENT", `${what}: expected a positive integer, got '${v}'`);
  return n;
}

/**
 * Prints the session's attachments and events as they come, as the config's
 * `output` says; returns what prints the maps (and stops the periodic print).
 */
function wire(session: AgentSession, printer: Printer): { printMaps(): void; stop(): void } {
  const output = session.config?.config.output ?? {};
  for (const a of session.attachments) printer.attached(a);
  if (output.tracePrintk !== false) session.on("printk", (p) => printer.printk(p));
  session.on("event", (e) => printer.event(e));
  session.on("log", (l) => printer.log(l));
  const wanted = output.maps;
  const printMaps = () => {
    const dumps = session.mapSnapshot();
    printer.maps(wanted ? dumps.filter((d) => wanted.some((w) => d.name === w || d.name.endsWith(`.${w}`))) : dumps);
  };
  const timer = output.intervalMs ? setInterval(printMaps, output.intervalMs) : undefined;
  return { printMaps, stop: () => timer && clearInterval(timer) };
}

/** -j, or the config's output.format. */
function wantsJson(o: CommonOpts): boolean {
  if (o.json) return true;
  if (!o.config) return false;
  try {
    return loadConfigFile(o.config).config.output?.format === "json";
  } catch {
    return false; // the session reports the config's errors
  }
}

/** Runs `fn`, printing a BpfhookError (as JSON with -j) and setting exit code 1. */
async function guarded(printer: Printer, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof BpfhookError)) throw err;
    printer.error(err.message);
    process.exitCode = 1;
  }
}

export function runCommand(): Command {
  return commonOptions(
    new Command("run")
      .description(
        "start COMMAND with the agent preloaded and the programs attached before its main; print trace_printk lines and " +
          "ring/perf buffer events as they come and the maps when it exits; exit with its status",
      )
      .argument("[objects...]", "eBPF objects (.bpf.o); every program is attached by its section")
      .usage("[options] (-c CONFIG | OBJECT.bpf.o ...) -- COMMAND [ARGS...]"),
  )
    .action(async (objects: string[], o: CommonOpts) => {
      // bench:agent splits its start-up figure at this point (after Node and bpfhook's modules loaded).
      if (process.env.BPFHOOK_TIMING) process.stderr.write(`bpfhook-timing action ${Math.round((performance.timeOrigin + performance.now()) * 1e6)}\n`);
      const json = wantsJson(o);
      const printer = new Printer(json, process.stdout, process.stderr, o.quiet === true, o.verbose === true);
      // commander hands the words after "--" to the variadic argument too: they are the command.
      const sep = process.argv.indexOf("--");
      const command = sep >= 0 ? process.argv.slice(sep + 1) : [];
      const objs = objects.slice(0, Math.max(0, objects.length - command.length));
      // The terminal's Ctrl-C reaches the command too (same process group);
      // bpfhook waits for it to end, then prints and cleans up. The handlers
      // are in place before the session starts: a signal while it starts
      // (the region exists, the command may be running) is handed to the
      // command once it runs, instead of killing bpfhook and leaving both.
      let session: AgentSession | undefined;
      let pending: NodeJS.Signals | undefined;
      const forward = (sig: NodeJS.Signals) => () => {
        if (session === undefined) pending ??= sig;
        else if (session.child && session.child.exitCode === null) session.child.kill(sig);
      };
      const onInt = forward("SIGINT");
      const onTerm = forward("SIGTERM");
      process.on("SIGINT", onInt);
      process.on("SIGTERM", onTerm);
      try {
        await guarded(printer, async () => {
          if (command.length === 0) throw new BpfhookError("BAD_ARGUMENT", "run: give the command after '--': bpfhook run prog.bpf.o -- ./app args");
          if (!o.config && objs.length === 0) throw new BpfhookError("BAD_ARGUMENT", "run: give a config (-c) or objects to load");
          const s = await AgentSession.run({
            ...sessionOptions(objs, o, printer),
            command: command[0]!,
            args: command.slice(1),
            // With -j stdout carries only JSON lines: the command's stdout goes to stderr.
            stdio: json ? ["inherit", 2, 2] : "inherit",
          });
          session = s;
          const out = wire(s, printer);
          try {
            if (pending !== undefined) forward(pending)();
            const st = await s.exited;
            await new Promise((r) => setTimeout(r, 20));
            s.flush();
            out.stop();
            out.printMaps();
            printer.exit(st.status);
            process.exitCode = st.status;
          } finally {
            s.close();
          }
        });
      } finally {
        process.off("SIGINT", onInt);
        process.off("SIGTERM", onTerm);
      }
    });
}

export function attachCommand(): Command {
  return commonOptions(
    new Command("attach")
      .description(
        "inject the agent into running process PID (ptrace) and attach the programs; print events until --duration ends " +
          "or Ctrl-C, then detach, print the maps and leave the process running",
      )
      .argument("[objects...]", "eBPF objects (.bpf.o); every program is attached by its section")
      .requiredOption("-p, --pid <pid>", "the process to attach to")
      .option("-d, --duration <seconds>", "detach after this many seconds (default: until Ctrl-C or the process exits)"),
  ).action(async (objects: string[], o: CommonOpts & { pid: string; duration?: string }) => {
    const printer = new Printer(wantsJson(o), process.stdout, process.stderr, o.quiet === true, o.verbose === true);
    await guarded(printer, async () => {
      const pid = parsePositive(o.pid, "--pid");
      const duration = o.duration === undefined ? undefined : Number(o.duration);
      if (duration !== undefined && !(duration > 0)) throw new BpfhookError("BAD_ARGUMENT", `--duration: expected seconds > 0, got '${o.duration}'`);
      if (!o.config && objects.length === 0) throw new BpfhookError("BAD_ARGUMENT", "attach: give a config (-c) or objects to load");
      // Ctrl-C while attaching: detach as soon as the attach is done, rather
      // than die and leave the region (and the agent waiting for a plan).
      let stop: () => void = () => {};
      const stopped = new Promise<void>((resolve) => {
        stop = resolve;
      });
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      let session: AgentSession;
      try {
        session = await AgentSession.attach({ ...sessionOptions(objects, o, printer), pid });
      } catch (err) {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        throw err;
      }
      const out = wire(session, printer);
      const timer = duration === undefined ? undefined : setTimeout(stop, duration * 1000);
      const watch = setInterval(() => {
        if (!processAlive(pid)) stop();
      }, 200);
      try {
        await stopped;
        printer.progress(`detaching from process ${pid}`);
        session.flush();
        out.stop();
        await session.detach();
        out.printMaps();
      } finally {
        if (timer) clearTimeout(timer);
        clearInterval(watch);
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        session.close();
      }
    });
  });
}

export function detachCommand(): Command {
  return new Command("detach")
    .description("detach every probe bpfhook attached in process PID (the process keeps running)")
    .requiredOption("-p, --pid <pid>", "the traced process")
    .option("-j, --json", "JSON lines")
    .action(async (o: { pid: string; json?: boolean }) => {
      const printer = new Printer(o.json === true);
      await guarded(printer, async () => {
        const pid = parsePositive(o.pid, "--pid");
        const regions = regionsOfProcess(pid);
        if (regions.length === 0) throw new BpfhookError("NOT_FOUND", `detach: no bpfhook agent serves process ${pid} (see 'bpfhook ps')`);
        let removed = 0;
        for (const r of regions) {
          try {
            const n = r.area.info().nAttach;
            for (let i = 0; i < n; i++) {
              if (r.area.attachResult(i).state === AttachState.WANT && r.area.removeAttach(i)) removed++;
            }
            const seq = r.area.publish();
            const deadline = Date.now() + 5000;
            while (Date.now() < deadline && r.area.processes().some((p) => p.pid === pid && p.appliedSeq < seq && processAlive(p.pid))) {
              await new Promise((res) => setTimeout(res, 5));
            }
          } finally {
            r.region.close();
          }
        }
        printer.line("detached", { pid, attachments: removed }, `detached ${removed} attachment${removed === 1 ? "" : "s"} from process ${pid}`);
      });
    });
}

export function mapsCommand(): Command {
  return new Command("maps")
    .description("print the maps of a process traced by bpfhook, live from the shared region")
    .requiredOption("-p, --pid <pid>", "the traced process")
    .option("-w, --watch [seconds]", "print again every few seconds (default 1) until Ctrl-C")
    .option("-j, --json", "JSON lines")
    .action(async (o: { pid: string; watch?: string | boolean; json?: boolean }) => {
      const printer = new Printer(o.json === true);
      await guarded(printer, async () => {
        const pid = parsePositive(o.pid, "--pid");
        const regions = regionsOfProcess(pid);
        if (regions.length === 0) throw new BpfhookError("NOT_FOUND", `maps: no bpfhook agent serves process ${pid} (see 'bpfhook ps')`);
        const every = o.watch === undefined ? 0 : o.watch === true ? 1 : Number(o.watch);
        try {
          for (;;) {
            for (const r of regions) printer.maps(dumpRegion(r.region));
            if (every <= 0 || !processAlive(pid)) break;
            const stop = await Promise.race([
              new Promise<boolean>((res) => setTimeout(() => res(false), every * 1000)),
              new Promise<boolean>((res) => process.once("SIGINT", () => res(true))),
            ]);
            if (stop) break;
            if (!o.json) process.stdout.write("\n");
          }
        } finally {
          for (const r of regions) r.region.close();
        }
      });
    });
}

export function psCommand(): Command {
  return new Command("ps")
    .description("list the regions of agent mode (this user's) and the processes their agents run in")
    .option("-j, --json", "JSON lines")
    .action((o: { json?: boolean }) => {
      const printer = new Printer(o.json === true);
      const regions = findAgentRegions();
      try {
        if (!o.json && regions.length === 0) console.log("no bpfhook regions with agents");
        for (const r of regions) {
          const procs = r.processes.map((p) => ({
            pid: p.pid,
            state: PROC_STATE_NAMES[p.state] ?? String(p.state),
            alive: processAlive(p.pid),
            comm: p.comm,
            attached: p.attached,
            failed: p.failed,
            parent: p.parent,
          }));
          const data = { region: r.name, controller: r.controllerPid, controllerAlive: r.controllerAlive, processes: procs };
          if (o.json) {
            printer.line("region", data, "");
            continue;
          }
          console.log(`${r.name}  controller ${r.controllerPid}${r.controllerAlive ? "" : " (gone: 'bpfhook clean' removes it)"}`);
          for (const p of procs) {
            console.log(`  pid ${p.pid} ${p.comm || "?"}  ${p.alive ? p.state : "exited"}  ${p.attached} attached, ${p.failed} failed${p.parent ? `, forked from ${p.parent}` : ""}`);
          }
        }
      } finally {
        for (const r of regions) r.region.close();
      }
    });
}

/** Every map of a region read raw: integers when 4 or 8 bytes, else hex. */
function dumpRegion(region: SharedRegion) {
  const out: { name: string; type: string; entries: { key: unknown; value: unknown }[] }[] = [];
  for (const d of region.maps()) {
    if (d.name.startsWith("__bpfhook_")) continue;
    const m = region.openMap(d.name) as unknown as { typeName?: string; entries?: () => Iterable<[Buffer, Buffer]>; close(): void };
    try {
      const type = m.typeName ?? String(d.type);
      if (["ringbuf", "perf_event_array", "stack_trace"].includes(type) || typeof m.entries !== "function") continue;
      const entries: { key: unknown; value: unknown }[] = [];
      for (const [k, v] of m.entries()) {
        entries.push({ key: rawValue(k), value: Array.isArray(v) ? v.map(rawValue) : rawValue(v) });
        if (entries.length >= 10_000) break;
      }
      out.push({ name: d.name, type, entries });
    } finally {
      m.close();
    }
  }
  return out;
}

function rawValue(b: unknown): unknown {
  if (!Buffer.isBuffer(b)) return jsonValue(b);
  if (b.length === 4) return b.readUInt32LE(0);
  if (b.length === 8) return jsonValue(b.readBigUInt64LE(0));
  return b.toString("hex");
}

