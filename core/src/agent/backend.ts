/**
 * Agent mode's side of a Runtime: instead of attaching in this process, the
 * runtime writes what it loads and attaches into the region's agent area,
 * where the agent in the target reads it (agent_area.h has the protocol).
 *
 * The runtime still loads and compiles every program here, so that a bad
 * program fails at load with the same message as in embedded mode; the
 * agent loads the same instructions with the same map references.
 *
 * Two phases: while `live` is false (bpfhook run, before the target exists),
 * attaches are only recorded and `publish()` hands them over at once; once
 * live, every attach and detach is published as it happens and an attach
 * waits for the agents' answer (`settle`).
 */
import type { AttachPlugin } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";
import type { NativeMapHandle, NativeProgArray, NativeProgram } from "../native/addon-types.js";
import type { SharedRegion } from "../maps/index.js";
import { AttachResult, createAgentArea, ProcState, processAlive, type NativeAgentArea, type NativeAgentAreaOptions } from "./area.js";

export interface ProgramModes {
  checked: boolean;
  interpreter: boolean;
  budget: number;
}

/** What an attachment became in the target: the agent's answer. */
export interface AgentAttachOutcome {
  index: number;
  ok: boolean;
  /** The process that applied it (0 while pending). */
  pid: number;
  errno: number;
  message: string;
}

const SETTLE_POLL_MS = 2;

export class AgentBackend {
  readonly area: NativeAgentArea;
  /** Attaches and detaches are published at once and waited for. */
  live = false;
  /** Default bound on waiting for the agents (ms). */
  settleTimeoutMs = 10_000;
  readonly #plugins = new Map<AttachPlugin, number>();
  readonly #programs = new WeakMap<NativeProgram, number>();
  readonly #progArrays = new WeakMap<NativeProgArray, number>();
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(
    readonly region: SharedRegion,
    opts: NativeAgentAreaOptions = {},
  ) {
    this.area = createAgentArea(region, opts);
    this.area.heartbeat();
    // The agents take a controller whose heartbeat and pid are gone as dead;
    // the pid check is what counts, the beat is for `bpfhook ps`.
    this.#heartbeat = setInterval(() => {
      try {
        this.area.heartbeat();
      } catch {
        // region closed under us: the session is ending
      }
    }, 100);
    this.#heartbeat.unref();
  }

  /** The plugin's record, added on first use (`library`: its checked absolute path). */
  plugin(plugin: AttachPlugin, library: string = plugin.nativeLibrary): number {
    let index = this.#plugins.get(plugin);
    if (index !== undefined) return index;
    if (!library) {
      throw new BpfhookError(
        "PLUGIN_INVALID",
        `[${plugin.name}] has no native library, so it cannot attach in another process (agent mode)`,
        { plugin: plugin.name },
      );
    }
    index = this.area.addPlugin(plugin.name, library, plugin.nativeGlobalSymbols !== undefined);
    this.#plugins.set(plugin, index);
    return index;
  }

  /** Records a program the runtime just loaded here, with the same map references. */
  addProgram(program: NativeProgram, name: string, insns: Uint8Array, maps: readonly unknown[], modes: ProgramModes): void {
    const refs = maps.map((m) => {
      const array = this.#progArrays.get(m as NativeProgArray);
      return array === undefined ? (m as NativeMapHandle) : { progArray: array };
    });
    const index = this.area.addProgram(name, insns, refs, modes);
    this.#programs.set(program, index);
  }

  /** Records a program array; slot changes go through `setSlot`. */
  addProgArray(array: NativeProgArray, maxEntries: number): number {
    const index = this.area.addProgArray(maxEntries);
    this.#progArrays.set(array, index);
    return index;
  }

  setSlot(array: NativeProgArray, slot: number, program: NativeProgram | undefined): void {
    const index = this.#progArrays.get(array);
    if (index === undefined) return;
    this.area.setProgArraySlot(index, slot, program === undefined ? -1 : this.programIndex(program));
    if (this.live) this.area.publish();
  }

  programIndex(program: NativeProgram): number {
    const index = this.#programs.get(program);
    if (index === undefined) throw new BpfhookError("BAD_ARGUMENT", "agent mode: program was not loaded by this runtime");
    return index;
  }

  /** Records an attachment; returns its record index (the link id). */
  attach(plugin: number, program: NativeProgram, type: number, data: Uint8Array, cookie: bigint): number {
    return this.area.addAttach(plugin, this.programIndex(program), type, data, cookie);
  }

  /** Link.detach's native call: marks the record removed, publishes when live. 0 or -ENOENT. */
  detach(id: number): number {
    if (!this.area.removeAttach(id)) return -2;
    if (this.live) this.area.publish();
    return 0;
  }

  /** Hands every request made so far to the agents. Returns the plan's sequence number. */
  publish(): number {
    return this.area.publish();
  }

  /**
   * Waits until every live agent process has applied plan `seq` (or
   * `timeoutMs` passes), then returns the outcome of attachments `ids`. A
   * process that died meanwhile is not waited for.
   */
  async settle(seq: number, ids: readonly number[], timeoutMs = this.settleTimeoutMs): Promise<AgentAttachOutcome[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pending = this.pendingProcesses(seq);
      // Every attachment asked about needs an answer from a live agent: an
      // agent that marked the plan applied while an answer is still missing
      // (seen on a loaded machine) is waited for too, within the same bound.
      const unanswered = pending.length === 0 && ids.some((i) => this.outcome(i).pid === 0) && this.processes().length > 0;
      if (pending.length === 0 && (!unanswered || Date.now() >= deadline)) break;
      if (pending.length > 0 && Date.now() >= deadline) {
        throw new BpfhookError(
          "AGENT_ERROR",
          `agent in process ${pending.join(", ")} did not apply the plan within ${timeoutMs} ms (is it stopped or hung?)`,
        );
      }
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
    }
    return ids.map((index) => this.outcome(index));
  }

  /** The agent's answer for attachment `index` now. */
  outcome(index: number): AgentAttachOutcome {
    const r = this.area.attachResult(index);
    return { index, ok: r.result === AttachResult.ATTACHED, pid: r.pid, errno: r.error, message: r.message };
  }

  /** Agents that exist and have not applied `seq` yet. */
  pendingProcesses(seq: number): number[] {
    return this.area
      .processes()
      .filter((p) => (p.state === ProcState.RUNNING || p.state === ProcState.STARTING) && p.appliedSeq < seq && processAlive(p.pid))
      .map((p) => p.pid);
  }

  /** Agents that are running (or starting) now. */
  processes() {
    return this.area.processes().filter((p) => (p.state === ProcState.RUNNING || p.state === ProcState.STARTING) && processAlive(p.pid));
  }

  close(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}
