/**
 * Attaches an eBPF program to libc's malloc in this Node process, lets Node
 * allocate for a moment, and reads what the program counted from its maps.
 *
 *   npm run example:uprobe
 */
import path from "node:path";
import { gzipSync } from "node:zlib";
import { compileBpfC, Runtime, type BpfMap } from "@bpfhook/core";

async function main(): Promise<void> {
  const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-frida-uprobe"] });
  try {
    const obj = rt.load(compileBpfC(path.join(__dirname, "..", "count-malloc.bpf.c")));
    const link = await obj.program("count_malloc").attach();
    console.log(`attached: ${link.description}`);

    // Work that allocates natively: Buffer backing stores and zlib state.
    for (let i = 0; i < 200; i++) gzipSync(Buffer.allocUnsafeSlow(4096 + i * 64));
    link.detach();

    const calls = obj.map<BpfMap<number, bigint>>("calls");
    const rows = [...calls.entries()].sort(([a], [b]) => a - b);
    const total = rows.reduce((sum, [, n]) => sum + n, 0n);
    console.log(`malloc calls: ${total}`);
    for (const [cls, n] of rows) console.log(`  <= ${String(2n ** BigInt(cls)).padStart(10)} bytes: ${n}`);
    const bytes = obj.map<BpfMap<number, Buffer>>(".bss").get(0)!.readBigUInt64LE(0);
    console.log(`bytes requested: ${bytes}`);
  } finally {
    rt.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
