/**
 * npm run bench:maps — map operations from JIT code. Each workload is an
 * eBPF program that loops N times around one map helper call; the program
 * runs once per sample (one N-API call per N operations) and the figure is
 * the median ns per iteration, with the same loop around no call measured in
 * the same run and subtracted for the "op" column.
 *
 * Two key patterns: "seq" walks keys 0..1023 in order (the first rows, a
 * small hot map), "scrambled" visits every key of a map of 2^k entries in a
 * pseudo-random order (key = i * 0x9e3779b1 mod 2^k, a permutation), so at 64K
 * and 1M entries most lookups miss the CPU caches, as lookups of random keys
 * in a big map do. Each scrambled row subtracts its own baseline loop (the
 * same key computation, no call).
 */
import { assembleBytes, Runtime, type MapSpec, type RingBufMap } from "@bpfhook/core";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";

const N = 1_000_000;
const RING_N = 100_000; // a sample's records must fit the ring (drained between samples)
const SAMPLES = 11;
const KEYS = 1024;
const SIZES = { "1k": 1 << 10, "64k": 1 << 16, "1m": 1 << 20 } as const;
const SCRAMBLE = 0x9e3779b1; // odd: i * SCRAMBLE mod 2^k is a permutation of 0..2^k-1

const map = (name: string, type: number, keySize: number, valueSize: number, maxEntries: number): MapSpec => ({
  name,
  type,
  keySize,
  valueSize,
  maxEntries,
  flags: 0,
  section: "code",
});
const MAPS = [
  map("hash", 1, 4, 8, KEYS),
  map("array", 2, 4, 8, KEYS),
  map("percpu", 6, 4, 8, KEYS),
  map("ring", 27, 0, 0, 1 << 22), // 4 MiB: a sample (2.4 MB) wraps it, so its pages stay warm
  map("hash_1k", 1, 4, 8, SIZES["1k"]),
  map("hash_64k", 1, 4, 8, SIZES["64k"]),
  map("hash_1m", 1, 4, 8, SIZES["1m"]),
  { ...map("bloom", 30, 0, 4, KEYS), mapExtra: 3n }, // 7: u32 values, 3 hash functions
];
const MAP_INDEX = { hash_1k: 4, hash_64k: 5, hash_1m: 6 } as const;

/**
 * A loop of `n` iterations over scrambled keys of a map of `size` entries
 * (a power of two); `miss` sets bit log2(size) so every key is absent. The
 * key is computed with 32-bit ALU ops in r1 and stored at r10-4.
 */
function scrambledLoop(n: number, size: number, miss: boolean, body: string): Uint8Array {
  return assembleBytes(`
    mov %r6, 0
    mov %r7, 0
  top:
    mov32 %r1, %r6
    mul32 %r1, ${SCRAMBLE | 0}
    and32 %r1, ${size - 1}
    ${miss ? `or32 %r1, ${size}` : ""}
    stxw [%r10-4], %r1
    ${body}
    add %r6, 1
    jlt %r6, ${n}, top
    mov %r0, %r7
    exit
  `);
}
const lookupIn = (m: keyof typeof MAP_INDEX) => `lddw %r1, map_fd ${MAP_INDEX[m]}\n${KEY}\ncall 1\nadd %r7, %r0`;
/** Fills a hash map with keys 0..size-1 from a program (a million set() calls from TS would take seconds). */
function fill(m: keyof typeof MAP_INDEX, size: number): Uint8Array {
  return assembleBytes(`
    mov %r6, 0
    mov %r7, 0
    stxdw [%r10-16], %r7
  top:
    stxw [%r10-4], %r6
    lddw %r1, map_fd ${MAP_INDEX[m]}
    ${KEY}
    ${VALUE}
    mov %r4, 0
    call 2
    jne %r0, 0, fail
    add %r6, 1
    jlt %r6, ${size}, top
    mov %r0, 0
    exit
  fail:
    exit
  `);
}

