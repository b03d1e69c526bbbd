/**
 * The agent area of a shared region (core/native/agent/include/bpfhook/
 * agent_area.h): the controller's requests to the agents of agent mode and
 * their answers. A typed face over the addon's NativeAgentArea.
 */
import { native } from "../native/binding.js";
import type { NativeAgentArea, NativeAgentAreaOptions } from "../native/addon-types.js";
import type { SharedRegion } from "../maps/index.js";

export {
  AgentAttachState as AttachState,
  AgentResult as AttachResult,
  AgentProcState as ProcState,
} from "../native/addon-types.js";

export const PROC_STATE_NAMES = ["free", "starting", "running", "gone"] as const;

/** The environment variables of a target started under the agent (agent_area.h). */
export const AgentEnv = {
  REGION: "BPFHOOK_REGION",
  LOG: "BPFHOOK_AGENT_LOG",
  NOINHERIT: "BPFHOOK_AGENT_NOINHERIT",
} as const;

export type { NativeAgentArea, NativeAgentAreaOptions };

/** Creates the area in a region this process owns (no maps or area in it yet is best). */
export function createAgentArea(region: SharedRegion, opts: NativeAgentAreaOptions = {}): NativeAgentArea {
  return native().NativeAgentArea.create(region.native, opts);
}

/** The area of an existing region (ps, detach, maps of another controller's target). */
export function openAgentArea(region: SharedRegion): NativeAgentArea {
  return native().NativeAgentArea.open(region.native);
}

/** True when process `pid` exists (signal 0); EPERM means it exists as another user's. */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
