/**
 * npm run bench:uprobe — cost per hit of userspace probes on a real function
 * (bh_target_empty in the targets library), in one run: the bare call; uprobe,
 * uretprobe, both, and override, each with an empty program; a uprobe that
 * counts into a hash map; a USDT probe (bpfhook_bench:hit in
 * bh_target_usdt, through examples/usdt-plugin, the third-party plugin, when
 * it is built; its "added" is against the bare call of bh_target_usdt); and
 * the kernel's uprobe through bpftrace as the anchor. Every figure is the median ns per call over repeated native loops.
 *
 * Every row checks that its probe fired exactly once per call: each
 * "empty" program counts its hits with one plain (non-atomic: the loop is
 * single-threaded) add to its own slot of an array map, about three
 * instructions and no helper call, and the run fails if a slot's count is not
 * the number of calls made while it was attached. The kernel row reads
 * bpftrace's own count and reports "unavailable (reason)" when the probe did
 * not fire once per call.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { assembleBytes, Runtime, type BpfMap, type Link } from "@bpfhook/core";
import { readElfImage, readSymbols } from "@bpfhook/sdk";
import { fixed, formatTable, median, relativeIqr } from "../common/stats.js";
import { loadTargets, repoRoot, targetsLibrary } from "../common/targets.js";
import { kernelUprobeUnavailable, startKernelUprobe } from "./kernel-anchor.js";

const RUNS = 11;
const CALLS = 2_000_000;
const KERNEL_RUNS = 5;
const KERNEL_CALLS = 50_000;
const TARGET = { module: "libbpfhook_targets.so", symbol: "bh_target_empty" };

/** An otherwise empty program that adds 1 to hits[slot] (plain add: one thread calls). */
const countingEmpty = (slot: number) =>
  assembleBytes(`
  lddw %r1, map_value 1, ${slot * 8}
  ldxdw %r2, [%r1+0]
  add %r2, 1
  stxdw [%r1+0], %r2
  mov %r0, 0
  exit
`);
const SLOTS = { uprobe: 0, uretprobe: 1, uprobe2: 2, uretprobe2: 3, override: 4, usdt: 5, uprobe_mid: 6 } as const;
/** The USDT plugin package (examples/usdt-plugin), built there by its own steps (its README). */
const USDT_PLUGIN = path.join(repoRoot, "examples", "usdt-plugin");
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

/** Calls made by one measure(): the warm-up and every run. */
const callsOf = (runs: number, calls: number) => BigInt(calls / 10 + runs * calls);

function measure(runs: number, calls: number, which: "empty" | "usdt" = "empty"): { median: number; iqr: number } {
  targets.timeCalls(which, calls / 10); // warm-up
  const samples = Array.from({ length: runs }, () => targets.timeCalls(which, calls));
  return { median: median(samples), iqr: relativeIqr(samples) };
}

