/**
 * The host side of 25.maps-corruption's fuzz test, run as a child process
 * (with a timeout) so that a crash or a hang shows up as a failed exit:
 *
 *   node corrupt-host.js <seed> <ms>
 *
 * Loads an object with one map of every type and a program that calls the
 * map helpers on all of them (attached to the simple plugin's "fuzz"
 * source), starts corrupt-scribbler.js on the runtime's region, then keeps
 * looking up, updating, deleting, pushing, popping and consuming from
 * TypeScript and triggering the program, until the time is up. Every error
 * must be a BpfhookError; anything else exits 2. Prints one JSON line with
 * the counts and exits 0.
 */
import { spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  assembleBytes,
  BpfhookError,
  Runtime,
  SharedRegion,
  type BpfMap,
  type MapSpec,
  type PerCpuMap,
  type PerfEventArray,
  type QueueMap,
  type RingBufMap,
  type StackTraceMap,
} from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { MapHeader, RegionHeader, ShmFile } from "./corrupt-region.js";
import type { Target } from "./corrupt-scribbler.js";

const seed = Number(process.argv[2] ?? 1) >>> 0 || 1;
const durationMs = Number(process.argv[3] ?? 2000);
const repoRoot = path.resolve(__dirname, "..", "..", "..");

let rng = seed ^ 0x9e3779b9;
const rand = () => {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng;
};

// Maps in lddw map_fd order.
const specs: MapSpec[] = [
  { name: "hash", type: 1, keySize: 8, valueSize: 8, maxEntries: 16, flags: 0 },
  { name: "lru", type: 9, keySize: 8, valueSize: 8, maxEntries: 8, flags: 0 },
  { name: "pcpu", type: 5, keySize: 8, valueSize: 8, maxEntries: 8, flags: 0 },
  { name: "lpm", type: 11, keySize: 8, valueSize: 8, maxEntries: 8, flags: 1 },
  { name: "queue", type: 22, keySize: 0, valueSize: 8, maxEntries: 4, flags: 0 },
  { name: "stack", type: 23, keySize: 0, valueSize: 8, maxEntries: 4, flags: 0 },
  { name: "rb", type: 27, keySize: 0, valueSize: 0, maxEntries: 4096, flags: 0 },
  { name: "perf", type: 4, keySize: 4, valueSize: 4, maxEntries: 1, flags: 0 },
  { name: "stacks", type: 7, keySize: 4, valueSize: 64, maxEntries: 8, flags: 0 },
  { name: "arr", type: 2, keySize: 4, valueSize: 8, maxEntries: 4, flags: 0 },
].map((m) => ({ ...m, section: ".maps" }));

// The program: every map helper on every map; r0 = how many calls failed.
function program(): Uint8Array {
  const lines: string[] = [
    "mov %r6, %r1",
    "ldxdw %r7, [%r6+0]",
    "and %r7, 31", // a small key space, so updates meet existing keys
    "mov %r9, 0",
    "stxdw [%r10-8], %r7", // hash key / array index
    "stxdw [%r10-16], %r7", // value
    "stw [%r10-24], 24", // LPM key: prefix length
    "stxw [%r10-20], %r7", // LPM key: data
  ];
  let label = 0;
  const failed = () => {
    const l = `ok${label++}`;
    lines.push(`jsge %r0, 0, ${l}`, "add %r9, 1", `${l}:`);
  };
  const stackPtr = (reg: string, off: number) => lines.push(`mov ${reg}, %r10`, `add ${reg}, ${off}`);
  const lookupWrite = (map: number, keyOff: number) => {
    const l = `skip${label++}`;
    lines.push(`lddw %r1, map_fd ${map}`);
    stackPtr("%r2", keyOff);
    lines.push("call 1", `jeq %r0, 0, ${l}`, "stxdw [%r0+0], %r7", `${l}:`);
  };
  const update = (map: number, keyOff: number) => {
    lines.push(`lddw %r1, map_fd ${map}`);
    stackPtr("%r2", keyOff);
    stackPtr("%r3", -16);
    lines.push("mov %r4, 0", "call 2");
    failed();
  };
  const del = (map: number, keyOff: number) => {
    const l = `nodel${label++}`;
    lines.push(`jlt %r7, 20, ${l}`, `lddw %r1, map_fd ${map}`);
    stackPtr("%r2", keyOff);
    lines.push("call 3");
    failed();
    lines.push(`${l}:`);
  };
  for (const m of [0, 1, 2]) {
    lookupWrite(m, -8);
    update(m, -8);
    del(m, -8);
  }
  lookupWrite(3, -24);
  update(3, -24);
  del(3, -24);
  for (const m of [4, 5]) {
    lines.push(`lddw %r1, map_fd ${m}`);
    stackPtr("%r2", -16);
    lines.push("mov %r3, 2", "call 87"); // push, BPF_EXIST: drop the oldest when full
    failed();
    for (const helper of [89, 88]) {
      lines.push(`lddw %r1, map_fd ${m}`);
      stackPtr("%r2", -16);
      lines.push(`call ${helper}`); // peek, pop
      failed();
    }
  }
  lines.push("lddw %r1, map_fd 6");
  stackPtr("%r2", -16);
  lines.push("mov %r3, 8", "mov %r4, 0", "call 130"); // ringbuf_output
  failed();
  const noRes = `nores${label++}`;
  lines.push("lddw %r1, map_fd 6", "mov %r2, 16", "mov %r3, 0", "call 131", `jeq %r0, 0, ${noRes}`); // reserve
  lines.push("stxdw [%r0+0], %r7", "mov %r1, %r0", "mov %r2, 0", "call 132", `${noRes}:`); // submit
  lines.push("mov %r1, %r6", "lddw %r2, map_fd 7", "lddw %r3, 0xffffffff");
  stackPtr("%r4", -16);
  lines.push("mov %r5, 8", "call 25"); // perf_event_output, current CPU
  failed();
  lines.push("mov %r1, %r6", "lddw %r2, map_fd 8", "mov %r3, 256", "call 27"); // get_stackid, user stack
  failed();
  lookupWrite(9, -8);
  lines.push("mov %r0, %r9", "exit");
  return assembleBytes(lines.join("\n"));
}

