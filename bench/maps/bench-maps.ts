/**
 * npm run bench:maps — map operations from JIT code. Each workload is an
 * eBPF program that loops N times around one map helper call; the program
 * runs once per sample (one N-API call per N operations) and the figure is
 * the median ns per iteration, with the same loop around no call measured in
 * the same run and subtracted for the "op" column.
 */
import { assembleBytes, Runtime, type MapSpec, type RingBufMap } from "@bpfhook/core";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";

const N = 1_000_000;
const RING_N = 100_000; // a sample's records must fit the ring (drained between samples)
const SAMPLES = 11;
const KEYS = 1024;

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
];

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
];

async function main(): Promise<void> {
  const rt = await Runtime.create();
  const obj = rt.load({ programs: WORKLOADS.map((w) => ({ name: w.key, insns: w.insns })), maps: MAPS });
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
  const json: Record<string, number> = {};
  for (const w of WORKLOADS) if (w.key !== "loop") json[w.key] = Number((results.get(w.key)!.ns - base).toFixed(2));
  json.loop_overhead = Number(base.toFixed(2));
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
