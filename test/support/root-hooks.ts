/**
 * Mocha root hooks (loaded by .mocharc.json's `require`): a test run leaves
 * nothing behind, neither in the temporary directory nor in /dev/shm.
 *
 * - The run gets its own temporary directory: TMPDIR is set, before any test
 *   file loads, to a fresh <os.tmpdir()>/bpfhook-testrun-XXXXXX (mode 1777
 *   like /tmp, since some tests run children as uid 65534), so os.tmpdir()
 *   here and in every child (clang, gcc, the CLI, agents) points there and
 *   whatever appears in it is this run's, whatever else runs on the machine.
 * - /dev/shm cannot be redirected (shm_open): the bpfhook* names there are
 *   snapshotted at the start, and a name that appears during the run is this
 *   run's unless, when first seen, its creator (the pid in bpfhook-<pid>-...)
 *   lived outside this process's tree (another test run on the machine):
 *   shm-watch.ts, as a worker thread, looks every 20 ms.
 * - After each test its testTempDir folders go (support/tmp.ts); new names
 *   are noted with the test they first appeared after, so a leak is reported
 *   with the test that left it.
 * - After the run the run-wide caches go (runTempDir, the test kit's
 *   compileC folder), then any bpfhook* name still in the run's temporary
 *   directory or new in /dev/shm fails the root "after all" hook, which
 *   lists each with its test. The run's directory is removed either way, and
 *   so are our leaked regions (one bad run does not fail the next). This
 *   process's own regions (the process default region lives until exit) are
 *   checked at exit instead, after core unlinks them: one left sets the exit
 *   status to 1 and is named on stderr.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import { foreignRegion, OURS, SHM, type ShmSeen, type ShmWatchData } from "./shm-watch.js";
import { runEnded, testEnded, testStarted } from "./tmp.js";

const outerTmp = os.tmpdir();
const runTmp = mkdtempSync(path.join(outerTmp, "bpfhook-testrun-"));
chmodSync(runTmp, 0o1777);
process.env["TMPDIR"] = runTmp;
// Safety net: a run that dies before the afterAll hook still takes its directory away.
process.once("exit", () => rmSync(runTmp, { recursive: true, force: true, maxRetries: 3 }));

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const shmBefore = new Set(list(SHM).filter((n) => OURS.test(n)));
/** New /dev/shm names: true when another run's (classified by the watcher when first seen). */
const foreign = new Map<string, boolean>();
const channel = new MessageChannel();
const watchData: ShmWatchData = { root: process.pid, before: [...shmBefore], port: channel.port2 };
const watcher = new Worker(path.join(__dirname, "shm-watch.js"), { workerData: watchData, transferList: [channel.port2] });
watcher.unref();
channel.port1.unref();

function drainWatcher(): void {
  for (let m = receiveMessageOnPort(channel.port1); m !== undefined; m = receiveMessageOnPort(channel.port1)) {
    const seen = m.message as ShmSeen;
    foreign.set(seen.name, seen.foreign);
  }
}

/** name -> the test after which it was first seen. */
const firstSeen = new Map<string, string>();

/** Regions this process created are bpfhook-<our pid>-...: the process default region lives until exit. */
const own = (n: string) => n.startsWith(`bpfhook-${process.pid}-`);

function leftovers(): { tmp: string[]; shm: string[]; ownShm: string[]; other: string[] } {
  drainWatcher();
  const inRun = list(runTmp);
  // Not yet seen by the watcher: classified now.
  const shm = list(SHM).filter((n) => OURS.test(n) && !shmBefore.has(n) && !(foreign.get(n) ?? foreignRegion(n, process.pid)));
  return {
    tmp: inRun.filter((n) => OURS.test(n)),
    other: inRun.filter((n) => !OURS.test(n)),
    shm: shm.filter((n) => !own(n)),
    ownShm: shm.filter(own),
  };
}

/**
 * This process's own regions still there at the end (the process default
 * region, SharedRegion.default(), and any the tests did not close) are
 * unlinked at exit by core's exit hook (maps/region.ts), registered before
 * this one: checked after it, a name still there fails the exit status.
 */
function checkOwnAtExit(names: readonly string[]): void {
  process.once("exit", () => {
    const left = names.filter((n) => list(SHM).includes(n));
    if (left.length === 0) return;
    process.stderr.write(`\nLEAK: this test process's regions were not removed at exit:\n${left.map((n) => `  ${path.join(SHM, n)}`).join("\n")}\n`);
    for (const n of left) rmSync(path.join(SHM, n), { force: true });
    // Not exitCode: mocha's own exit listener, registered after this one, sets it to the failure count.
    process.exit(1);
  });
}

function note(test: string): void {
  const l = leftovers();
  for (const n of l.tmp) if (!firstSeen.has(`tmp:${n}`)) firstSeen.set(`tmp:${n}`, test);
  for (const n of l.shm) if (!firstSeen.has(`shm:${n}`)) firstSeen.set(`shm:${n}`, test);
}

export const mochaHooks = {
  beforeEach(): void {
    testStarted();
  },
  afterEach(this: Mocha.Context): void {
    testEnded();
    note(this.currentTest?.fullTitle() ?? "(unknown test)");
  },
  afterAll(): void {
    runEnded();
    // The test kit's compileC folder (test 58's contract runs), where the kit was loaded.
    const testkit = require.resolve("@bpfhook/testkit");
    if (require.cache[testkit] !== undefined) (require(testkit) as typeof import("@bpfhook/testkit")).removeCompiled();
    const l = leftovers();
    void watcher.terminate();
    checkOwnAtExit(l.ownShm);
    try {
      if (l.other.length > 0) {
        console.log(`  note: the run's temporary directory also held (not ours, not failed): ${l.other.join(", ")}`);
      }
      const lines = [
        ...l.tmp.map((n) => `  ${path.join(outerTmp, "<run>", n)}  (first seen after: ${firstSeen.get(`tmp:${n}`) ?? "the last test"})`),
        ...l.shm.map((n) => `  ${path.join(SHM, n)}  (first seen after: ${firstSeen.get(`shm:${n}`) ?? "the last test"})`),
      ];
      if (lines.length > 0) {
        throw new Error(`the test run left ${lines.length} file(s) behind:\n${lines.join("\n")}`);
      }
    } finally {
      rmSync(runTmp, { recursive: true, force: true, maxRetries: 3 });
      for (const n of l.shm) rmSync(path.join(SHM, n), { force: true });
    }
  },
};
