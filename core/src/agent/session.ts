/**
 * Agent mode's controller: a Runtime whose programs run in another process.
 *
 *   const s = await AgentSession.run({ objects: ["count.bpf.o"], command: "./app", args: [] });
 *   s.on("printk", (p) => console.log(p.message));
 *   const status = await s.exited;        // the command's exit
 *   console.log(s.mapSnapshot());
 *   s.close();
 *
 * run: the region (with its agent area) is made first, then the command is
 * started with the agent preloaded; the agent maps the region and waits
 * before main while the controller resolves every attach point in the new
 * process, records the plan and publishes it; the agent attaches, answers,
 * and main runs. attach: the plan is recorded for a running process, the
 * agent is injected with ptrace and told the region's name.
 *
 * Events: "attached" / "attachFailed" per attachment, "printk" per
 * trace_printk line, "event" per ring or perf buffer record, "log" per line
 * the agent logs, "exit" when a command started by run ends.
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { chownSync, existsSync, readFileSync } from "node:fs";
import { EventEmitter } from "node:events";
import path from "node:path";
import { BpfhookError } from "../errors.js";
import { applyConfig, createRuntimeForConfig } from "../config/apply.js";
import { loadConfigFile, type LoadedConfig } from "../config/load.js";
import type { RingBufMap, PerfEventArray, RingBufferConsumer, PerfBufferConsumer, SharedRegion } from "../maps/index.js";
import type { Link } from "../runtime/link.js";
import type { LoadedObject } from "../runtime/loaded-object.js";
import { Runtime } from "../runtime/runtime.js";
import { AgentEnv, processAlive } from "./area.js";
import type { AgentBackend, AgentAttachOutcome } from "./backend.js";
import type { VerifierMode } from "../verifier/types.js";
import { injectLibrary } from "./inject.js";
import { mapDump, recordValue, type MapDump } from "./dump.js";

/** Plugins that ship with bpfhook: always available to the CLI, resolved next to core only. */
export const BUNDLED_PLUGINS = ["@bpfhook/plugin-simple", "@bpfhook/plugin-frida-uprobe", "@bpfhook/plugin-syscall-trace"] as const;

export interface AgentSessionOptions {
  /** A config file (YAML or JSON, docs/CONFIG.md). */
  config?: string;
  /** Objects to load besides the config's; every program is attached by its section. */
  objects?: readonly string[];
  /** More plugins: npm package names (resolved from the working directory: the user named them) or directories. */
  plugins?: readonly string[];
  /** Keep probes attached when this controller dies (default: the config's, else false). */
  keepProbesOnExit?: boolean;
  /** Agent log in the target: a file, "stderr", or undefined for this controller ("log" events). */
  agentLog?: string;
  /** Bound on waiting for the agent to start / to apply a plan (ms). Default 5000 / 10000. */
  startTimeoutMs?: number;
  settleTimeoutMs?: number;
  /** Region size in bytes (default: the config's, else 64 MiB). */
  regionSize?: number;
  /** The verifier mode (RuntimeOptions.verifier); wins over the config's `verifier`. Default: the config's, else strict. */
  verifier?: VerifierMode;
  /** Progress lines for long steps. */
  progress?: (message: string) => void;
}

export interface RunOptions extends AgentSessionOptions {
  command: string;
  args?: readonly string[];
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface AttachPidOptions extends AgentSessionOptions {
  pid: number;
  /** Bound on each wait of the ptrace injection (ms, default 5000). */
  injectTimeoutMs?: number;
}

/** One attachment and what the agent made of it. */
export interface AttachmentReport {
  program: string;
  /** Attach type name ("uprobe"). */
  attach: string;
  /** The plugin's description of the attach point. */
  target: string;
  ok: boolean;
  pid: number;
  errno: number;
  message: string;
}

export interface PrintkLine {
  pid: number;
  tid: number;
  message: string;
}

export interface AgentLogLine {
  pid: number;
  level: "debug" | "info" | "warn" | "error";
  message: string;
}

export interface BufferEvent {
  map: string;
  /** Decoded from BTF when a struct of the record's size is known, else a hex string. */
  value: unknown;
  cpu?: number;
}

export interface ExitStatus {
  /** Exit code, or 128 + signal number when killed. */
  status: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

const LEVELS = ["debug", "info", "warn", "error"] as const;
const RING_BYTES = 1 << 20;

/** Path of the agent library built with core (core/build/Release/libbpfhook_agent.so). */
export function agentLibraryPath(): string {
  const root = path.resolve(__dirname, "..", "..");
  const candidates = [path.join(root, "build", "Release", "libbpfhook_agent.so"), path.join(root, "build", "libbpfhook_agent.so")];
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new BpfhookError("NATIVE_NOT_BUILT", `agent library not built: looked in ${candidates.join(", ")}; run 'npm run build:native'`);
  }
  return found;
}

export class AgentSession extends EventEmitter {
  readonly attachments: AttachmentReport[] = [];
  /** The command's exit (run), or a promise that never settles (attach). */
  readonly exited: Promise<ExitStatus>;
  #pollers: { close(): void }[] = [];
  #links: Link[] = [];
  #closed = false;
  #resolveExit: (s: ExitStatus) => void = () => {};
  #exitStatus: ExitStatus | undefined;

