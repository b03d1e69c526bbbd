import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BpfhookError, BpfMap, codec, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";

function expectError(run: () => unknown, code: string, errno?: number): BpfhookError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (errno !== undefined) assert.equal(e.errno, errno, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

const repoRoot = path.resolve(__dirname, "..", "..");
let seq = 0;
const uniqueName = (tag: string) => `/bpfhook-t20-${process.pid}-${tag}-${seq++}`;

describe("20 shared region", () => {
  const open: SharedRegion[] = [];
  const make = (opts: Parameters<typeof SharedRegion.create>[0] = {}) => {
    const r = SharedRegion.create({ name: uniqueName("r"), size: 4 << 20, ...opts });
    open.push(r);
    return r;
  };
  afterEach(() => {
    for (const r of open.splice(0)) r.close();
  });

  it("creates a named object with a versioned header", () => {
    const r = make({ size: 1_000_000 });
    assert.equal(r.size, 1_003_520, "rounded up to a page");
    assert.equal(r.layoutVersion, 3);
    assert.equal(r.ncpus, native().possibleCpus());
    assert.ok(r.ncpus >= 1);
    assert.equal(r.owner, true);
    assert.equal(r.generation, 0);
    assert.equal(r.maxMaps, 256);
    assert.ok(existsSync(`/dev/shm${r.name}`));
  });

  it("refuses an existing name, a bad name and a missing object", () => {
    const r = make();
    const e = expectError(() => SharedRegion.create({ name: r.name }), "MAP_ERROR", -17);
    assert.match(e.message, /^region '\/bpfhook-t20-.*': create: EEXIST/);
    expectError(() => SharedRegion.create({ name: "/a/b" }), "MAP_ERROR", -22);
    expectError(() => SharedRegion.open(uniqueName("missing")), "NOT_FOUND", -2);
  });

  it("refuses an object that is not a region of this layout", () => {
    const name = uniqueName("junk");
    writeFileSync(`/dev/shm${name}`, Buffer.alloc(16384, 0x5a), { mode: 0o600 });
    try {
      const e = expectError(() => SharedRegion.open(name), "ABI_MISMATCH", -71);
      assert.match(e.message, /EPROTO/);
    } finally {
      unlinkSync(`/dev/shm${name}`);
    }
  });

  it("a second mapping sees the same maps and contents, at another address", () => {
    const r = make();
    const counts = r.createMap({ name: "counts", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 64 });
    counts.set(7, 700n);
    assert.equal(r.generation, 1);

    const agent = SharedRegion.open(r.name);
    open.push(agent);
    assert.equal(agent.owner, false);
    assert.notEqual(agent.baseAddress, r.baseAddress);
    assert.deepEqual(
      agent.maps().map((m) => [m.index, m.name, m.typeName, m.keySize, m.valueSize, m.maxEntries]),
      [[0, "counts", "hash", 4, 8, 64]],
    );
    const seen = agent.openMap<BpfMap<number, bigint>>("counts", { key: codec.u32, value: codec.u64 });
    assert.equal(seen.get(7), 700n);
    seen.set(8, 800n);
    assert.equal(counts.get(8), 800n, "writes go both ways");
    const byIndex = agent.openMap<BpfMap<number, bigint>>(0, { key: codec.u32, value: codec.u64 });
    assert.equal(byIndex.name, "counts");

    // Maps created later show up in the other mapping's directory.
    r.createMap({ name: "later", type: "array", value: codec.u32, maxEntries: 4 });
    assert.equal(agent.generation, 2);
    assert.deepEqual(
      agent.maps().map((m) => m.name),
      ["counts", "later"],
    );
    expectError(() => agent.openMap("nope"), "NOT_FOUND");
    seen.close();
    byIndex.close();
    counts.close();
  });

  it("another process opens it by name and reads and writes the same maps", () => {
    const r = make();
    const m = r.createMap({ name: "shared", type: "array", value: codec.u64, maxEntries: 4 });
    m.set(1, 41n);
    const script = `
      const { SharedRegion, codec } = require("@bpfhook/core");
      const r = SharedRegion.open(${JSON.stringify(r.name)});
      const m = r.openMap("shared", { key: codec.u32, value: codec.u64 });
      const before = m.get(1);
      m.set(2, before + 1n);
      process.stdout.write(JSON.stringify({ before: String(before), owner: r.owner, maps: r.maps().length }));
      m.close();
      r.close();
    `;
    const out = execFileSync(process.execPath, ["-e", script], { cwd: repoRoot, encoding: "utf8" });
    assert.deepEqual(JSON.parse(out), { before: "41", owner: false, maps: 1 });
    assert.equal(m.get(2), 42n);
    assert.ok(existsSync(`/dev/shm${r.name}`), "the child's close did not unlink the owner's name");
    m.close();
  });

  it("the owner's close unlinks the name; open maps stay usable", () => {
    const r = SharedRegion.create({ name: uniqueName("close"), size: 1 << 20 });
    const m = r.createMap({ name: "m", type: "array", value: codec.u32, maxEntries: 2 });
    r.close();
    r.close();
    assert.equal(existsSync(`/dev/shm${r.name}`), false);
    expectError(() => SharedRegion.open(r.name), "NOT_FOUND");
    m.set(1, 5);
    assert.equal(m.get(1), 5);
    m.close();
    expectError(() => m.get(1), "BAD_ARGUMENT");
    expectError(() => r.createMap({ name: "x", type: "array", value: codec.u32, maxEntries: 1 }), "BAD_ARGUMENT");
  });

  it("fails cleanly when the region or its directory is full", () => {
    const r = make({ size: 1 << 20, maxMaps: 3 });
    const e = expectError(
      () => r.createMap({ name: "huge", type: "hash", keySize: 8, valueSize: 64, maxEntries: 1 << 20 }),
      "MAP_ERROR",
      -12,
    );
    assert.match(e.message, /^map 'huge': create: ENOMEM \(region '.*' is full \(1048576 bytes\)\)$/);
    const used = r.used;
    for (const n of ["a", "b", "c"]) r.createMap({ name: n, type: "array", value: codec.u32, maxEntries: 1 }).close();
    assert.ok(r.used > used);
    const full = expectError(
      () => r.createMap({ name: "d", type: "array", value: codec.u32, maxEntries: 1 }),
      "MAP_ERROR",
      -28,
    );
    assert.match(full.message, /directory is full \(3 maps\)/);
    expectError(() => r.createMap({ name: "a", type: "array", value: codec.u32, maxEntries: 1 }), "MAP_ERROR", -17);
  });

  it("makes unpredictable names when none is given", () => {
    const a = SharedRegion.create({ size: 1 << 20 });
    const b = SharedRegion.create({ size: 1 << 20 });
    open.push(a, b);
    const shape = new RegExp(`^/bpfhook-${process.pid}-[0-9a-f]{16}$`);
    assert.match(a.name, shape);
    assert.match(b.name, shape);
    assert.notEqual(a.name, b.name);
  });

  it("refuses to open a region whose mode lets group or others in, or that another user owns", function () {
    const r = make();
    chmodSync(`/dev/shm${r.name}`, 0o644);
    const loose = expectError(() => SharedRegion.open(r.name), "MAP_ERROR", -13);
    assert.match(loose.message, new RegExp(`^region '${r.name}': open: EACCES \\(its mode lets group or others`));
    chmodSync(`/dev/shm${r.name}`, 0o600);
    SharedRegion.open(r.name).close();
    if (process.getuid?.() !== 0) {
      console.log("      (skipped the other-owner case: chown needs root)");
      return;
    }
    chownSync(`/dev/shm${r.name}`, 12345, 12345);
    const foreign = expectError(() => SharedRegion.open(r.name), "MAP_ERROR", -1);
    assert.match(foreign.message, new RegExp(`^region '${r.name}': open: EPERM \\(owned by another user`));
  });

  it("frees a map made with freeOnClose when its last handle closes, and reuses its entry and space", () => {
    const r = make({ maxMaps: 2 });
    const used = r.used;
    const keep = r.createMap({ name: "keep", type: "array", value: codec.u64, maxEntries: 4 });
    const temp = r.createMap({ name: "temp", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 64, freeOnClose: true });
    temp.set(1, 5n);
    const agent = SharedRegion.open(r.name);
    open.push(agent);
    const second = r.openMap<BpfMap<number, bigint>>("temp", { key: codec.u32, value: codec.u64 });
    temp.close();
    assert.equal(second.get(1), 5n, "another handle of this process keeps it");
    assert.equal(r.liveMaps, 2);
    const gen = agent.generation;
    second.close();
    assert.deepEqual(
      agent.maps().map((m) => m.name),
      ["keep"],
      "another mapping sees the entry gone",
    );
    assert.ok(agent.generation > gen);
    expectError(() => agent.openMap("temp"), "NOT_FOUND");
    assert.equal(r.liveMaps, 1);
    const again = r.createMap({ name: "temp2", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 64, freeOnClose: true });
    assert.equal(again.index, 1, "the dead entry is reused (the directory holds 2)");
    assert.equal(again.get(1), undefined, "reused storage starts zeroed");
    again.close();
    keep.close();
    assert.equal(r.maps().length, 1, "without freeOnClose the map stays");
    assert.ok(r.used > used);
  });

  it("has a process default region for the runtime's maps", () => {
    const d = SharedRegion.default();
    assert.equal(SharedRegion.default(), d);
    assert.equal(d.owner, true);
    d.close();
    const again = SharedRegion.default();
    assert.notEqual(again, d);
    assert.equal(again.closed, false);
  });
});