async function main(): Promise<void> {
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: repoRoot });
  const obj = rt.load({
    programs: [
      ...Object.entries(SLOTS).map(([name, slot]) => ({ name, insns: countingEmpty(slot) })),
      { name: "hash_counter", insns: HASH_COUNTER },
    ],
    maps: [
      { name: "counts", type: 1, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0, section: "code" },
      // One value of 8 u64 slots: the "empty" programs' hit counters.
      { name: "hits", type: 2, keySize: 4, valueSize: 64, maxEntries: 1, flags: 0, section: "code" },
    ],
  });
  const counts = obj.map<BpfMap<Buffer, Buffer>>("counts");
  counts.set(Buffer.alloc(4), Buffer.alloc(8));
  const hitsMap = obj.map<BpfMap<Buffer, Buffer>>("hits");
  const key0 = Buffer.alloc(4);
  const slotHits = (slot: number) => hitsMap.get(key0)!.readBigUInt64LE(slot * 8);
  const hashHits = () => counts.get(key0)!.readBigUInt64LE(0);

  const rows: { key: string; label: string; ns: number; iqr: number; base?: string }[] = [];
  /** Measures with `attach`'s links in place; every counter in `counters` must advance by exactly the calls made. */
  const run = async (
    key: string,
    label: string,
    attach: () => Promise<Link[]>,
    counters: (() => bigint)[],
    which: "empty" | "usdt" = "empty",
  ) => {
    const links = await attach();
    const before = counters.map((c) => c());
    const { median: ns, iqr } = measure(RUNS, CALLS, which);
    const fired = counters.map((c, i) => c() - before[i]!);
    for (const l of links) l.detach();
    const expected = callsOf(RUNS, CALLS);
    fired.forEach((n, i) => {
      if (n !== expected) {
        throw new Error(`${label}: probe ${i + 1} fired ${n} times for ${expected} calls; the figure would not measure one hit per call`);
      }
    });
    rows.push({ key, label, ns, iqr, ...(which === "usdt" ? { base: "usdt_call" } : {}) });
  };
  const at = (program: string, type: string) => () =>
    obj.program(program).attach({ type, data: TARGET }).then((l) => [l]);
  const slot = (name: keyof typeof SLOTS) => () => slotHits(SLOTS[name]);

  await run("call", "bare call (no probe)", async () => [], []);
  await run("uprobe", "uprobe, empty program", at("uprobe", "uprobe"), [slot("uprobe")]);
  await run("uretprobe", "uretprobe, empty program", at("uretprobe", "uretprobe"), [slot("uretprobe")]);
  await run(
    "uprobe_uretprobe",
    "uprobe + uretprobe, empty",
    async () => [...(await at("uprobe2", "uprobe")()), ...(await at("uretprobe2", "uretprobe")())],
    [slot("uprobe2"), slot("uretprobe2")],
  );
  await run("override", "uprobe_override, not overriding", at("override", "uprobe_override"), [slot("override")]);
  await run("uprobe_hash_counter", "uprobe counting in a hash map", at("hash_counter", "uprobe"), [hashHits]);
  let usdtNote = "";
  const usdtEntry = path.join(USDT_PLUGIN, "dist", "index.js");
  if (!existsSync(usdtEntry) || !existsSync(path.join(USDT_PLUGIN, "build", "libbpfhook_usdt.so"))) {
    usdtNote = `usdt: skipped (build ${USDT_PLUGIN} first: npm run pack-sdk && npm install && npm run build there)`;
  } else {
    const usdt = require(usdtEntry) as { plugin: object; readUsdtSites(p: string): { provider: string; name: string; pc: bigint }[] };
    const site = usdt.readUsdtSites(targetsLibrary).find((s) => s.provider === "bpfhook_bench" && s.name === "hit");
    if (!site) {
      usdtNote = "usdt: skipped (the targets library has no bpfhook_bench:hit probe: built without <sys/sdt.h>)";
    } else {
      rt.use(usdt.plugin as never);
      const data = { path: targetsLibrary, provider: "bpfhook_bench", name: "hit" };
      await run("usdt_call", "bare call, USDT target (no probe)", async () => [], [], "usdt");
      await run("usdt", "usdt, empty program", () => obj.program("usdt").attach({ type: "usdt", data }).then((l) => [l]), [slot("usdt")], "usdt");
      // Helpers inside a function: the core's vector-clean ones, so xmm0-15
      // are saved with moves (BH_HOOK_ATTACH_F_SSE_ONLY), not all with XSAVE.
      await run(
        "usdt_hash_counter",
        "usdt counting in a hash map",
        () => obj.program("hash_counter").attach({ type: "usdt", data }).then((l) => [l]),
        [hashHits],
        "usdt",
      );
      // The same site as a uprobe at symbol+offset: the engine's cost inside a function, without the plugin.
      const fn = readSymbols(readElfImage(targetsLibrary), ".symtab", { name: "bh_target_usdt" })[0];
      if (fn) {
        const mid = { module: TARGET.module, symbol: "bh_target_usdt", offset: Number(site.pc - fn.value) };
        await run("uprobe_mid", "uprobe at the same site (inside a function)", () => obj.program("uprobe_mid").attach({ type: "uprobe", data: mid }).then((l) => [l]), [slot("uprobe_mid")], "usdt");
      }
    }
  }
  rt.close();

  let kernel: number | null = null;
  let kernelNote = "";
  const why = kernelUprobeUnavailable();
  if (why) {
    kernelNote = `kernel uprobe: skipped (${why})`;
  } else {
    try {
      const probe = await startKernelUprobe(targetsLibrary, TARGET.symbol);
      let m: { median: number; iqr: number } | undefined;
      try {
        m = measure(KERNEL_RUNS, KERNEL_CALLS);
      } finally {
        const counted = await probe.stop();
        const expected = callsOf(KERNEL_RUNS, KERNEL_CALLS);
        if (m && counted === expected) {
          kernel = m.median;
          rows.push({ key: "kernel_uprobe", label: "kernel uprobe (bpftrace count)", ns: m.median, iqr: m.iqr });
        } else if (m) {
          kernelNote = `kernel uprobe: unavailable (bpftrace counted ${counted ?? "no"} hits for ${expected} calls)`;
        }
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
      rows.map((r) => {
        const base = r.base === undefined ? bare : rows.find((x) => x.key === r.base)!.ns;
        const added = r.key === "call" || r.key === "usdt_call" ? "-" : fixed(r.ns - base, 1);
        return [r.label, fixed(r.ns, 1), added, `${fixed(r.iqr * 100, 1)}%`];
      }),
    ),
  );
  if (usdtNote) console.log(`\n${usdtNote}`);
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