  private constructor(
    readonly runtime: Runtime,
    readonly backend: AgentBackend,
    readonly objects: ReadonlyMap<string, LoadedObject>,
    readonly config: LoadedConfig | undefined,
    public pid: number,
    readonly child: ChildProcess | undefined,
  ) {
    super();
    this.exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  /** The region the target shares with this controller. */
  get region(): SharedRegion {
    return this.runtime.sharedRegion();
  }

  /** The command's exit status once it has ended (run). */
  get exitStatus(): ExitStatus | undefined {
    return this.#exitStatus;
  }

  /** Starts `command` with the agent preloaded and every program attached before its main. */
  static async run(opts: RunOptions): Promise<AgentSession> {
    const agentLib = agentLibraryPath();
    const { runtime, backend, cfg } = await makeRuntime(opts);
    let child: ChildProcess | undefined;
    let session: AgentSession | undefined;
    try {
      const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env) };
      env.LD_PRELOAD = env.LD_PRELOAD ? `${agentLib}:${env.LD_PRELOAD}` : agentLib;
      env[AgentEnv.REGION] = runtime.sharedRegion().name;
      const log = opts.agentLog ?? cfg?.config.agent?.log;
      if (log !== undefined) env[AgentEnv.LOG] = log;
      else delete env[AgentEnv.LOG];
      opts.progress?.(`starting ${opts.command}`);
      child = spawn(opts.command, [...(opts.args ?? [])], {
        stdio: opts.stdio ?? "inherit",
        env,
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      });
      const spawned = child;
      const exitEarly = onceExit(spawned);
      await waitSpawned(spawned, opts.command);
      const pid = spawned.pid!;
      await waitAgentStart(backend, pid, opts.startTimeoutMs ?? 5000, exitEarly, opts.command);
      session = new AgentSession(runtime, backend, new Map(), cfg, pid, spawned);
      const s = session;
      void exitEarly.then((st) => s.#onExit(st));
      runtime.setAttachTarget({ pid, moduleRelative: true });
      await session.#populate(opts, cfg);
      await session.#handOver(opts.settleTimeoutMs);
      return session;
    } catch (err) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      session?.close();
      runtime.close();
      throw err;
    }
  }

  /** Attaches to running process `pid`: records the plan, injects the agent, waits for its answer. */
  static async attach(opts: AttachPidOptions): Promise<AgentSession> {
    if (!Number.isInteger(opts.pid) || opts.pid <= 0) {
      throw new BpfhookError("BAD_ARGUMENT", `attach: pid must be a positive integer, got ${opts.pid}`);
    }
    if (!processAlive(opts.pid)) throw new BpfhookError("NOT_FOUND", `attach: no process ${opts.pid}`);
    const agentLib = agentLibraryPath();
    const { runtime, backend, cfg } = await makeRuntime(opts);
    const session = new AgentSession(runtime, backend, new Map(), cfg, opts.pid, undefined);
    try {
      giveRegionTo(runtime.sharedRegion(), opts.pid);
      runtime.setAttachTarget({ pid: opts.pid, moduleRelative: true });
      await session.#populate(opts, cfg);
      opts.progress?.(`injecting the agent into process ${opts.pid}`);
      const seq = backend.publish();
      const injected = injectLibrary(opts.pid, agentLib, {
        ...(opts.injectTimeoutMs === undefined ? {} : { timeoutMs: opts.injectTimeoutMs }),
        callSymbol: "bh_agent_attach_region",
        callArg: runtime.sharedRegion().name,
      });
      if (injected.called && injected.callRet < 0) {
        throw new BpfhookError("AGENT_ERROR", `agent in process ${opts.pid} refused region ${runtime.sharedRegion().name} (${injected.callRet})`, {
          errno: injected.callRet,
        });
      }
      await waitAgentStart(backend, opts.pid, opts.startTimeoutMs ?? 5000, undefined, `process ${opts.pid}`);
      await session.#collect(seq, opts.settleTimeoutMs);
      return session;
    } catch (err) {
      session.close();
      throw err;
    }
  }

