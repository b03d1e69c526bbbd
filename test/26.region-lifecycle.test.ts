// The shared region's life cycle around the runtime: unloading an object
// frees its maps (entries and storage are reused), the region's capacity is a
// runtime option, and regions left by killed processes are removed at the
// next start (and by `bpfhook clean`) while live processes' regions stay.
import { strict as assert } from "node:assert";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readSync, rmSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { assembleBytes, BpfhookError, cleanStaleRegions, Runtime, SharedRegion, type BpfMap, type ProgArray, type RawObject } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { expectError } from "./support/expect-error.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");

// counts[0] += 1 (an array map, by value address); r0 = the new count. The
// hash map (map 1) is only referenced, so both maps are the program's.
const countProgram = assembleBytes(`
  lddw %r1, map_value 0, 0
  ldxdw %r0, [%r1+0]
  add %r0, 1
  stxdw [%r1+0], %r0
  lddw %r2, map_fd 1
  exit
`);

const twoMapObject = (section = ""): RawObject => ({
  programs: [{ name: "count", section, insns: countProgram }],
  maps: [
    { name: "counts", type: 2, keySize: 4, valueSize: 8, maxEntries: 1, flags: 0, section: ".maps" },
    { name: "table", type: 1, keySize: 4, valueSize: 64, maxEntries: 256, flags: 0, section: ".maps" },
  ],
});