function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

async function main(): Promise<void> {
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, regionSize: 8 << 20 });
  const obj = rt.load({ programs: [{ name: "fuzz", section: "simple/fuzz", insns: program() }], maps: specs });
  await obj.program("fuzz").attach();
  const region = rt.sharedRegion();

  // What the scribbler may write: every structure; lock words are listed so
  // that BPFHOOK_T25_LOCKS=0 can leave them alone.
  const shm = new ShmFile(region.name);
  const targets: Target[] = [];
  const dirOffset = Number(shm.u64(RegionHeader.dirOffset));
  targets.push({ what: "region header", start: 0, len: 128, locks: [{ base: 0, stride: 128, offs: [RegionHeader.lock], count: 1 }] });
  targets.push({ what: "directory", start: dirOffset, len: 256 * region.maps().length });
  for (const spec of specs) {
    const desc = region.maps().find((d) => d.name === obj.objectMap(spec.name).regionName)!;
    const s = desc.storageOffset;
    const offA = Number(shm.u64(s + MapHeader.offA));
    const offB = Number(shm.u64(s + MapHeader.offB));
    const nBuckets = shm.u32(s + MapHeader.nBuckets);
    const poolSize = shm.u32(s + MapHeader.poolSize);
    const elemSize = shm.u32(s + MapHeader.elemSize);
    const hdrLocks = { base: s, stride: MapHeader.size, offs: [MapHeader.lock, MapHeader.consumerLock, MapHeader.seqlock, MapHeader.seqlock + 4], count: 1 };
    targets.push({ what: `${spec.name} header`, start: s, len: MapHeader.size, locks: [hdrLocks] });
    const rest = { start: s + MapHeader.size, len: desc.storageSize - MapHeader.size };
    switch (spec.name) {
      case "hash":
      case "lru":
      case "pcpu":
        targets.push({ what: `${spec.name} buckets`, start: s + offA, len: 16 * nBuckets, locks: [{ base: s + offA, stride: 16, offs: [0, 4], count: nBuckets }] });
        targets.push({ what: `${spec.name} elements`, start: s + offB, len: desc.storageSize - offB });
        break;
      case "stacks":
        targets.push({ what: "stack buckets", ...rest, locks: [{ base: s + offA, stride: elemSize, offs: [0, 4], count: nBuckets }] });
        break;
      case "rb":
        targets.push({ what: "ring data", start: s + 4096, len: desc.storageSize - 4096 });
        break;
      case "perf":
        targets.push({ what: "perf controls", start: s + offA, len: 128 * poolSize, locks: [{ base: s + offA, stride: 128, offs: [0, 80], count: poolSize }] });
        targets.push({ what: "perf data", start: s + offB, len: Math.min(4096, desc.storageSize - offB) });
        break;
      default:
        targets.push({ what: `${spec.name} storage`, ...rest });
    }
  }
  shm.close();
  const targetsFile = path.join(os.tmpdir(), `bpfhook-t25-targets-${process.pid}.json`);
  writeFileSync(targetsFile, JSON.stringify(targets));
  // Every way out of this process (the exits below included) removes it.
  process.once("exit", () => rmSync(targetsFile, { force: true }));
  const scribbler = spawn(process.execPath, [path.join(__dirname, "corrupt-scribbler.js"), region.name, targetsFile, String(seed), String(durationMs)], { stdio: "inherit" });
  const scribblerDone = new Promise<number | null>((resolve) => scribbler.on("exit", (code) => resolve(code)));

  const hash = obj.map<BpfMap<Buffer, Buffer>>("hash");
  const lru = obj.map<BpfMap<Buffer, Buffer>>("lru");
  const pcpu = obj.map<PerCpuMap<Buffer, Buffer>>("pcpu");
  const lpm = obj.map<BpfMap<Buffer, Buffer>>("lpm");
  const queue = obj.map<QueueMap<Buffer>>("queue");
  const stack = obj.map<QueueMap<Buffer>>("stack");
  const rb = obj.map<RingBufMap>("rb");
  const perf = obj.map<PerfEventArray>("perf");
  const stacks = obj.map<StackTraceMap>("stacks");
  const arr = obj.map<BpfMap<Buffer, Buffer>>("arr");
  const rbc = rb.consumer();
  const pc = perf.consumer();
  const value = Buffer.alloc(8);
  const lpmKey = (n: number) => Buffer.from([rand() % 40, 0, 0, 0, n, n >> 8, 0, 0]);
  const pcpuValue = Buffer.alloc(8 * region.ncpus);

  const ops: (() => unknown)[] = [
    () => hash.set(u64(rand() % 32), value),
    () => hash.get(u64(rand() % 32)),
    () => hash.delete(u64(rand() % 32)),
    () => hash.size,
    () => lru.set(u64(rand() % 64), value),
    () => lru.get(u64(rand() % 64)),
    () => pcpu.set(u64(rand() % 32), pcpuValue.subarray(0, 8)),
    () => pcpu.get(u64(rand() % 32)),
    () => lpm.set(lpmKey(rand() % 32), value),
    () => lpm.get(lpmKey(rand() % 32)),
    () => lpm.delete(lpmKey(rand() % 32)),
    () => queue.push(value, "exist"),
    () => queue.pop(),
    () => queue.size,
    () => stack.push(value, "exist"),
    () => stack.pop(),
    () => rb.output(value),
    () => rbc.poll(),
    () => perf.output(value, 0),
    () => pc.poll(),
    () => stacks.get(rand() % 8),
    () => arr.set(u64(rand() % 4).subarray(0, 4), value),
    () => region.maps(),
    () => SharedRegion.open(region.name).close(),
    () => {
      // Iterations are bounded per call; a corrupt chain can still cycle, so cap the walk.
      let n = 0;
      const maps: { keys(): Iterable<unknown> }[] = [hash, lru, lpm, stacks];
      for (const map of maps) {
        for (const _ of map.keys()) if (++n > 200) break;
      }
    },
    () => trigger(rt, "fuzz", u64(rand())),
  ];

  const counts = { ops: 0, errors: 0, programRuns: 0, programFailures: 0, maxOpMs: 0 };
  const byError: Record<string, number> = {};
  const end = Date.now() + durationMs;
  while (Date.now() < end) {
    const op = ops[rand() % ops.length]!;
    const t0 = process.hrtime.bigint();
    try {
      const r = op();
      if (r !== null && typeof r === "object" && "count" in r && "result" in r) {
        const tr = r as { count: number; result: bigint };
        counts.programRuns += tr.count;
        counts.programFailures += Number(tr.result);
      }
    } catch (err) {
      if (!(err instanceof BpfhookError)) {
        process.stderr.write(`not a BpfhookError: ${(err as Error)?.stack ?? String(err)}\n`);
        scribbler.kill();
        process.exit(2);
      }
      counts.errors++;
      const key = `${err.code} ${err.detail.errno ?? ""}`.trim();
      byError[key] = (byError[key] ?? 0) + 1;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms > counts.maxOpMs) counts.maxOpMs = ms;
    counts.ops++;
    if (counts.ops % 64 === 0) await new Promise((r) => setImmediate(r)); // let the child's exit event in
  }
  scribbler.kill();
  const scribblerExit = await scribblerDone;
  const corruptions = [hash, lru, pcpu, lpm, queue, stack, rb, perf, stacks, arr].reduce((n, m) => n + m.corruptions, 0);
  rbc.close();
  pc.close();
  rt.close();
  process.stdout.write(`${JSON.stringify({ seed, ...counts, corruptions, byError, scribblerExit })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`host failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(3);
});