  /** Loads the config's and the command line's objects and records every attachment. */
  async #populate(opts: AgentSessionOptions, cfg: LoadedConfig | undefined): Promise<void> {
    const objects = this.objects as Map<string, LoadedObject>;
    if (cfg) {
      opts.progress?.(`loading ${cfg.file}`);
      const configured = await applyConfig(this.runtime, cfg);
      for (const [name, obj] of configured.objects) objects.set(name, obj);
      this.#links.push(...configured.links);
    }
    for (const file of opts.objects ?? []) {
      opts.progress?.(`loading ${file}`);
      const obj = this.runtime.load(path.resolve(file));
      let name = path.basename(file).replace(/(\.bpf)?\.o$/, "");
      for (let n = 2; objects.has(name); n++) name = `${path.basename(file).replace(/(\.bpf)?\.o$/, "")}#${n}`;
      objects.set(name, obj);
      for (const program of obj.programs) {
        if (!this.runtime.registry.matchSection(program.section)) {
          throw new BpfhookError(
            "NOT_FOUND",
            `${file}: prog '${program.name}': section '${program.section}' is served by no plugin; add one with --plugin, ` +
              "or use a config file that says how to attach it",
            { file, section: program.section, symbol: program.name },
          );
        }
        this.#links.push(await program.attach());
      }
    }
    if (!cfg && (opts.objects ?? []).length === 0) throw new BpfhookError("BAD_ARGUMENT", "nothing to load: give a config (-c) or objects");
  }

  /** run: publishes the plan the starting agent waits for, then collects its answers. */
  async #handOver(settleTimeoutMs?: number): Promise<void> {
    const seq = this.backend.publish();
    await this.#collect(seq, settleTimeoutMs);
  }

  async #collect(seq: number, settleTimeoutMs?: number): Promise<void> {
    const outcomes = await this.backend.settle(seq, this.#links.map((l) => l.id), settleTimeoutMs);
    const failed: AttachmentReport[] = [];
    for (const [i, link] of this.#links.entries()) {
      const report = toReport(link, outcomes[i]!);
      this.attachments.push(report);
      if (report.ok) this.emit("attached", report);
      else failed.push(report);
    }
    if (failed.length > 0) {
      for (const f of failed) this.emit("attachFailed", f);
      // A target that died while attaching (the agent crashed with it) answers nothing.
      const died = !processAlive(this.pid) ? `process ${this.pid} died during the attach; ` : "";
      // Where an agent gave no answer, what it logged is the best clue.
      const silent = failed.some((f) => f.pid === 0) ? this.#agentLogTail() : "";
      throw new BpfhookError(
        "ATTACH_FAILED",
        died +
          failed
            .map((f) => {
              const what = f.target.startsWith(`${f.attach} `) ? f.target : `${f.attach} ${f.target}`;
              return `prog '${f.program}' (${what}): ${f.message || `error ${f.errno}`}${f.pid ? ` (process ${f.pid})` : ""}`;
            })
            .join("; ") +
          (silent ? `; the agent's log: ${silent}` : ""),
        { errno: failed[0]!.errno },
      );
    }
    this.backend.live = true;
    this.#startPollers();
  }

  #startPollers(): void {
    const region = this.region;
    for (const [name, handler] of [
      ["__bpfhook_printk", (b: Buffer) => this.#onPrintk(b)],
      ["__bpfhook_log", (b: Buffer) => this.#onLog(b)],
    ] as const) {
      const ring = region.openMap(name) as RingBufMap;
      const consumer = ring.consumer({ intervalMs: 10 });
      consumer.on("data", handler);
      consumer.start();
      this.#pollers.push(consumer, { close: () => ring.close() });
    }
    for (const [objName, obj] of this.objects) {
      for (const m of obj.maps) {
        const map = m.map;
        if (!("typeName" in map)) continue;
        if (map.typeName === "ringbuf") {
          const consumer: RingBufferConsumer = (map as RingBufMap).consumer({ intervalMs: 10 });
          consumer.on("data", (rec: Buffer) => this.emit("event", { map: m.name, value: recordValue(obj, rec) } satisfies BufferEvent));
          consumer.start();
          this.#pollers.push(consumer);
        } else if (map.typeName === "perf_event_array") {
          const consumer: PerfBufferConsumer = (map as PerfEventArray).consumer({ intervalMs: 10 });
          consumer.on("data", (s: { cpu: number; data: Buffer }) =>
            this.emit("event", { map: m.name, value: recordValue(obj, s.data), cpu: s.cpu } satisfies BufferEvent),
          );
          consumer.start();
          this.#pollers.push(consumer);
        }
        void objName;
      }
    }
  }

  #onPrintk(b: Buffer): void {
    if (b.length < 8) return;
    const message = b.toString("utf8", 8).replace(/\n$/, "");
    this.emit("printk", { pid: b.readUInt32LE(0), tid: b.readUInt32LE(4), message } satisfies PrintkLine);
  }

  /** The agent's last log lines (its ring, drained once), for an error message. */
  #agentLogTail(): string {
    const lines: string[] = [];
    try {
      const ring = this.region.openMap("__bpfhook_log") as RingBufMap;
      try {
        const consumer = ring.consumer({ intervalMs: 10 });
        consumer.on("data", (b: Buffer) => {
          if (b.length >= 8) lines.push(`[${b.readUInt32LE(0)}] ${b.toString("utf8", 8).replace(/\n$/, "")}`);
        });
        consumer.poll();
        consumer.stop();
      } finally {
        ring.close();
      }
    } catch {
      return "";
    }
    return lines.slice(-8).join(" | ") || "(nothing)";
  }

  #onLog(b: Buffer): void {
    if (b.length < 8) return;
    const level = LEVELS[Math.min(b.readUInt32LE(4), 3)]!;
    this.emit("log", { pid: b.readUInt32LE(0), level, message: b.toString("utf8", 8).replace(/\n$/, "") } satisfies AgentLogLine);
  }

  #onExit(st: ExitStatus): void {
    this.#exitStatus = st;
    this.#resolveExit(st);
    this.emit("exit", st);
  }

  /** Drains the event rings once more (before printing the end). */
  flush(): void {
    for (const p of this.#pollers) (p as { poll?: () => number }).poll?.();
  }

  /** Every map of every loaded object, decoded (BTF), for the end-of-run print. */
  mapSnapshot(): MapDump[] {
    const out: MapDump[] = [];
    for (const [objName, obj] of this.objects) {
      for (const m of obj.maps) {
        const dump = mapDump(objName, m, this.objects.size > 1);
        if (dump) out.push(dump);
      }
    }
    return out;
  }

  /**
   * Detaches every probe in the target (the program keeps running) and
   * waits for the agents to confirm. Idempotent.
   */
  async detach(timeoutMs = 5000): Promise<void> {
    if (!this.backend.live) return;
    for (const link of this.#links) link.detach();
    const seq = this.backend.publish();
    this.backend.live = false;
    try {
      await this.backend.settle(seq, [], timeoutMs);
    } catch {
      // an agent that no longer answers holds nothing we can reach
    }
  }

  /** Stops the pollers and closes the runtime (the region's name goes away). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.flush();
    for (const p of this.#pollers) p.close();
    this.#pollers = [];
    this.runtime.close();
  }
}

async function makeRuntime(opts: AgentSessionOptions): Promise<{ runtime: Runtime; backend: AgentBackend; cfg: LoadedConfig | undefined }> {
  const cfg = opts.config !== undefined ? loadConfigFile(opts.config) : undefined;
  const overrides = {
    ...(opts.regionSize !== undefined ? { region: { size: opts.regionSize } } : {}),
    ...(opts.verifier !== undefined ? { verifier: opts.verifier } : {}),
  };
  const runtime = cfg ? await createRuntimeForConfig(cfg, overrides) : await Runtime.create({ ...overrides, plugins: [] });
  try {
    registerPlugins(runtime, opts.plugins ?? []);
    const keep = opts.keepProbesOnExit ?? cfg?.config.agent?.keepProbesOnExit ?? false;
    const startWaitMs = cfg?.config.agent?.startTimeoutMs ?? opts.startTimeoutMs ?? 5000;
    const backend = runtime.enableAgent({ keepOnExit: keep, startWaitMs });
    if (opts.settleTimeoutMs !== undefined) backend.settleTimeoutMs = opts.settleTimeoutMs;
    const region = runtime.sharedRegion();
    const printk = region.createMap({ name: "__bpfhook_printk", type: "ringbuf", maxEntries: RING_BYTES });
    const log = region.createMap({ name: "__bpfhook_log", type: "ringbuf", maxEntries: RING_BYTES / 4 });
    backend.area.setRings(printk.native, log.native);
    return { runtime, backend, cfg };
  } catch (err) {
    runtime.close();
    if (err instanceof BpfhookError && /full|ENOMEM/.test(err.message)) {
      throw new BpfhookError(err.code, `${err.message}; give a bigger region (--region-size, or region.size in the config)`, {
        ...err.detail,
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * The bundled plugins (next to core only: a package planted in the working
 * directory must not run, SECURITY.md), then the user's: a directory, or a
 * package name resolved from the working directory first (the user named
 * it there), then next to core.
 */
function registerPlugins(rt: Runtime, named: readonly string[]): void {
  for (const name of BUNDLED_PLUGINS) rt.registry.registerPackage(name, __dirname, rt.container);
  for (const name of named) {
    if (name.startsWith(".") || name.startsWith("/") || (existsSync(name) && existsSync(path.join(name, "package.json")))) {
      rt.registry.registerDirectory(name, rt.container);
      continue;
    }
    try {
      rt.registry.registerPackage(name, process.cwd(), rt.container);
    } catch (err) {
      if (!(err instanceof BpfhookError) || err.code !== "PLUGIN_NOT_FOUND") throw err;
      rt.registry.registerPackage(name, __dirname, rt.container);
    }
  }
}

/**
 * The agent only maps a region its own user owns: when root attaches to
 * another user's process, the region goes to that user (0600 stays).
 */
function giveRegionTo(region: SharedRegion, pid: number): void {
  if (process.getuid?.() !== 0) return;
  let uid: number | undefined;
  let gid: number | undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return; // the injector reports a vanished process
  }
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) return;
  chownSync(`/dev/shm${region.name}`, uid!, gid!);
}