/** A node child that creates a region, prints its name, and waits to be killed. */
function regionChild(): Promise<{ child: ChildProcess; name: string }> {
  const script = `
    const { SharedRegion } = require("@bpfhook/core");
    const r = SharedRegion.create({ size: 1 << 20 });
    process.stdout.write(r.name + "\\n");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["-e", script], { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve({ child, name: out.trim() });
    });
    child.on("exit", (code, signal) => reject(new Error(`child exited early (${code ?? signal})`)));
  });
}

function killAndWait(child: ChildProcess): Promise<NodeJS.Signals | null> {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", (_code, signal) => resolve(signal));
    child.kill("SIGKILL");
  });
}

describe("26 region life cycle", () => {
  describe("unloading objects", () => {
    let rt: Runtime;
    afterEach(() => rt?.close());

    it("frees the maps of an unloaded object: 1000 load/unload cycles of a two-map object, usage flat", async function () {
      this.timeout(120_000);
      // 8 maps at most: without freeing, the 5th load would fail with ENOSPC.
      rt = await Runtime.create({ region: { size: 4 << 20, maxMaps: 8 } });
      const region = rt.sharedRegion();
      let usedAfterFirst = -1;
      for (let i = 0; i < 1000; i++) {
        const obj = rt.load(twoMapObject());
        assert.equal(region.liveMaps, 2);
        // Fresh storage every time: the count starts again at 1.
        assert.equal(obj.program("count").run(Buffer.alloc(8)), 1n, `cycle ${i}: reused storage was not zeroed`);
        const table = obj.map<BpfMap<Buffer, Buffer>>("table");
        const key = Buffer.alloc(4);
        key.writeUInt32LE(i % 256);
        table.set(key, Buffer.alloc(64, 0xab));
        assert.equal(table.size, 1, `cycle ${i}: the reused hash map was not empty`);
        obj.close();
        assert.equal(obj.closed, true);
        assert.equal(region.liveMaps, 0, `cycle ${i}: maps still live after unload`);
        if (i === 0) usedAfterFirst = region.used;
        else assert.equal(region.used, usedAfterFirst, `cycle ${i}: region usage grew`);
      }
      assert.equal(rt.loadedObjects.length, 0);
      assert.equal(region.maps().length, 0);
    });

    it("a map handle opened separately keeps the map until it closes too", async () => {
      rt = await Runtime.create({ region: { size: 4 << 20, maxMaps: 8 } });
      const obj = rt.load(twoMapObject());
      const region = rt.sharedRegion();
      const regionName = obj.objectMap("counts").regionName;
      const extra = region.openMap(regionName);
      obj.close();
      assert.deepEqual(
        region.maps().map((m) => m.name),
        [regionName],
        "only the map still open stays",
      );
      extra.close();
      assert.equal(region.maps().length, 0);
      assert.equal(region.liveMaps, 0);
      await expectError(() => obj.map<BpfMap<number, bigint>>("counts").get(0), "BAD_ARGUMENT", /closed/);
    });

    it("detaches the object's links and empties program-array slots before its maps go", async () => {
      rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, region: { maxMaps: 8 } });
      for (let i = 0; i < 20; i++) {
        const obj = rt.load(twoMapObject("simple/lifecycle"));
        await obj.program("count").attach();
        assert.equal(trigger(rt, "lifecycle", Buffer.alloc(8)).result, 1n);
        assert.equal(trigger(rt, "lifecycle", Buffer.alloc(8)).result, 2n);
        obj.close();
        assert.equal(rt.attachments.length, 0);
        assert.equal(trigger(rt, "lifecycle", Buffer.alloc(8)).count, 0, "nothing runs after unload");
      }
      assert.equal(rt.sharedRegion().liveMaps, 0);

      // A program array of another object holding the unloaded object's program.
      const tailCaller = rt.load({
        programs: [
          {
            name: "caller",
            insns: assembleBytes("lddw %r2, map_fd 0\nmov %r3, 0\ncall 12\nmov %r0, 77\nexit"),
          },
        ],
        maps: [{ name: "jmp", type: 3, keySize: 4, valueSize: 4, maxEntries: 2, flags: 0, section: ".maps" }],
      });
      const target = rt.load(twoMapObject());
      const jmp = tailCaller.map<ProgArray>("jmp");
      jmp.set(0, target.program("count"));
      assert.equal(tailCaller.program("caller").run(Buffer.alloc(8)), 1n, "the tail call reaches the target");
      target.close();
      assert.equal(jmp.get(0), undefined, "the slot was emptied");
      assert.equal(tailCaller.program("caller").run(Buffer.alloc(8)), 77n, "the tail call falls through");
      tailCaller.close();
    });
  });

  describe("capacity option", () => {
    it("Runtime.create({ region }) sets the region's size and directory, and validates them", async () => {
      const rt = await Runtime.create({ region: { size: 2 << 20, maxMaps: 16 } });
      try {
        assert.equal(rt.sharedRegion().size, 2 << 20);
        assert.equal(rt.sharedRegion().maxMaps, 16);
      } finally {
        rt.close();
      }
      await expectError(() => Runtime.create({ region: { maxMaps: 0 } }), "BAD_ARGUMENT", /region\.maxMaps/);
      await expectError(() => Runtime.create({ region: { maxMaps: 70000 } }), "BAD_ARGUMENT", /region\.maxMaps/);
      await expectError(() => Runtime.create({ region: { size: -1 } }), "BAD_ARGUMENT", /region\.size/);
      await expectError(() => Runtime.create({ region: { size: 1.5 } }), "BAD_ARGUMENT", /region\.size/);
      await expectError(() => Runtime.create({ region: { size: 8192, maxMaps: 256 } }), "BAD_ARGUMENT", /too small/);
      await expectError(() => Runtime.create({ region: { sise: 1 } as never }), "BAD_ARGUMENT", /region/);
    });
  });

  describe("stale regions", () => {
    it("a region of a process killed by SIGKILL is removed at the next Runtime.create; a live one stays", async function () {
      this.timeout(30_000);
      const dead = await regionChild();
      const live = await regionChild();
      try {
        assert.equal(await killAndWait(dead.child), "SIGKILL");
        assert.ok(existsSync(`/dev/shm${dead.name}`), "the killed child could not unlink its region");
        const rt = await Runtime.create();
        rt.close();
        assert.equal(existsSync(`/dev/shm${dead.name}`), false, "Runtime.create removed the dead child's region");
        assert.ok(existsSync(`/dev/shm${live.name}`), "the live child's region survived");
        SharedRegion.open(live.name).close();
      } finally {
        await killAndWait(live.child);
      }
      // Now the second child is dead too: cleanStaleRegions finds it.
      const removed = cleanStaleRegions();
      assert.ok(
        removed.some((r) => r.name === live.name && r.pid === live.child.pid),
        `expected ${live.name} in ${JSON.stringify(removed)}`,
      );
      assert.equal(existsSync(`/dev/shm${live.name}`), false);
    });

    it("a live pid with another start time counts as dead (the pid was reused)", () => {
      const r = SharedRegion.create({ size: 1 << 20 });
      try {
        assert.deepEqual(cleanStaleRegions().filter((s) => s.name === r.name), [], "our own region is live");
        // creator_start is at offset 80 of the header (layout 2).
        const fd = openSync(`/dev/shm${r.name}`, "r+");
        const start = Buffer.alloc(8);
        readSync(fd, start, 0, 8, 80);
        assert.ok(start.readBigUInt64LE(0) > 0n, "the header records the creator's start time");
        const other = Buffer.alloc(8);
        other.writeBigUInt64LE(start.readBigUInt64LE(0) + 1n);
        writeSync(fd, other, 0, 8, 80);
        closeSync(fd);
        const removed = cleanStaleRegions();
        assert.ok(removed.some((s) => s.name === r.name && s.pid === process.pid));
        assert.equal(existsSync(`/dev/shm${r.name}`), false);
      } finally {
        r.close();
      }
    });

    it("an object whose header is not a region's is removed only when the pid in its name is gone and it sat still", async () => {
      // A dead process's pid: a child that has exited and been reaped.
      const gone = spawn(process.execPath, ["-e", "0"]);
      await new Promise((done) => gone.once("exit", done));
      const garbage = Buffer.alloc(4096, 0xa5); // a header overwritten by a hostile writer
      const make = (name: string, ageSeconds: number) => {
        const file = `/dev/shm${name}`;
        writeFileSync(file, garbage, { mode: 0o600 });
        const t = Date.now() / 1000 - ageSeconds;
        utimesSync(file, t, t);
        return file;
      };
      const old = make(`/bpfhook-${gone.pid}-00garbage00old`, 120);
      const fresh = make(`/bpfhook-${gone.pid}-00garbage0fresh`, 0); // its creator may still be writing it
      const alive = make(`/bpfhook-${process.pid}-00garbage0alive`, 120);
      try {
        const removed = cleanStaleRegions();
        assert.ok(removed.some((s) => s.name === `/bpfhook-${gone.pid}-00garbage00old` && s.pid === gone.pid));
        assert.equal(existsSync(old), false);
        assert.equal(existsSync(fresh), true, "a fresh object is left alone");
        assert.equal(existsSync(alive), true, "an object named for a live pid is left alone");
      } finally {
        for (const f of [old, fresh, alive]) rmSync(f, { force: true });
      }
    });

    it("bpfhook clean removes them from the command line", async () => {
      const dead = await regionChild();
      await killAndWait(dead.child);
      const out = execFileSync(process.execPath, [cli, "clean", "--json"], { encoding: "utf8" });
      const parsed = JSON.parse(out) as { removed: { name: string; pid: number }[] };
      assert.ok(parsed.removed.some((r) => r.name === dead.name && r.pid === dead.child.pid), out);
      assert.equal(existsSync(`/dev/shm${dead.name}`), false);
      const text = execFileSync(process.execPath, [cli, "clean"], { encoding: "utf8" });
      assert.match(text, /\d+ stale regions? removed/);
    });
  });

  it("errors are BpfhookErrors naming the region", () => {
    try {
      SharedRegion.open("/bpfhook-26-missing");
      assert.fail("opened a missing region");
    } catch (e) {
      assert.ok(e instanceof BpfhookError);
      assert.match(e.message, /^region '\/bpfhook-26-missing': open: ENOENT/);
    }
  });
});
