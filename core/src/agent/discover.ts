/**
 * Finding the regions of agent mode from another bpfhook process (`bpfhook
 * ps`, `detach -p`, `maps -p`): this user's /dev/shm/bpfhook-* objects that
 * open as regions and carry an agent area. Anything else there (another
 * user's, a garbage or embedded-mode region) is skipped, never trusted.
 */
import { readdirSync, statSync } from "node:fs";
import { SharedRegion } from "../maps/index.js";
import { openAgentArea, processAlive, ProcState, type NativeAgentArea } from "./area.js";
import type { NativeAgentProcess } from "../native/addon-types.js";

export interface AgentRegion {
  /** "/bpfhook-..." */
  name: string;
  region: SharedRegion;
  area: NativeAgentArea;
  controllerPid: number;
  controllerAlive: boolean;
  /** Agent processes with a record (running, starting, or gone). */
  processes: NativeAgentProcess[];
}

const SHM_DIR = "/dev/shm";

/** Opens every agent-mode region of this user; the caller closes `region` of each. */
export function findAgentRegions(): AgentRegion[] {
  let names: string[];
  try {
    names = readdirSync(SHM_DIR).filter((n) => n.startsWith("bpfhook-"));
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  const out: AgentRegion[] = [];
  for (const n of names.sort()) {
    try {
      const st = statSync(`${SHM_DIR}/${n}`);
      if (!st.isFile() || (uid !== undefined && st.uid !== uid)) continue;
    } catch {
      continue;
    }
    let region: SharedRegion;
    try {
      region = SharedRegion.open(`/${n}`);
    } catch {
      continue;
    }
    try {
      const area = openAgentArea(region);
      const info = area.info();
      out.push({
        name: `/${n}`,
        region,
        area,
        controllerPid: info.controllerPid,
        controllerAlive: processAlive(info.controllerPid),
        processes: area.processes(),
      });
    } catch {
      region.close();
    }
  }
  return out;
}

/** The regions whose agents serve process `pid` now (running or starting). */
export function regionsOfProcess(pid: number): AgentRegion[] {
  const all = findAgentRegions();
  const mine: AgentRegion[] = [];
  for (const r of all) {
    if (r.processes.some((p) => p.pid === pid && (p.state === ProcState.RUNNING || p.state === ProcState.STARTING) && processAlive(p.pid))) {
      mine.push(r);
    } else {
      r.region.close();
    }
  }
  return mine;
}

/**
 * Names of the regions whose agents still run (some process record alive):
 * what the automatic clean-up of stale regions must keep, since those
 * programs still write the maps.
 */
export function regionsWithLiveAgents(): string[] {
  const names: string[] = [];
  for (const r of findAgentRegions()) {
    if (r.processes.some((p) => (p.state === ProcState.RUNNING || p.state === ProcState.STARTING) && processAlive(p.pid))) names.push(r.name);
    r.region.close();
  }
  return names;
}
