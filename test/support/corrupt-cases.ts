/**
 * Child process of 25.maps-corruption: the crashes found by review, one by
 * one. Each case corrupts one field of a fresh map (as another process
 * could, through the shared-memory file) and runs the operation that used
 * to crash. Prints one JSON line: [{ name, error?: {code, errno, message},
 * value? }]. A regression kills this process with a signal, which the test
 * reports; it never takes mocha down.
 */
import { BpfhookError, codec, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";
import { Desc, MapHeader, PerfCtl, RegionHeader, ShmFile } from "./corrupt-region.js";

interface Outcome {
  name: string;
  error?: { code: string; errno: number | undefined; message: string };
  value?: unknown;
}
const out: Outcome[] = [];

function run(name: string, fn: () => unknown): void {
  try {
    const value = fn();
    out.push({ name, value: typeof value === "bigint" ? value.toString() : value });
  } catch (err) {
    if (!(err instanceof BpfhookError)) throw err;
    out.push({ name, error: { code: err.code, errno: err.detail.errno, message: err.message } });
  }
}

const tag = `${process.pid}`;
const region = SharedRegion.create({ name: `/bpfhook-t25c-${tag}`, size: 4 << 20, maxMaps: 16 });
const shm = new ShmFile(region.name);
const storage = (name: string) => region.maps().find((d) => d.name === name)!.storageOffset;

// Queue head far past the slots: push used to write the value there.
{
  const q = region.createMap({ name: "q", type: "queue", value: codec.u64, maxEntries: 4 });
  q.push(1n);
  shm.setU32(storage("q") + MapHeader.head, 0x10000001);
  run("queue push", () => q.push(2n));
  run("queue pop", () => q.pop());
  run("queue size", () => q.size);
  run("queue helper push", () => native().mapHelperPush(q.native, Buffer.alloc(8), 0));
  run("queue corruptions", () => q.corruptions);
}

// Hash free list head out of the pool: the next set used to write the key
// and value there.
{
  const h = region.createMap({ name: "h", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 8 });
  h.set(1, 10n);
  h.delete(1); // the free list now has an element
  shm.setU64(storage("h") + MapHeader.freeHead, 0x20000000n);
  run("hash set (free head)", () => h.set(2, 20n));
  run("hash helper update (free head)", () =>
    native().mapHelperUpdate(h.native, Buffer.from([3, 0, 0, 0]), Buffer.alloc(8), 0),
  );
  // A bucket head out of the pool: every walk of that bucket.
  const h2 = region.createMap({ name: "h2", type: "hash", key: codec.u32, value: codec.u64, maxEntries: 2 });
  const buckets = storage("h2") + MapHeader.size;
  for (let b = 0; b < 2; b++) shm.setU32(buckets + 16 * b + 8, 0x7fffffff); // Bucket: u64 seqlock, u32 head
  run("hash get (bucket head)", () => h2.get(5));
  run("hash set (bucket head)", () => h2.set(5, 1n));
  run("hash delete (bucket head)", () => h2.delete(5));
  run("hash keys (bucket head)", () => Array.from(h2.keys()).length);
  run("hash helper lookup (bucket head)", () => native().mapHelperLookup(h2.native, Buffer.from([5, 0, 0, 0])));
  run("hash corruptions", () => h2.corruptions);
  // Count past max_entries.
  shm.setU32(storage("h") + MapHeader.count, 0xffffffff);
  run("hash size (count)", () => h.size);
}

// LRU: the eviction cursor and the never-used cursor far out.
{
  const l = region.createMap({ name: "l", type: "lru_hash", key: codec.u32, value: codec.u64, maxEntries: 4 });
  for (let i = 0; i < 4; i++) l.set(i, BigInt(i));
  shm.setU32(storage("l") + MapHeader.lruHand, 0xfffffff0);
  shm.setU32(storage("l") + MapHeader.nextUnused, 0x7ffffff0);
  run("lru set past capacity", () => {
    for (let i = 10; i < 30; i++) l.set(i, BigInt(i));
    return l.size;
  });
}

// LPM trie: root and node prefix lengths.
{
  const t = region.createMap({ name: "t", type: "lpm_trie", key: codec.bytes(8), value: codec.u64, maxEntries: 8, flags: 1 });
  const key = Buffer.from([24, 0, 0, 0, 10, 1, 2, 0]);
  t.set(key, 1n);
  const node1 = storage("t") + MapHeader.size; // node 1: {child[2], prefixlen, flags}
  shm.setU32(node1 + 8, 0xffff); // prefix length past the key's bits
  run("lpm keys (prefixlen)", () => Array.from(t.keys()).length);
  run("lpm get (prefixlen)", () => t.get(Buffer.from([32, 0, 0, 0, 10, 1, 2, 3])));
  shm.setU32(storage("t") + MapHeader.root, 0x40000000);
  run("lpm get (root)", () => t.get(Buffer.from([32, 0, 0, 0, 10, 1, 2, 3])));
  run("lpm set (root)", () => t.set(Buffer.from([16, 0, 0, 0, 10, 9, 0, 0]), 2n));
  run("lpm delete (root)", () => t.delete(key));
  run("lpm keys (root)", () => Array.from(t.keys()).length);
  shm.setU32(storage("t") + MapHeader.root, 0);
  shm.setU32(storage("t") + MapHeader.nodeFree, 0x30000000);
  run("lpm set (node free list)", () => t.set(Buffer.from([16, 0, 0, 0, 10, 9, 0, 0]), 2n));
}

// Stack trace: more frames than the value holds.
{
  const s = region.createMap({ name: "s", type: "stack_trace", valueSize: 32, maxEntries: 4 });
  shm.setU32(storage("s") + MapHeader.size + 8, 1000); // bucket 0's nr (after the u64 seqlock)
  run("stack_trace get (nr)", () => s.get(0));
}

// Ring buffer: a record claiming ~1 GiB.
{
  const rb = region.createMap({ name: "rb", type: "ringbuf", maxEntries: 4096 });
  rb.output(Buffer.from("hello, ring"));
  shm.setU32(storage("rb") + 4096, 0x3fffffff); // first record's len, BUSY clear
  const c = rb.consumer();
  run("ringbuf consume (huge length)", () => c.poll());
  shm.setU32(storage("rb") + 4096, 100); // past producer_pos
  run("ringbuf consume (past producer)", () => c.poll());
  c.close();
}

// Perf ring: a record claiming 4 GiB, and a misaligned head.
{
  const p = region.createMap({ name: "p", type: "perf_event_array", maxEntries: 1, mapExtra: 4096n });
  p.output(Buffer.from("sample"), 0);
  const offB = Number(shm.u64(storage("p") + MapHeader.offB));
  shm.setU32(storage("p") + offB + 4, 0xfffffff0);
  const c = p.consumer();
  run("perf consume (huge size)", () => c.poll());
  c.close();
  shm.setU64(storage("p") + MapHeader.size + PerfCtl.head, 4093n);
  run("perf output (misaligned head)", () => p.output(Buffer.from("x"), 0));
}

// The directory: a count past its capacity.
{
  const small = SharedRegion.create({ name: `/bpfhook-t25d-${tag}`, size: 1 << 20, maxMaps: 2 });
  small.createMap({ name: "a", type: "array", value: codec.u32, maxEntries: 1 });
  const f = new ShmFile(small.name);
  for (const count of [0xffffffff, 1000]) {
    f.setU32(RegionHeader.dirCount, count);
    run(`dir_count ${count}: open`, () => SharedRegion.open(small.name).close());
    run(`dir_count ${count}: maps`, () => small.maps().length);
    run(`dir_count ${count}: openMap`, () => small.openMap("a").name);
    run(`dir_count ${count}: openMap missing`, () => small.openMap("zz").name);
  }
  f.setU32(RegionHeader.dirCount, 1);
  // A descriptor whose storage leaves the region.
  f.setU64(f.u64(RegionHeader.dirOffset) === 4096n ? 4096 + Desc.storageOff : 0, 1n << 40n);
  run("desc storage_off: maps", () => small.maps().length);
  run("desc storage_off: openMap", () => small.openMap("a").name);
  f.close();
  small.close();
}

shm.close();
region.close();
process.stdout.write(`${JSON.stringify(out)}\n`);
