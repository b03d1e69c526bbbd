/**
 * A hostile second process for 25.maps-corruption: writes random values into
 * a shared region, through its /dev/shm file, until killed or until
 * argv[4] milliseconds have passed.
 *
 *   node corrupt-scribbler.js <region name> <targets JSON file> <seed> <ms>
 *
 * Targets are byte ranges (region header, directory entries, map headers,
 * buckets, elements, slots, ring controls and data ...), lock words
 * included: a lock word left held (by a live or a dead "holder" tid) must
 * cost a bounded wait and an error, or a takeover, never a hang or a crash.
 * BPFHOOK_T25_LOCKS=0 leaves lock words alone (to tell a bounds failure from
 * a lock one).
 */
import { readFileSync } from "node:fs";
import { ShmFile } from "./corrupt-region.js";

export interface Target {
  what: string;
  start: number;
  len: number;
  /** Lock words: at base + i * stride + off for i < count, each 4 bytes. */
  locks?: { base: number; stride: number; offs: number[]; count: number }[];
}

const [name, targetsFile, seedArg, msArg] = process.argv.slice(2);
const targets = JSON.parse(readFileSync(targetsFile!, "utf8")) as Target[];
let seed = Number(seedArg) >>> 0 || 1;
const rand = () => {
  // xorshift32: reproducible from the seed the test prints
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
};

function isLock(t: Target, off: number): boolean {
  for (const l of t.locks ?? []) {
    const rel = off - l.base;
    if (rel < 0) continue;
    const i = Math.floor(rel / l.stride);
    if (i >= l.count) continue;
    if (l.offs.includes(rel - i * l.stride)) return true;
  }
  return false;
}

function value(t: Target): number {
  const small = [0, 1, 2, 3, 7, 8, 9, 63, 64, 65, 4095, 4096];
  const big = [0x7fffffff, 0x80000000, 0xffffffff, 0xfffffff0, 0x10000001, 0x20000000, 0x3fffffff];
  switch (rand() % 4) {
    case 0:
      return small[rand() % small.length]!;
    case 1:
      return big[rand() % big.length]!;
    case 2:
      return rand() % (t.len + 16);
    default:
      return rand();
  }
}

const scribbleLocks = process.env.BPFHOOK_T25_LOCKS !== "0";
const shm = new ShmFile(name!);
const end = Date.now() + Number(msArg);
const pause = new Int32Array(new SharedArrayBuffer(4));
let writes = 0;
while (Date.now() < end) {
  const t = targets[rand() % targets.length]!;
  const wide = rand() % 4 === 0;
  const unit = wide ? 8 : 4;
  if (t.len < unit) continue;
  const off = t.start + (rand() % Math.floor(t.len / unit)) * unit;
  if (!scribbleLocks && (isLock(t, off) || (wide && isLock(t, off + 4)))) continue;
  if (wide) shm.setU64(off, (BigInt(value(t)) << 32n) | BigInt(value(t)));
  else shm.setU32(off, value(t));
  writes++;
  // A few hundred writes per second: the host sees each corruption at work
  // for a while instead of a region that is noise from the start.
  if (writes % 4 === 0) Atomics.wait(pause, 0, 0, 1);
}
shm.close();
