/**
 * The verifier (issue 11): a table of unsafe programs, each refused with
 * the message parts a reader needs (where, what, why); small safe programs
 * it must accept; and the acceptance corpus: every eBPF C program of the
 * repository's tests, examples and benchmarks, compiled as users compile
 * them, verifies in strict mode with the context of its attach type, except
 * a short list of programs that are unsafe on purpose, each refused for its
 * known reason. Prints "N accepted, M refused" and the timings for
 * docs/PERFORMANCE.md (no timing asserts).
 */
import { strict as assert } from "node:assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { assembleBytes, encodeInsns, insn, type Insn } from "@bpfhook/core";
import { MapType, standardHelpers, verifyProgram, type VerifierMap, type VerifyOptions, type VerifyResult } from "@bpfhook/core/dist/verifier/index.js";
import { clangUnavailable } from "./support/clang.js";
import { contextFor, corpusHelpers, corpusSources, loadCorpusObject, PT_REGS, verifierMaps } from "./support/verifier-corpus.js";

const rodata = new Uint8Array(16);
rodata.set(Buffer.from("hello\0"), 0);
rodata.set(Buffer.from("no-nul-her"), 6); // bytes 6..15: no NUL before the end of the value

const MAPS: VerifierMap[] = [
  { name: "counts", type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 64 },
  { name: "arr", type: MapType.ARRAY, keySize: 4, valueSize: 16, maxEntries: 4 },
  { name: ".rodata", type: MapType.ARRAY, keySize: 4, valueSize: 16, maxEntries: 1, readOnly: true, initialData: rodata.slice(0, 16) },
  { name: "rb", type: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096 },
  { name: "jump", type: MapType.PROG_ARRAY, keySize: 4, valueSize: 4, maxEntries: 4 },
];

function verifyAsm(src: string, opts: Partial<VerifyOptions> = {}): VerifyResult {
  return verifyProgram("p", assembleBytes(src), { maps: MAPS, context: PT_REGS, helpers: standardHelpers(), ...opts });
}

function refused(src: string, parts: (string | RegExp)[], opts: Partial<VerifyOptions> = {}): void {
  const r = verifyAsm(src, opts);
  assert.ok(!r.ok, `expected a refusal of:\n${src}`);
  const msg = r.error.message;
  assert.ok(msg.startsWith(`prog 'p': pc ${r.error.pc}: ${r.error.insn}: `), msg);
  for (const p of parts) {
    if (typeof p === "string") assert.ok(msg.includes(p), `message lacks "${p}":\n${msg}`);
    else assert.match(msg, p);
  }
}

function accepted(src: string, opts: Partial<VerifyOptions> = {}): void {
  const r = verifyAsm(src, opts);
  assert.ok(r.ok, r.ok ? "" : r.error.message);
}

/** A lookup in `arr` (map 1) of key 0 from the stack; r0 = map_value_or_null. */
const LOOKUP_ARR = `
  stw [%r10-4], 0
  mov %r2, %r10
  add %r2, -4
  lddw %r1, map_idx 1
  call 1`;

/** A 16-byte ringbuf reserve; r0 = ringbuf_mem_or_null, r6 = ctx. */
const RESERVE = `
  mov %r6, %r1
  lddw %r1, map_idx 3
  mov %r2, 16
  mov %r3, 0
  call 131`;

