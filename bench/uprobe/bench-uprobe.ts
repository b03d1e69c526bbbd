/**
 * npm run bench:uprobe — cost per hit of userspace probes on a real function
 * (bh_target_empty in the targets library), in one run: the bare call; uprobe,
 * uretprobe, both, and override, each with an empty program; a uprobe that
 * counts into a hash map; and the kernel's uprobe through bpftrace as the
 * anchor. Every figure is the median ns per call over repeated native loops.
 */
import { assembleBytes, Runtime, type BpfMap, type Link } from "@bpfhook/core";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";
import { loadTargets, repoRoot, targetsLibrary } from "../common/targets.js";
import { kernelUprobeUnavailable, startKernelUprobe } from "./kernel-anchor.js";

const RUNS = 11;
const CALLS = 2_000_000;
const KERNEL_RUNS = 5;
const KERNEL_CALLS = 50_000;
const TARGET = { module: "libbpfhook_targets.so", symbol: "bh_target_empty" };

const EMPTY = assembleBytes("mov %r0, 0\nexit");
// counts[0] += 1 through bpf_map_lookup_elem and an atomic add.
const HASH_COUNTER = assembleBytes(`
  mov %r1, 0
  stxw [%r10-4], %r1
  lddw %r1, map_fd 0
  mov %r2, %r10
  add %r2, -4
  call 1
  jeq %r0, 0, out
  mov %r1, 1
  lock add [%r0+0], %r1
out:
  mov %r0, 0
  exit
`);

const targets = loadTargets();

function measure(runs: number, calls: number): { median: number; iqr: number } {
  targets.timeCalls("empty", calls / 10); // warm-up
  const samples = Array.from({ length: runs }, () => targets.timeCalls("empty", calls));
  return { median: median(samples), iqr: relativeIqr(samples) };
}

async function main(): Promise<void> {
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: repoRoot });
  const obj = rt.load({
    programs: [
      { name: "empty", insns: EMPTY },
      { name: "hash_counter", insns: HASH_COUNTER },
    ],
    maps: [{ name: "counts", type: 1, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0, section: "code" }],
  });
  const counts = obj.map<BpfMap<Buffer, Buffer>>("counts");
  counts.set(Buffer.alloc(4), Buffer.alloc(8));

  const rows: { key: string; label: string; ns: number; iqr: number }[] = [];
  const run = async (key: string, label: string, attach: () => Promise<Link[]>) => {
    const links = await attach();
    const { median: ns, iqr } = measure(RUNS, CALLS);
    for (const l of links) l.detach();
    rows.push({ key, label, ns, iqr });
  };
  const at = (program: string, type: string) => () =>
    obj.program(program).attach({ type, data: TARGET }).then((l) => [l]);

  await run("call", "bare call (no probe)", async () => []);
  await run("uprobe", "uprobe, empty program", at("empty", "uprobe"));
  await run("uretprobe", "uretprobe, empty program", at("empty", "uretprobe"));
  await run("uprobe_uretprobe", "uprobe + uretprobe, empty", async () => [
    ...(await at("empty", "uprobe")()),
    ...(await at("empty", "uretprobe")()),
  ]);
  await run("override", "uprobe_override, not overriding", at("empty", "uprobe_override"));
  await run("uprobe_hash_counter", "uprobe counting in a hash map", at("hash_counter", "uprobe"));
  const hits = counts.get(Buffer.alloc(4))!.readBigUInt64LE(0);
  rt.close();
  if (hits < BigInt(RUNS * CALLS)) throw new Error(`the counting uprobe saw ${hits} hits, expected >= ${RUNS * CALLS}`);

  let kernel: number | null = null;
  let kernelNote = "";
  const why = kernelUprobeUnavailable();
  if (why) {
    kernelNote = `kernel uprobe: skipped (${why})`;
  } else {
    try {
      const probe = await startKernelUprobe(targetsLibrary, TARGET.symbol);
      try {
        const m = measure(KERNEL_RUNS, KERNEL_CALLS);
        kernel = m.median;
        rows.push({ key: "kernel_uprobe", label: "kernel uprobe (bpftrace count)", ns: m.median, iqr: m.iqr });
      } finally {
        await probe.stop();
      }
    } catch (err) {
      kernelNote = `kernel uprobe: skipped (${(err as Error).message.split("\n")[0]})`;
    }
  }

  const bare = rows[0]!.ns;
  console.log(`bh_target_empty in ${targetsLibrary}`);
  console.log(`median of ${RUNS} runs x ${CALLS} calls (kernel: ${KERNEL_RUNS} x ${KERNEL_CALLS})\n`);
  console.log(
    formatTable(
      ["probe", "ns/call", "added ns", "iqr/median"],
      rows.map((r) => [r.label, fixed(r.ns, 1), r.key === "call" ? "-" : fixed(r.ns - bare, 1), `${fixed(r.iqr * 100, 1)}%`]),
    ),
  );
  if (kernelNote) console.log(`\n${kernelNote}`);
  const json: Record<string, number | null> = {};
  for (const r of rows) json[r.key] = Number(r.ns.toFixed(2));
  json.kernel_uprobe = kernel === null ? null : Number(kernel.toFixed(2));
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
