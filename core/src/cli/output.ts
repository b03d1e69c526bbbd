/**
 * What the agent-mode commands print. Human text by default; with -j one
 * JSON object a line, bpftrace's `-f json` shape: {"type": ..., "data": ...}.
 * Types: attached, printk, event, log, map, exit, error, progress.
 */
import type { AgentLogLine, AttachmentReport, BufferEvent, PrintkLine } from "../agent/session.js";
import type { MapDump } from "../agent/dump.js";
import { jsonValue } from "../agent/dump.js";

export class Printer {
  constructor(
    readonly json: boolean,
    private readonly out: NodeJS.WritableStream = process.stdout,
    private readonly err: NodeJS.WritableStream = process.stderr,
    private readonly quiet = false,
    private readonly verbose = false,
  ) {}

  line(type: string, data: unknown, human: string, toStderr = false): void {
    if (this.json) {
      this.out.write(`${JSON.stringify({ type, data: jsonValue(data) })}\n`);
      return;
    }
    (toStderr ? this.err : this.out).write(`${human}\n`);
  }

  progress(message: string): void {
    if (this.quiet) return;
    // Progress is for people; JSON readers get the results.
    if (!this.json) this.err.write(`bpfhook: ${message}\n`);
  }

  attached(a: AttachmentReport): void {
    // Plugins' descriptions usually start with the type already ("uprobe /bin/app:f").
    const what = a.target.startsWith(`${a.attach} `) ? a.target : `${a.attach} ${a.target}`;
    this.line(
      "attached",
      { program: a.program, attach: a.attach, target: a.target, pid: a.pid },
      `attached ${what} (prog ${a.program}) in process ${a.pid}`,
      true,
    );
  }

  printk(p: PrintkLine): void {
    this.line("printk", { pid: p.pid, tid: p.tid, message: p.message }, `[${p.pid}] ${p.message}`);
  }

  event(e: BufferEvent): void {
    const human = typeof e.value === "string" ? e.value : JSON.stringify(jsonValue(e.value));
    this.line("event", e.cpu === undefined ? { map: e.map, value: e.value } : { map: e.map, value: e.value, cpu: e.cpu }, `${e.map}: ${human}`);
  }

  /** The agent's own lines: warnings and errors for people (all of them with -v), everything in JSON. */
  log(l: AgentLogLine): void {
    if (!this.json && !this.verbose && (l.level === "debug" || l.level === "info")) return;
    this.line("log", l, `bpfhook agent[${l.pid}] ${l.level}: ${l.message}`, true);
  }

  maps(dumps: readonly MapDump[]): void {
    for (const d of dumps) {
      if (this.json) {
        this.line("map", { name: d.name, entries: d.entries }, "");
        continue;
      }
      this.out.write(`map ${d.name} (${d.type}, ${d.entries.length} entr${d.entries.length === 1 ? "y" : "ies"}):\n`);
      for (const e of d.entries) this.out.write(`  ${show(e.key)}: ${show(e.value)}\n`);
    }
  }

  exit(status: number): void {
    this.line("exit", { status }, `bpfhook: command exited with status ${status}`, true);
  }

  error(message: string): void {
    this.line("error", { message }, `bpfhook: ${message}`, true);
  }
}

function show(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}
