/**
 * npm run bench:attach [-- N] — the cost of attaching many uprobes through
 * the Runtime: N links of one program on one function (bh_target_empty),
 * attached one by one, then detached; then the same N attached in one
 * Runtime.batch(). Prints µs per attach and per detach, and the RSS growth
 * per link (KiB) while they are attached, for both.
 */
import { assembleBytes, Runtime, type Link } from "@bpfhook/core";
import { fixed, formatTable } from "../common/stats.js";
import { loadTargets, repoRoot } from "../common/targets.js";

const N = Number(process.argv[2] ?? process.env.BH_ATTACH_N ?? 10_000);
const TARGET = { module: "libbpfhook_targets.so", symbol: "bh_target_empty" };
const EMPTY = assembleBytes("mov %r0, 0\nexit");

const rssKiB = () => process.memoryUsage.rss() / 1024;
const now = () => Number(process.hrtime.bigint()) / 1000; // µs

interface Row {
  label: string;
  attachUs: number;
  detachUs: number;
  kibPerLink: number;
}

async function main(): Promise<void> {
  const targets = loadTargets();
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: repoRoot });
  const obj = rt.load({ programs: [{ name: "empty", insns: EMPTY }], maps: [] });
  const prog = obj.program("empty");
  const attachOne = () => prog.attach({ type: "uprobe", data: TARGET });
  // Warm-up: the first attach reads the module's symbols and creates the trampoline.
  (await attachOne()).detach();

  const rows: Row[] = [];
  const measure = async (label: string, attachAll: () => Promise<Link[]>) => {
    global.gc?.();
    const rss0 = rssKiB();
    const t0 = now();
    const links = await attachAll();
    const t1 = now();
    const rss1 = rssKiB();
    targets.timeCalls("empty", 1000); // the probes fire
    const t2 = now();
    for (const l of links) l.detach();
    const t3 = now();
    rows.push({ label, attachUs: (t1 - t0) / N, detachUs: (t3 - t2) / N, kibPerLink: (rss1 - rss0) / N });
  };
  await measure("one by one", async () => {
    const links: Link[] = [];
    for (let i = 0; i < N; i++) links.push(await attachOne());
    return links;
  });
  await measure("in one Runtime.batch()", () =>
    rt.batch(async () => {
      const links: Link[] = [];
      for (let i = 0; i < N; i++) links.push(await attachOne());
      return links;
    }),
  );
  rt.close();
  console.log(`${N} uprobes on ${TARGET.symbol} through Runtime.attach\n`);
  console.log(
    formatTable(
      ["attach", "µs/attach", "µs/detach", "KiB/link (RSS)"],
      rows.map((r) => [r.label, fixed(r.attachUs, 1), fixed(r.detachUs, 1), fixed(r.kibPerLink, 2)]),
    ),
  );
  const json: Record<string, number> = {};
  for (const [i, r] of rows.entries()) {
    const k = i === 0 ? "single" : "batch";
    json[`${k}_attach_us`] = Number(r.attachUs.toFixed(2));
    json[`${k}_detach_us`] = Number(r.detachUs.toFixed(2));
    json[`${k}_kib_per_link`] = Number(r.kibPerLink.toFixed(2));
  }
  console.log(`\n${JSON.stringify(json)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
