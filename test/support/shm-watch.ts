/**
 * Whose is a bpfhook region in /dev/shm? Its name holds its creator's pid
 * (bpfhook-<pid>-..., or bpfhook-t29-<pid> in a test): the region is another
 * test run's when that process lives and is not a descendant of this one. Asked when the region is first
 * seen, while its creator still runs: the root hooks (root-hooks.ts) run
 * this file as a worker thread that looks every 20 ms, so a region made by a
 * child while mocha's own thread is blocked (spawnSync) is classified all
 * the same, and another run's regions never fail this one.
 */
import { readdirSync, readFileSync } from "node:fs";
import { isMainThread, parentPort, workerData, type MessagePort } from "node:worker_threads";

/** Names of ours: what test code and the product give their files and regions. */
export const OURS = /^(bpfhook|bh[-_])/;
export const SHM = "/dev/shm";

/** The parent of `pid`, or undefined when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may hold spaces and ')': count from the last ')'.
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** Where `pid` stands to `root`: below it (or it), in another tree, or neither (gone, a kernel thread). */
function relation(pid: number, root: number): "ours" | "foreign" | "none" {
  if (pid <= 2) return "none";
  if (parentOf(pid) === undefined) return "none"; // gone
  for (let hops = 0; hops < 64; hops++) {
    if (pid === root) return "ours";
    if (pid === 2) return "none"; // kthreadd's: a kernel thread, not a creator
    if (pid <= 1) return "foreign";
    const up = parentOf(pid);
    if (up === undefined) return "none";
    pid = up;
  }
  return "foreign";
}

/**
 * A region of another process tree than `root`'s. Names carry their
 * creator's pid, not always first (bpfhook-<pid>-..., a test's
 * bpfhook-t29-<pid>): every number between dashes is a candidate. Another
 * tree's when some candidate lives there and none is below `root`; a region
 * whose candidates are all gone is counted as ours (it appeared during our
 * run: a leak until shown otherwise).
 */
export function foreignRegion(name: string, root: number): boolean {
  let foreign = false;
  for (const m of name.matchAll(/(?<=-)(\d+)(?=-|$)/g)) {
    const r = relation(Number(m[1]), root);
    if (r === "ours") return false;
    if (r === "foreign") foreign = true;
  }
  return foreign;
}

export interface ShmWatchData {
  readonly root: number;
  readonly before: readonly string[];
  readonly port: MessagePort;
}

/** Message from the worker: a new name and whether it is another run's. */
export interface ShmSeen {
  readonly name: string;
  readonly foreign: boolean;
}

if (!isMainThread && parentPort !== null) {
  const { root, before, port } = workerData as ShmWatchData;
  const seen = new Set(before);
  const scan = (): void => {
    let names: string[];
    try {
      names = readdirSync(SHM);
    } catch {
      return;
    }
    for (const name of names) {
      if (!OURS.test(name) || seen.has(name)) continue;
      seen.add(name);
      port.postMessage({ name, foreign: foreignRegion(name, root) } satisfies ShmSeen);
    }
  };
  scan();
  setInterval(scan, 20);
}
