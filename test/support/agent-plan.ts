/**
 * The controller half of test 60 (agent-native): a region with an agent area,
 * an array map `counts`, the frida-uprobe plugin, a program that adds 1 to
 * counts[0], and one uprobe on the target's `work` (absolute address of the
 * -no-pie target). Used in-process and by a child node process (a controller
 * the test kills with SIGKILL: `node agent-plan.js NAME ADDR SIZE`).
 */
import path from "node:path";
import { BpfMap, codec, encodeInsns, insn, SharedRegion } from "@bpfhook/core";
import { native } from "@bpfhook/core/dist/native/binding.js";
import type { NativeAgentArea } from "@bpfhook/core/dist/native/addon-types.js";
import { encodePrivateData, UPROBE } from "@bpfhook/plugin-frida-uprobe";

export const AGENT_SO = path.resolve(__dirname, "..", "..", "..", "core", "build", "Release", "libbpfhook_agent.so");
export const UPROBE_SO = path.resolve(
  __dirname,
  "..",
  "..",
  "..",
  "plugins",
  "frida-uprobe",
  "build",
  "libbpfhook_frida_uprobe.so",
);

/** counts[0] += `add` (lddw map-index form, src 1, index 0; atomic add). */
export function countingProgram(add = 1): Uint8Array {
  return encodeInsns([
    insn(0x18, 1, 1, 0, 0), // lddw r1, maps[0]
    insn(0, 0, 0, 0, 0),
    insn(0xbf, 2, 10), // r2 = r10
    insn(0x07, 2, 0, 0, -4), // r2 += -4
    insn(0x62, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = 0
    insn(0x85, 0, 0, 0, 1), // call bpf_map_lookup_elem
    insn(0x15, 0, 0, 2, 0), // if r0 == 0 goto +2
    insn(0xb7, 1, 0, 0, add), // r1 = add
    insn(0xdb, 0, 1, 0, 0), // lock *(u64 *)(r0 + 0) += r1
    insn(0xb7, 0, 0, 0, 0), // r0 = 0
    insn(0x95), // exit
  ]);
}

/** bpf_tail_call(ctx, maps[0], 0), then r0 = 0 (an empty slot falls through). */
export function tailCallProgram(): Uint8Array {
  return encodeInsns([
    insn(0x18, 2, 1, 0, 0), // lddw r2, maps[0] (the prog array)
    insn(0, 0, 0, 0, 0),
    insn(0xb7, 3, 0, 0, 0), // r3 = 0
    insn(0x85, 0, 0, 0, 12), // call bpf_tail_call (r1: the context, untouched)
    insn(0xb7, 0, 0, 0, 0),
    insn(0x95),
  ]);
}

/** bpf_trace_printk("hit %d\n", 42): the format on the stack. */
export function printkProgram(): Uint8Array {
  return encodeInsns([
    insn(0x18, 1, 0, 0, 0x20746968), // lddw r1, "hit %d\n\0"
    insn(0, 0, 0, 0, 0x000a6425),
    insn(0x7b, 10, 1, -8, 0), // *(u64 *)(r10 - 8) = r1
    insn(0xbf, 1, 10), // r1 = r10
    insn(0x07, 1, 0, 0, -8), // r1 += -8
    insn(0xb7, 2, 0, 0, 8), // r2 = 8
    insn(0xb7, 3, 0, 0, 42), // r3 = 42
    insn(0x85, 0, 0, 0, 6), // call bpf_trace_printk
    insn(0xb7, 0, 0, 0, 0),
    insn(0x95),
  ]);
}

export interface Plan {
  region: SharedRegion;
  area: NativeAgentArea;
  counts: BpfMap<number, bigint>;
  plugin: number;
  prog: number;
  attach: number;
}

export function makePlan(
  name: string,
  work: { address: bigint; size: bigint },
  opts: { keepOnExit?: boolean; publish?: boolean } = {},
): Plan {
  const region = SharedRegion.create({ name, size: 8 << 20 });
  const area = native().NativeAgentArea.create(region.native, { keepOnExit: opts.keepOnExit, startWaitMs: 3000 });
  const counts = region.createMap({ name: "counts", type: "array", value: codec.u64, maxEntries: 1 });
  const plugin = area.addPlugin("frida-uprobe", UPROBE_SO, false);
  const prog = area.addProgram("count_work", countingProgram(), [counts.native], {});
  const data = encodePrivateData({
    address: work.address,
    attachType: UPROBE.id,
    flags: 0,
    funcSize: work.size,
    description: "target:work",
  });
  const attach = area.addAttach(plugin, prog, UPROBE.id, data, 0n);
  if (opts.publish !== false) area.publish();
  return { region, area, counts, plugin, prog, attach };
}

// As a child process (`node agent-plan.js NAME ADDR SIZE [keep]`): build the
// plan, say so, heartbeat until killed.
if (require.main === module) {
  const [name, addr, size, keep] = process.argv.slice(2);
  const plan = makePlan(name!, { address: BigInt(addr!), size: BigInt(size!) }, { keepOnExit: keep === "keep" });
  process.stdout.write(`plan ${plan.attach}\n`);
  setInterval(() => plan.area.heartbeat(), 100);
}
