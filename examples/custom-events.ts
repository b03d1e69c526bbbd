/**
 * A custom event source with the simple plugin: a program attached to the
 * source "request" counts requests per status code in a hash map, and
 * TypeScript fires the source with each request's bytes as the context.
 * No clang needed: the program is assembled from text.
 *
 *   npm run example:events
 */
import { assembleBytes, codec, Runtime, type BpfMap } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";

// ctx: { u32 status; u32 bytes }. counts[status] += 1; returns bytes.
const countByStatus = assembleBytes(`
  mov %r6, %r1
  ldxw %r1, [%r6+0]
  stxw [%r10-4], %r1
  lddw %r1, map_fd 0
  mov %r2, %r10
  add %r2, -4
  call 1
  jeq %r0, 0, insert
  mov %r1, 1
  lock add [%r0+0], %r1
  ja out
insert:
  mov %r1, 1
  stxdw [%r10-16], %r1
  lddw %r1, map_fd 0
  mov %r2, %r10
  add %r2, -4
  mov %r3, %r10
  add %r3, -16
  mov %r4, 0
  call 2
out:
  ldxw %r0, [%r6+4]
  exit
`);

async function main(): Promise<void> {
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"] });
  try {
    const obj = rt.load({
      programs: [{ name: "count_by_status", section: "simple/request", insns: countByStatus }],
      maps: [{ name: "counts", type: 1 /* hash */, keySize: 4, valueSize: 8, maxEntries: 64, flags: 0, section: "code" }],
    });
    await obj.program("count_by_status").attach();

    const request = codec.struct({ status: codec.u32, bytes: codec.u32 });
    for (const status of [200, 200, 404, 200, 500, 404, 200]) {
      const ctx = Buffer.alloc(request.size);
      request.encode({ status, bytes: 1000 + status }, ctx, 0);
      const { result } = trigger(rt, "request", ctx);
      console.log(`request ${status}: program returned ${result}`);
    }
    const counts = obj.map<BpfMap<Buffer, Buffer>>("counts");
    for (const [key, value] of counts.entries()) {
      console.log(`status ${key.readUInt32LE(0)}: ${value.readBigUInt64LE(0)} requests`);
    }
  } finally {
    rt.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
