import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

// Another process can write anything into the shared region. Every index,
// offset, length and count the maps read from it is checked against the
// handle's own geometry before use: corruption gives an error naming the map
// (EFAULT, counted on the handle), never a read or write outside the region,
// never an endless walk. Both tests run the host in a child process, so a
// regression shows up as a signal or a timeout here, not as a dead mocha.
const support = path.join(__dirname, "support");

function runChild(script: string, args: string[], timeoutMs: number): string {
  const run = spawnSync(process.execPath, [path.join(support, script), ...args], { encoding: "utf8", timeout: timeoutMs });
  // corrupt-host removes its file for the scribbler on exit; a child killed at the timeout cannot.
  rmSync(path.join(os.tmpdir(), `bpfhook-t25-targets-${run.pid}.json`), { force: true });
  const tail = `\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
  assert.equal(run.error, undefined, `${script} did not finish in ${timeoutMs} ms (a hang)${tail}`);
  assert.equal(run.signal, null, `${script} died of ${run.signal}${tail}`);
  assert.equal(run.status, 0, `${script} exited ${run.status}${tail}`);
  return run.stdout.trim().split("\n").pop()!;
}

interface Outcome {
  name: string;
  error?: { code: string; errno: number | undefined; message: string };
  value?: unknown;
}

describe("25 maps: corrupt shared storage", () => {
  it("the crashes found by review are errors that name the map", function () {
    this.timeout(30000);
    const outcomes = JSON.parse(runChild("corrupt-cases.js", [], 25000)) as Outcome[];
    const by = new Map(outcomes.map((o) => [o.name, o]));
    const get = (name: string) => {
      const o = by.get(name);
      assert.ok(o, `case '${name}' did not run`);
      return o;
    };
    const efault: [string, string][] = [
      ["queue push", "q"],
      ["queue pop", "q"],
      ["queue size", "q"],
      ["hash set (free head)", "h"],
      ["hash get (bucket head)", "h2"],
      ["hash set (bucket head)", "h2"],
      ["hash delete (bucket head)", "h2"],
      ["hash keys (bucket head)", "h2"],
      ["hash size (count)", "h"],
      ["lpm keys (prefixlen)", "t"],
      ["lpm get (prefixlen)", "t"],
      ["lpm get (root)", "t"],
      ["lpm set (root)", "t"],
      ["lpm delete (root)", "t"],
      ["lpm keys (root)", "t"],
      ["lpm set (node free list)", "t"],
      ["stack_trace get (nr)", "s"],
      ["ringbuf consume (huge length)", "rb"],
      ["ringbuf consume (past producer)", "rb"],
      ["perf consume (huge size)", "p"],
      ["perf output (misaligned head)", "p"],
    ];
    for (const [name, map] of efault) {
      const o = get(name);
      assert.equal(o.error?.code, "MAP_ERROR", `${name}: ${JSON.stringify(o)}`);
      assert.equal(o.error?.errno, -14, `${name}: ${JSON.stringify(o)}`);
      assert.match(o.error!.message, new RegExp(`^map '${map}': .*EFAULT \\(shared storage is corrupt`), name);
    }
    // Program side: the helpers fail with -EFAULT (a lookup gives NULL), counted on the handle.
    assert.equal(get("queue helper push").value, -14);
    assert.equal(get("hash helper update (free head)").value, -14);
    assert.equal(get("hash helper lookup (bucket head)").value, null);
    assert.equal(get("queue corruptions").value, 4);
    assert.equal(get("hash corruptions").value, 5);
    // LRU eviction with its cursors far out still only looks inside the pool.
    const lru = get("lru set past capacity");
    assert.ok(lru.error === undefined || lru.error.errno === -14, JSON.stringify(lru));
    // The directory: a count past the capacity fails open and listing, and
    // lookups by name see only the entries within the capacity.
    for (const count of [0xffffffff, 1000]) {
      assert.deepEqual(
        [get(`dir_count ${count}: open`).error?.code, get(`dir_count ${count}: open`).error?.errno],
        ["ABI_MISMATCH", -71],
      );
      const maps = get(`dir_count ${count}: maps`).error;
      assert.equal(maps?.errno, -71);
      assert.match(maps!.message, /^region '\/bpfhook-t25d-\d+': maps: EPROTO \(the directory is corrupt/);
      assert.equal(get(`dir_count ${count}: openMap`).value, "a");
      assert.equal(get(`dir_count ${count}: openMap missing`).error?.code, "NOT_FOUND");
    }
    assert.equal(get("desc storage_off: maps").error?.errno, -71);
    assert.match(get("desc storage_off: openMap").error!.message, /^map 'a': open: EPROTO/);
  });

  it("a second process scribbling over the region gives errors only, never a crash or a hang", function () {
    this.timeout(60000);
    const seed = Number(process.env.BPFHOOK_T25_SEED ?? Math.floor(Math.random() * 0xffffffff) + 1);
    const summary = JSON.parse(runChild("corrupt-host.js", [String(seed), "2500"], 45000)) as {
      ops: number;
      errors: number;
      programRuns: number;
      corruptions: number;
      maxOpMs: number;
      byError: Record<string, number>;
    };
    const about = `seed ${seed} (BPFHOOK_T25_SEED reruns it): ${JSON.stringify(summary)}`;
    assert.ok(summary.ops > 1000, about);
    assert.ok(summary.programRuns > 100, about);
    assert.ok(summary.errors > 0 && summary.corruptions > 0, `the scribbler should have been noticed: ${about}`);
    assert.ok((summary.byError["MAP_ERROR -14"] ?? 0) > 0, about);
    assert.ok(summary.maxOpMs < 5000, `an operation took ${summary.maxOpMs} ms: ${about}`);
  });
});