function toReport(link: Link, o: AgentAttachOutcome): AttachmentReport {
  return {
    program: link.programName,
    attach: link.type.name,
    target: link.description,
    ok: o.ok,
    pid: o.pid,
    errno: o.errno,
    message: o.ok ? "" : o.message || (o.pid === 0 ? "no agent answered" : `error ${o.errno}`),
  };
}

function onceExit(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      const sig = signal ? (osSignal(signal) ?? 0) : 0;
      resolve({ status: code ?? 128 + sig, code, signal });
    });
  });
}

function osSignal(name: NodeJS.Signals): number | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { constants } = require("node:os") as typeof import("node:os");
  return constants.signals[name];
}

function waitSpawned(child: ChildProcess, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("spawn", () => resolve());
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(new BpfhookError("NOT_FOUND", `cannot start ${command}: ${err.code === "ENOENT" ? "no such file or command" : err.message}`, { file: command })),
    );
  });
}

/**
 * Waits until an agent in `pid` has registered in the area (bounded): its
 * record starting or running, not only claimed. An agent claims a record by
 * writing its pid first and fills the rest before it says STARTING; a
 * controller that went on at the pid alone could publish and settle while
 * the record still read FREE, and report the attachments as unanswered.
 */
async function waitAgentStart(backend: AgentBackend, pid: number, timeoutMs: number, exited: Promise<ExitStatus> | undefined, what: string): Promise<void> {
  let status: ExitStatus | undefined;
  void exited?.then((s) => {
    status = s;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (backend.processes().some((p) => p.pid === pid)) return;
    if (status !== undefined) {
      throw new BpfhookError(
        "AGENT_ERROR",
        `${what} exited (status ${status.status}) before the agent started in it; ` +
          "static and setuid programs ignore LD_PRELOAD",
      );
    }
    if (Date.now() >= deadline) {
      throw new BpfhookError(
        "AGENT_ERROR",
        `the agent did not start in ${what} (pid ${pid}) within ${timeoutMs} ms; ` +
          "static and setuid programs ignore LD_PRELOAD, and a program may clear its environment",
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}