/** A loop of `n` iterations; `body` sees the counter in r6 and must keep r6-r9. */
function loop(n: number, body: string): Uint8Array {
  return assembleBytes(`
    mov %r6, 0
    mov %r7, 0
    stxdw [%r10-16], %r7
  top:
    mov %r1, %r6
    and %r1, ${KEYS - 1}
    stxw [%r10-4], %r1
    ${body}
    add %r6, 1
    jlt %r6, ${n}, top
    mov %r0, %r7
    exit
  `);
}
// r2 = &key (stack), r3 = &value (stack)
const KEY = "mov %r2, %r10\n add %r2, -4";
const VALUE = "mov %r3, %r10\n add %r3, -16";

const WORKLOADS: { key: string; label: string; n: number; insns: Uint8Array }[] = [
  { key: "loop", label: "empty loop (baseline)", n: N, insns: loop(N, "") },
  { key: "hash_lookup", label: "hash lookup (u32 key, hit)", n: N, insns: loop(N, `lddw %r1, map_fd 0\n${KEY}\ncall 1\nadd %r7, %r0`) },
  { key: "hash_update", label: "hash update (existing key)", n: N, insns: loop(N, `lddw %r1, map_fd 0\n${KEY}\n${VALUE}\nmov %r4, 0\ncall 2`) },
  { key: "array_lookup", label: "array lookup", n: N, insns: loop(N, `lddw %r1, map_fd 1\n${KEY}\ncall 1\nadd %r7, %r0`) },
  { key: "percpu_update", label: "per-CPU array update", n: N, insns: loop(N, `lddw %r1, map_fd 2\n${KEY}\n${VALUE}\nmov %r4, 0\ncall 2`) },
  {
    key: "ringbuf_output",
    label: "ring buffer output (16 B)",
    n: RING_N,
    insns: loop(RING_N, `lddw %r1, map_fd 3\nmov %r2, %r10\nadd %r2, -16\nmov %r3, 16\nmov %r4, 0\ncall 130`),
  },
  // The key slot doubles as the u32 value: values 0..1023, all pushed after the first sample.
  { key: "bloom_push", label: "bloom filter push (u32, k=3)", n: N, insns: loop(N, `lddw %r1, map_fd 7\n${KEY}\nmov %r3, 0\ncall 87`) },
  { key: "bloom_peek", label: "bloom filter peek (u32, k=3, hit)", n: N, insns: loop(N, `lddw %r1, map_fd 7\n${KEY}\ncall 89\nadd %r7, %r0`) },
];

/** Scrambled-key rows: [key, label, baseline key, map, size, miss]. */
const SCRAMBLED: { key: string; label: string; base: string; n: number; insns: Uint8Array }[] = [];
for (const [tag, size] of Object.entries(SIZES) as [keyof typeof SIZES, number][]) {
  const m = `hash_${tag}` as keyof typeof MAP_INDEX;
  SCRAMBLED.push(
    { key: `loop_${tag}`, label: `scrambled-key loop, ${size} keys (baseline)`, base: "", n: N, insns: scrambledLoop(N, size, false, "") },
    {
      key: `hash_lookup_${tag}`,
      label: `hash lookup, ${tag.toUpperCase()} entries, scrambled key, hit`,
      base: `loop_${tag}`,
      n: N,
      insns: scrambledLoop(N, size, false, lookupIn(m)),
    },
  );
}
SCRAMBLED.push({
  key: "hash_miss_64k",
  label: "hash lookup, 64K entries, scrambled key, miss",
  base: "loop_64k",
  n: N,
  insns: scrambledLoop(N, SIZES["64k"], true, lookupIn("hash_64k")),
});