describe("37 verifier: unsafe programs are refused with clear messages", () => {
  it("a store through r1+0x7fff (outside the context)", () => {
    refused("mov %r2, 1\nstxdw [%r1+32767], %r2\nmov %r0, 0\nexit", [
      "pc 1: stxdw [r1+32767], r2",
      "r1 is ctx+0",
      "outside the 168-byte context (pt_regs)",
    ]);
  });
  it("a store into the context where the layout forbids writes", () => {
    refused("stdw [%r1+8], 1\nmov %r0, 0\nexit", ["ctx+8", "context (pt_regs) is not writable"]);
  });
  it("a store to address 0x1000 and a load from NULL", () => {
    refused("mov %r1, 0x1000\nstdw [%r1+0], 1\nmov %r0, 0\nexit", ["pc 1", "through a number (address 0x1000)", "r1 is scalar(4096)"]);
    refused("mov %r1, 0\nldxdw %r0, [%r1+0]\nexit", ["through a number (address 0x0)"]);
  });
  it("writes at [r10-4096] and [r10+8] (outside the 512-byte frame)", () => {
    refused("stdw [%r10-4096], 0\nmov %r0, 0\nexit", ["fp-4096", "outside the 512-byte stack frame"]);
    refused("stdw [%r10+8], 0\nmov %r0, 0\nexit", ["fp+8", "outside the 512-byte stack frame"]);
  });
  it("a loop with no bound: repeating state, and a counter that never ends", () => {
    refused("mov %r0, 0\nl:\nadd %r1, 0\nja l", ["infinite loop"]);
    refused("mov %r6, 0\nl:\nadd %r6, 1\njgt %r6, 0, l\nmov %r0, 0\nexit", ["too complex: loop not proven to end (back edge pc 2 -> 1)"], {
      maxInsnsProcessed: 20000,
    });
  });
  it("a map value read out of bounds at a constant and at a variable offset", () => {
    refused(`${LOOKUP_ARR}\njeq %r0, 0, +1\nldxdw %r0, [%r0+16]\nexit`, ["value+16", "outside the 16-byte value of map 'arr'"]);
    refused(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +4\nand %r6, 15\nadd %r0, %r6\nldxdw %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`, [
      "value+[0, 15]",
      "outside the 16-byte value of map 'arr'",
      "r0 is map_value(arr+scalar(umax=15",
    ]);
  });
  it("a lookup result used without a null check", () => {
    refused(`${LOOKUP_ARR}\nldxdw %r0, [%r0+0]\nexit`, ["r0 is map_value_or_null(arr)", "may be NULL: compare it with 0 first"]);
  });
  it("a ring-buffer record leaked on a path, and used after submit", () => {
    refused(`${RESERVE}\njeq %r0, 0, +5\nldxdw %r1, [%r6+0]\njeq %r1, 0, +3\nmov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit`, [
      "pc 13: exit",
      "reserved at pc 5 is neither submitted nor discarded on this path",
      "(path: 6 -> 8 -> 13)",
    ]);
    refused(`${RESERVE}\njeq %r0, 0, +6\nmov %r7, %r0\nmov %r1, %r0\nmov %r2, 0\ncall 132\nstdw [%r7+0], 1\nmov %r0, 0\nexit`, [
      "pc 11",
      "r7 is a ring-buffer record released at pc 10",
    ]);
  });
  it("a helper given a buffer too small for its size, or an argument of the wrong kind", () => {
    refused("mov %r1, %r10\nadd %r1, -8\nmov %r2, 16\ncall 16\nmov %r0, 0\nexit", ["bpf_get_current_comm", "outside the 512-byte stack frame"]);
    refused("mov %r1, 5\nmov %r2, %r10\nadd %r2, -4\nstw [%r10-4], 0\ncall 1\nmov %r0, 0\nexit", ["bpf_map_lookup_elem: r1 must be a map"]);
    refused("stw [%r10-4], 0\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\ncall 1\nmov %r0, 0\nexit", [
      "key of map 'counts'",
      "uninitialised stack at fp-8",
    ]);
  });
  it("bytes a string read may leave unwritten (after the NUL) stay uninitialised", () => {
    const read = "ldxdw %r3, [%r1+112]\nmov %r1, %r10\nadd %r1, -16\nmov %r2, 16\ncall 114";
    refused(`${read}\nldxdw %r0, [%r10-8]\nexit`, ["uninitialised stack at fp-8"]);
    accepted(`stdw [%r10-16], 0\nstdw [%r10-8], 0\n${read}\nldxdw %r0, [%r10-8]\nexit`);
    accepted(`${read.replace("call 114", "call 112")}\nldxdw %r0, [%r10-8]\nexit`);
  });
  it("reading uninitialised stack", () => {
    refused("stw [%r10-8], 0\nldxdw %r0, [%r10-8]\nexit", ["uninitialised stack at fp-4"]);
  });
  it("r0 not set at exit", () => {
    refused("exit", ["pc 0: exit", "r0 (the return value) is not initialised at exit"]);
  });
  it("a scratch register read after a call", () => {
    refused("call 5\nmov %r0, %r1\nexit", ["pc 1", "r1 is not initialised (clobbered by the call at pc 0)"]);
  });
  it("fields the ISA does not have, before the analysis computes with them (a 2^30-bit byte-swap width hung it; the fuzzer found it)", () => {
    refused("mov %r0, 1\n.raw 0x26fc4a82000000d7\nexit", ["pc 1", "invalid byte swap width 654068354"]);
    refused("mov %r0, 1\n.raw 0x0000000000050f0f\nexit", ["pc 1", "invalid register r15"]);
  });
  it("an unknown helper", () => {
    refused("call 999\nmov %r0, 0\nexit", ["call to helper 999 (unknown; no loaded plugin provides it)"]);
  });
  it("a write to .rodata", () => {
    refused("lddw %r1, map_idx_value 2, 0\nstw [%r1+0], 1\nmov %r0, 0\nexit", ["read-only map '.rodata'"]);
  });
  it("a pointer leaked into a map value", () => {
    refused(`${LOOKUP_ARR}\njeq %r0, 0, +1\nstxdw [%r0+0], %r10\nmov %r0, 0\nexit`, ["store of a pointer", "into map 'arr'", "addresses may not leak"]);
  });
  it("a variable offset into the context, and arithmetic on a map pointer", () => {
    refused("ldxdw %r2, [%r1+0]\nand %r2, 8\nadd %r1, %r2\nldxdw %r0, [%r1+0]\nexit", ["variable offset into the context"]);
    // A context declared plain memory may be indexed, every offset of the range checked.
    const buffer = { context: { name: "buffer", size: 64, writable: [{ offset: 0, size: 64 }], variableOffsets: true } };
    accepted("ldxdw %r2, [%r1+0]\nand %r2, 56\nadd %r1, %r2\nstdw [%r1+0], 1\nldxdw %r0, [%r1+0]\nexit", buffer);
    refused("ldxdw %r2, [%r1+0]\nand %r2, 63\nadd %r1, %r2\nldxdw %r0, [%r1+0]\nexit", ["load of 8 bytes at ctx+[0, 63] outside the 64-byte context (buffer)"], buffer);
    refused("lddw %r1, map_idx 0\nadd %r1, 8\nmov %r0, 0\nexit", ["arithmetic on a map pointer"]);
  });
  it("ptr_to_const_str without a NUL in the value, and a callback returning 2", () => {
    refused("mov %r1, %r10\nadd %r1, -8\nstdw [%r10-8], 0\nmov %r2, 8\nlddw %r3, map_idx_value 2, 6\ncall 182\nmov %r0, 0\nexit", ["no NUL"]);
    refused("mov %r1, 4\nlddw %r2, func +6\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit\nmov %r0, 2\nexit", ["a callback must return 0 or 1"]);
  });
  it("an unbounded helper size and a negative one", () => {
    refused("ldxdw %r2, [%r1+0]\nrsh %r2, 1\nmov %r1, %r10\nadd %r1, -16\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit", ["size in r2 is unbounded"]);
    refused("ldxdw %r2, [%r1+0]\nmov %r1, %r10\nadd %r1, -16\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit", ["size in r2 may be negative"]);
  });
});

describe("37 verifier: frames, references and spills", () => {
  it("a tail call while a ring-buffer record is held", () => {
    refused(`${RESERVE}\njeq %r0, 0, +9\nmov %r7, %r0\nmov %r1, %r6\nlddw %r2, map_idx 4\nmov %r3, 0\ncall 12\nmov %r1, %r7\nmov %r2, 0\ncall 133\nmov %r0, 0\nexit`, [
      "bpf_tail_call",
      "reserved at pc 5 is still held",
    ]);
  });
  it("recursion past 8 frames, and a pointer to a callee's own stack returned", () => {
    refused("call local f\nexit\nf:\ncall local f\nexit", ["more than 8 frames"]);
    refused("call local f\nldxdw %r0, [%r0+0]\nexit\nf:\nstdw [%r10-8], 1\nmov %r0, %r10\nadd %r0, -8\nexit", ["returns a pointer to its own stack frame"]);
  });
  it("a callee's stack pointer stored into its caller's frame", () => {
    refused("mov %r1, %r10\nadd %r1, -8\ncall local f\nmov %r0, 0\nexit\nf:\nmov %r2, %r10\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit", [
      "pointer to frame 1's stack into the stack of its caller (frame 0)",
    ]);
  });
  it("a spilled pointer partly overwritten reads back as a number", () => {
    accepted("stxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\nldxdw %r0, [%r2+0]\nexit");
    refused("stxdw [%r10-8], %r1\nstw [%r10-4], 0\nldxdw %r2, [%r10-8]\nldxdw %r0, [%r2+0]\nexit", ["through a number"]);
  });
  it("a moved context pointer given to a helper that wants the context", () => {
    refused("add %r1, 8\nlddw %r2, map_idx 0\nmov %r3, 0\ncall 27\nexit", ["must be the context pointer as the program received it", "ctx+8"]);
  });
  it("a record submitted through a moved pointer, and a read of r2 at entry", () => {
    refused(`${RESERVE}\njeq %r0, 0, +5\nadd %r0, 8\nmov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit`, ["as bpf_ringbuf_reserve returned it"]);
    refused("mov %r0, %r2\nexit", ["r2 is not initialised"]);
  });
  it("a stack address turned into a number or compared with one (it differs between the interpreter and the JIT)", () => {
    refused("mov %r0, %r10\nmul %r0, 3\nexit", ["a stack address (r0) may not be turned into a number"]);
    refused("mov32 %r0, %r10\nexit", ["a stack address (r10) may not be turned into a number"]);
    refused("mov %r0, 0\njgt %r10, 4096, +1\nmov %r0, 1\nexit", ["comparison of a stack address (r10) with scalar(4096)"]);
    accepted("mov %r2, %r10\nadd %r2, -16\nmov %r0, %r10\nsub %r0, %r2\njeq %r2, %r10, +1\nexit\nexit");
  });
  it("a negative offset from a map value", () => {
    refused(`${LOOKUP_ARR}\njeq %r0, 0, +1\nldxw %r0, [%r0-4]\nexit`, ["value-4", "outside the 16-byte value of map 'arr'"]);
  });
});

describe("37 verifier: safe shapes are accepted", () => {
  it("division and modulo by a register that may be zero (defined by the ISA)", () => {
    accepted("ldxdw %r2, [%r1+0]\nmov %r0, 10\ndiv %r0, %r2\nmod %r0, %r2\nexit");
  });
  it("a null-checked lookup, a bounded variable index, an atomic add", () => {
    accepted(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +5\nand %r6, 8\nadd %r0, %r6\nmov %r1, 1\nlock add [%r0+0], %r1\nmov %r0, 0\nexit`);
  });
  it("a bounded loop explored to its end, spills and fills keep pointers and ranges", () => {
    accepted("mov %r0, 0\nmov %r6, 0\nl:\nadd %r0, %r6\nadd %r6, 1\njlt %r6, 100, l\nexit");
    accepted("stxdw [%r10-8], %r1\nmov %r1, 0\nldxdw %r1, [%r10-8]\nldxdw %r0, [%r1+0]\nexit");
  });
  it("ring-buffer reserve / write / submit on every path", () => {
    accepted(`${RESERVE}\njeq %r0, 0, +5\nstdw [%r0+8], 7\nmov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit`);
  });
  it("a subprogram with its own frame, passing a pointer to the caller's stack", () => {
    accepted("stdw [%r10-8], 3\nmov %r1, %r10\nadd %r1, -8\ncall local f\nexit\nf:\nldxdw %r0, [%r1+0]\nstdw [%r10-8], 1\nexit");
  });
  it("32-bit and signed range checks bound an index", () => {
    // w2 = ctx word; if w2 > 15 skip; value[w2] (1 byte)
    accepted(`ldxw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +4\njgt32 %r6, 15, +3\nadd %r0, %r6\nldxb %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`);
    // signed: if r6 s< 0 or r6 s> 8 skip; value[r6 .. r6+7]
    accepted(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +5\njslt %r6, 0, +4\njsgt %r6, 8, +3\nadd %r0, %r6\nldxdw %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`);
    refused(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +4\njsgt %r6, 8, +3\nadd %r0, %r6\nldxdw %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`, ["r0 is map_value(arr+scalar(", "unbounded variable offset"]);
  });
  it("a 32-bit bound on a register whose upper half is unknown, then a 32-bit move", () => {
    // value[w6] with w6 < 16 although r6 came from a 64-bit load: the low half's own bounds.
    accepted(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +5\njge32 %r6, 16, +4\nmov32 %r6, %r6\nadd %r0, %r6\nldxb %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`);
    refused(`ldxdw %r6, [%r1+0]\n${LOOKUP_ARR}\njeq %r0, 0, +5\njge32 %r6, 17, +4\nmov32 %r6, %r6\nadd %r0, %r6\nldxb %r0, [%r0+0]\nexit\nmov %r0, 0\nexit`, ["outside the 16-byte value of map 'arr'"]);
  });
  it("bpf_loop with a callback that writes its caller's stack", () => {
    accepted("stdw [%r10-8], 0\nmov %r1, 10\nlddw %r2, func +7\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\ncall 181\nldxdw %r0, [%r10-8]\nexit\nldxdw %r3, [%r2+0]\nadd %r3, %r1\nstxdw [%r2+0], %r3\nmov %r0, 0\nexit");
  });
  it("a constant string from .rodata (bpf_strncmp)", () => {
    accepted("mov %r1, %r10\nadd %r1, -8\nstdw [%r10-8], 0\nmov %r2, 8\nlddw %r3, map_idx_value 2, 0\ncall 182\nexit");
  });
});

/** Programs of the corpus that are unsafe on purpose, with why they are refused. */
const EXPECTED_REFUSALS: ReadonlyMap<string, RegExp> = new Map([
  // Calls a CUDA helper no plugin provides: refused at load by design (test 60).
  ["test/fixtures/cli/cuda_helper.bpf.c:read_timer", /helper 502 \(bpf_get_globaltimer, a CUDA helper; no loaded plugin provides it\)/],
  // Writes past its context on purpose (a checked-mode fault in test 52).
  ["test/fixtures/runtime/tailcall_bad.bpf.c:bad", /outside the 4096-byte context/],
  // The syscall contexts (test 47): an exit program reading an enter field, a program writing its context.
  ["test/fixtures/syscall/bad_context.bpf.c:exit_reads_args", /outside the 24-byte context \(trace_event_raw_sys_exit\)/],
  ["test/fixtures/syscall/bad_write.bpf.c:writes_ctx", /\(trace_event_raw_sys_enter\) is not writable/],
]);

describe("37 verifier: every program of the tests, examples and benchmarks", function () {
  this.timeout(300_000);
  let dir = "";
  before(function () {
    const why = clangUnavailable();
    if (why !== undefined) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    dir = mkdtempSync(path.join(tmpdir(), "bpfhook-verifier-"));
  });
  after(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  it("verifies in strict mode (the accepted set is all of them but the unsafe-on-purpose list)", () => {
    let accepted = 0;
    let refusedCount = 0;
    let largest = { name: "", insns: 0, ms: 0, processed: 0 };
    let slowest = { name: "", insns: 0, ms: 0, processed: 0 };
    const wrong: string[] = [];
    const seen = new Set<string>();
    const sources = corpusSources();
    assert.ok(sources.some((s) => s.startsWith("test/fixtures/verifier/")));
    for (const source of sources) {
      const o = loadCorpusObject(source, dir);
      if (o.obj === undefined) {
        // Only the loader's own error fixtures may fail to load.
        if (!source.startsWith("test/fixtures/errors/")) wrong.push(`${source}: does not load: ${o.loadError}`);
        continue;
      }
      const maps = verifierMaps(o.obj);
      for (const p of o.obj.programs) {
        const key = `${source}:${p.name}`;
        const r = verifyProgram(p.name, p.insns, { maps, context: contextFor(p.section), helpers: corpusHelpers(p.section) });
        const expected = EXPECTED_REFUSALS.get(key);
        if (r.ok) {
          accepted++;
          const n = p.insns.length / 8;
          const row = { name: key, insns: n, ms: r.stats.ms, processed: r.stats.insnsProcessed };
          if (n > largest.insns) largest = row;
          if (row.ms > slowest.ms) slowest = row;
          if (expected !== undefined) wrong.push(`${key}: accepted, but it is unsafe on purpose`);
        } else {
          refusedCount++;
          seen.add(key);
          if (expected === undefined) wrong.push(`${key}: ${r.error.message}`);
          else if (!expected.test(r.error.message)) wrong.push(`${key}: refused for another reason: ${r.error.message}`);
        }
      }
    }
    console.log(`      ${accepted} accepted, ${refusedCount} refused (${EXPECTED_REFUSALS.size} unsafe on purpose)`);
    for (const [what, x] of [["largest", largest], ["slowest", slowest]] as const) {
      console.log(`      ${what} accepted: ${x.name}, ${x.insns} instructions, ${x.processed} processed, ${x.ms.toFixed(2)} ms`);
    }
    for (const k of EXPECTED_REFUSALS.keys()) if (!seen.has(k)) wrong.push(`${k}: expected in the corpus and refused, not found`);
    assert.deepEqual(wrong, []);
    assert.equal(refusedCount, EXPECTED_REFUSALS.size);
  });
});

describe("37 verifier: timing", function () {
  this.timeout(120_000);
  it("a synthetic 100,000-instruction program (straight-line ALU with a few branches)", () => {
    const insns: Insn[] = [];
    insns.push(insn(0xb7, 0, 0, 0, 0), insn(0xb7, 2, 0, 0, 1), insn(0xb7, 3, 0, 0, 7), insn(0x79, 4, 1, 0, 0));
    while (insns.length < 99_990) {
      const k = insns.length;
      if (k % 10_000 === 0) {
        // if r4 > 100: r5 = 1 else r5 = 2 (r5 dead afterwards: the join prunes)
        insns.push(insn(0x25, 4, 0, 2, 100), insn(0xb7, 5, 0, 0, 2), insn(0x05, 0, 0, 1, 0), insn(0xb7, 5, 0, 0, 1));
        continue;
      }
      insns.push(insn(0x07, 2, 0, 0, k & 0xff), insn(0xaf, 3, 2, 0, 0), insn(0x67, 3, 0, 0, 1), insn(0x0f, 0, 3, 0, 0));
    }
    insns.push(insn(0x95, 0, 0, 0, 0));
    const r = verifyProgram("synthetic", encodeInsns(insns), { maps: [], context: PT_REGS, helpers: standardHelpers() });
    assert.ok(r.ok, r.ok ? "" : r.error.message);
    console.log(`      ${insns.length} instructions: ${r.stats.insnsProcessed} processed, ${r.stats.peakStates} states, ${r.stats.ms.toFixed(1)} ms`);
  });
});
