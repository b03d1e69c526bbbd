/**
 * Assembles a small eBPF program, prints its disassembly, and runs it in the
 * interpreter and the JIT: Fibonacci numbers, with n read from the context.
 *
 *   npm run build && npm run example
 */
import { assembleBytes, disassembleLines, loadProgram, VM_BACKENDS } from "@bpfhook/core";

const source = `
# fib(n): n is a little-endian u32 at the start of the context (r1).
    ldxw %r2, [%r1+0]
    mov %r0, 0          # fib(i)
    mov %r3, 1          # fib(i + 1)
loop:
    jeq %r2, 0, done
    mov %r4, %r0
    add %r4, %r3
    mov %r0, %r3
    mov %r3, %r4
    sub %r2, 1
    ja loop
done:
    exit
`;

const code = assembleBytes(source);
console.log(`program: ${code.length / 8} instructions\n`);
for (const line of disassembleLines(code, { labels: true })) {
  if (line.label) console.log(`${line.label}:`);
  console.log(`  ${String(line.pc).padStart(3)}  ${line.text}`);
}

// The budget bounds any run (a loop that never ends would fault, not hang).
const vm = loadProgram(code, { budget: 1_000_000, name: "fib" });
console.log(`\njit: ${vm.compile()} bytes of x86-64\n`);

const ctx = Buffer.alloc(4);
for (const n of [10, 50, 90]) {
  ctx.writeUInt32LE(n);
  const results = VM_BACKENDS.map((backend) => `${backend} ${vm.exec(ctx, backend)}`);
  console.log(`fib(${n}) = ${results.join(", ")}`);
}
vm.close();