async function main(): Promise<void> {
  // The 1M-entry map alone takes about 40 MiB of the region.
  // The timing loops run a million iterations in one program, beyond what the
  // verifier explores; they are ours, measured for the map operations, so
  // strict verification is off here (bench:vm shows verified workloads).
  const rt = await Runtime.create({ regionSize: 256 << 20, verifier: "off" });
  const fills = (Object.entries(SIZES) as [keyof typeof SIZES, number][]).map(([tag, size]) => ({
    name: `fill_${tag}`,
    insns: fill(`hash_${tag}` as keyof typeof MAP_INDEX, size),
  }));
  const obj = rt.load({
    programs: [...WORKLOADS, ...SCRAMBLED].map((w) => ({ name: w.key, insns: w.insns })).concat(fills),
    maps: MAPS,
  });
  for (const f of fills) {
    const rc = obj.program(f.name).run();
    if (rc !== 0n) throw new Error(`${f.name}: map_update_elem failed (${rc})`);
  }
  const hash = obj.map<import("@bpfhook/core").BpfMap<Buffer, Buffer>>("hash");
  for (let k = 0; k < KEYS; k++) {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(k);
    hash.set(key, Buffer.alloc(8));
  }
  const ring = obj.map<RingBufMap>("ring");
  const drain = ring.consumer();
  drain.on("data", () => {});

  const results = new Map<string, { ns: number; iqr: number }>();
  for (const w of WORKLOADS) {
    const prog = obj.program(w.key);
    for (let warm = 0; warm < 3; warm++) {
      prog.run(); // warm-up: caches, and every page of the ring touched
      drain.poll();
    }
    const samples: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      const t0 = process.hrtime.bigint();
      prog.run();
      const t1 = process.hrtime.bigint();
      samples.push(Number(t1 - t0) / w.n);
      drain.poll();
    }
    results.set(w.key, { ns: median(samples), iqr: relativeIqr(samples) });
  }
  for (const w of SCRAMBLED) {
    const prog = obj.program(w.key);
    prog.run(); // warm-up
    const samples: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      const t0 = process.hrtime.bigint();
      const r0 = prog.run();
      const t1 = process.hrtime.bigint();
      samples.push(Number(t1 - t0) / w.n);
      const hit = !w.key.includes("miss") && w.base !== "";
      // Every hit row must really hit (r0 sums value pointers), every miss row miss.
      if (hit && r0 === 0n) throw new Error(`${w.key}: no lookup hit; the figure would measure misses`);
      if (w.key.includes("miss") && r0 !== 0n) throw new Error(`${w.key}: a lookup hit; expected misses only`);
    }
    results.set(w.key, { ns: median(samples), iqr: relativeIqr(samples) });
  }
  const drops = ring.stats().drops;
  drain.close();
  rt.close();
  if (drops > 0) throw new Error(`ring buffer dropped ${drops} records: the figure would measure the drop path`);

  const base = results.get("loop")!.ns;
  console.log(`median of ${SAMPLES} samples; ${N} iterations per sample (ring buffer: ${RING_N}); JIT\n`);
  console.log(
    formatTable(
      ["operation", "ns/iteration", "op ns (minus loop)", "iqr/median"],
      WORKLOADS.map((w) => {
        const r = results.get(w.key)!;
        return [w.label, fixed(r.ns, 2), w.key === "loop" ? "-" : fixed(r.ns - base, 2), `${fixed(r.iqr * 100, 1)}%`];
      }),
    ),
  );
  console.log("\nscrambled keys (each row minus its own baseline loop)\n");
  console.log(
    formatTable(
      ["operation", "ns/iteration", "op ns (minus loop)", "iqr/median"],
      SCRAMBLED.map((w) => {
        const r = results.get(w.key)!;
        const op = w.base === "" ? "-" : fixed(r.ns - results.get(w.base)!.ns, 2);
        return [w.label, fixed(r.ns, 2), op, `${fixed(r.iqr * 100, 1)}%`];
      }),
    ),
  );
  const json: Record<string, number> = {};
  for (const w of WORKLOADS) if (w.key !== "loop") json[w.key] = Number((results.get(w.key)!.ns - base).toFixed(2));
  for (const w of SCRAMBLED) {
    if (w.base !== "") json[w.key] = Number((results.get(w.key)!.ns - results.get(w.base)!.ns).toFixed(2));
  }
  json.loop_overhead = Number(base.toFixed(2));
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
