/**
 * Checked mode covers helpers: every helper that takes a pointer, a size, a
 * map or the context gets a bad argument (bad pointer, oversize length, wrong
 * map type, a pointer past the frame at r10) in both backends. Each case runs
 * in a child process (a crash must not take the suite down) that must exit
 * normally and report a fault naming the helper and the argument. Also: a
 * never-written stack slot reads 0 in checked mode, a bad %s prints a marker
 * in every mode, and a plugin call whose program faults says why.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { assembleBytes, BpfhookError, Runtime } from "@bpfhook/core";
import type { MapSpec } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import type { CheckedCase } from "./support/checked-case.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const child = path.join(__dirname, "support", "checked-case.js");

const map = (name: string, type: number, keySize: number, valueSize: number, maxEntries: number): MapSpec => ({
  name,
  type,
  keySize,
  valueSize,
  maxEntries,
  flags: 0,
  section: ".maps",
});
// Map index = position: lddw %rX, map_fd N.
const MAPS: MapSpec[] = [
  map("hash", 1, 4, 8, 4), // 0
  map("rb", 27, 0, 0, 4096), // 1
  map("queue", 22, 0, 8, 4), // 2
  map("stacks", 7, 4, 64, 4), // 3
  map("jmp", 3, 4, 4, 4), // 4
];

// A key (u32 0) at r10-4 in r2, a value (u64 0) at r10-16 in r3.
const KEY_VALUE = "stw [%r10-4], 0\nstdw [%r10-16], 0\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -16";
// "%s" + NUL at r10-8 in r1 (and r3 for snprintf's fmt).
const FMT = "stw [%r10-8], 0x7325\nmov %r1, %r10\nadd %r1, -8";
const HEX = "0x[0-9a-f]+";

type Row = [helper: string, what: string, source: string, message: RegExp];

const ROWS: Row[] = [
  ["bpf_map_lookup_elem", "a number as map", `${KEY_VALUE}\nmov %r1, 0x1000\ncall 1`,
    /bpf_map_lookup_elem: arg 1 \(map\): 0x1000 is not a map of this program/],
  ["bpf_map_lookup_elem", "the context as map", `${KEY_VALUE}\ncall 1`, /bpf_map_lookup_elem: arg 1 \(map\): 0x[0-9a-f]+ is not a map/],
  ["bpf_map_lookup_elem", "key 0x10", "lddw %r1, map_fd 0\nmov %r2, 0x10\ncall 1",
    /bpf_map_lookup_elem: arg 2 \(key\): 4 bytes at 0x10 outside stack, context and regions/],
  ["bpf_map_lookup_elem", "a ring buffer as map", `${KEY_VALUE}\nlddw %r1, map_fd 1\ncall 1`,
    /bpf_map_lookup_elem: arg 1 \(map\): a ringbuf map \(type 27\) is not accepted here/],
  ["bpf_map_update_elem", "value 0x10", `${KEY_VALUE}\nlddw %r1, map_fd 0\nmov %r3, 0x10\nmov %r4, 0\ncall 2`,
    /bpf_map_update_elem: arg 3 \(value\): 8 bytes at 0x10 outside/],
  ["bpf_map_update_elem", "key and value at r10", "lddw %r1, map_fd 0\nmov %r2, %r10\nmov %r3, %r10\nmov %r4, 0\ncall 2",
    new RegExp(`bpf_map_update_elem: arg 2 \\(key\\): 4 bytes at ${HEX} outside stack`)],
  ["bpf_map_delete_elem", "key 0x10", "lddw %r1, map_fd 0\nmov %r2, 0x10\ncall 3",
    /bpf_map_delete_elem: arg 2 \(key\): 4 bytes at 0x10/],
  ["bpf_map_push_elem", "value 0x10", "lddw %r1, map_fd 2\nmov %r2, 0x10\nmov %r3, 0\ncall 87",
    /bpf_map_push_elem: arg 2 \(value\): 8 bytes at 0x10/],
  ["bpf_map_pop_elem", "value at r10", "lddw %r1, map_fd 2\nmov %r2, %r10\ncall 88",
    new RegExp(`bpf_map_pop_elem: arg 2 \\(value\\): 8 bytes at ${HEX} outside writable stack`)],
  ["bpf_map_peek_elem", "a hash map", `${KEY_VALUE}\nlddw %r1, map_fd 0\nmov %r2, %r3\ncall 89`,
    /bpf_map_peek_elem: arg 1 \(map\): a hash map \(type 1\) is not accepted here/],
  ["bpf_trace_printk", "fmt 0x10", "mov %r1, 0x10\nmov %r2, 4\ncall 6",
    /bpf_trace_printk: arg 1 \(fmt\): 4 bytes at 0x10 outside/],
  ["bpf_trace_printk", "fmt_size 0x100000", `${FMT}\nmov %r2, 0x100000\ncall 6`,
    new RegExp(`bpf_trace_printk: arg 1 \\(fmt\\): 1048576 bytes at ${HEX}`)],
  ["bpf_trace_vprintk", "data 0x10", `${FMT}\nmov %r2, 3\nmov %r3, 0x10\nmov %r4, 8\ncall 177`,
    /bpf_trace_vprintk: arg 3 \(data\): 8 bytes at 0x10/],
  ["bpf_snprintf", "output 0x10", `${FMT}\nmov %r3, %r1\nmov %r1, 0x10\nmov %r2, 8\nmov %r4, 0\nmov %r5, 0\ncall 165`,
    /bpf_snprintf: arg 1 \(str\): 8 bytes at 0x10 outside writable stack/],
  ["bpf_snprintf", "fmt 0x10", `${FMT}\nmov %r2, 8\nmov %r3, 0x10\nmov %r4, 0\nmov %r5, 0\ncall 165`,
    /bpf_snprintf: arg 3 \(fmt\): no NUL-terminated string at 0x10/],
  ["bpf_strncmp", "s1 0x10", `${FMT}\nmov %r3, %r1\nmov %r1, 0x10\nmov %r2, 2\ncall 182`,
    /bpf_strncmp: arg 1 \(s1\): 2 bytes at 0x10/],
  ["bpf_strncmp", "s2 0x10", `${FMT}\nmov %r2, 2\nmov %r3, 0x10\ncall 182`,
    /bpf_strncmp: arg 3 \(s2\): no NUL-terminated string at 0x10/],
  ["bpf_probe_read", "size 0x100000 into the stack", "mov %r1, %r10\nadd %r1, -8\nmov %r2, 0x100000\nmov %r3, %r1\ncall 4",
    new RegExp(`bpf_probe_read: arg 1 \\(dst\\): 1048576 bytes at ${HEX} outside writable`)],
  ["bpf_probe_read_str", "dst 0x10", "mov %r1, 0x10\nmov %r2, 8\nmov %r3, %r10\ncall 45",
    /bpf_probe_read_str: arg 1 \(dst\): 8 bytes at 0x10/],
  ["bpf_get_current_comm", "buf 0x10", "mov %r1, 0x10\nmov %r2, 16\ncall 16",
    /bpf_get_current_comm: arg 1 \(buf\): 16 bytes at 0x10/],
  ["bpf_get_current_comm", "size 4096 on the stack", "mov %r1, %r10\nadd %r1, -16\nmov %r2, 4096\ncall 16",
    /bpf_get_current_comm: arg 1 \(buf\): 4096 bytes at/],
  ["bpf_get_stack", "buf 0x10", "mov %r2, 0x10\nmov %r3, 64\nmov %r4, 256\ncall 67",
    /bpf_get_stack: arg 2 \(buf\): 64 bytes at 0x10/],
  ["bpf_get_stack", "length 4096", "mov %r2, %r10\nadd %r2, -64\nmov %r3, 4096\nmov %r4, 256\ncall 67",
    /bpf_get_stack: arg 2 \(buf\): 4096 bytes at/],
  ["bpf_get_stack", "ctx 0x10", "mov %r1, 0x10\nmov %r2, %r10\nadd %r2, -64\nmov %r3, 64\nmov %r4, 256\ncall 67",
    /bpf_get_stack: arg 1 \(ctx\): 0x10 is not the program's context/],
  ["bpf_get_func_arg", "value 0x10", "mov %r2, 0\nmov %r3, 0x10\ncall 183",
    /bpf_get_func_arg: arg 3 \(value\): 8 bytes at 0x10/],
  ["bpf_get_func_ret", "value at r10", "mov %r2, %r10\ncall 184",
    new RegExp(`bpf_get_func_ret: arg 2 \\(value\\): 8 bytes at ${HEX} outside writable stack`)],
  ["bpf_override_return", "ctx 0x10", "mov %r1, 0x10\nmov %r2, 0\ncall 58",
    /bpf_override_return: arg 1 \(ctx\): 0x10 is not the program's context/],
  ["bpf_perf_event_output", "ctx 0x10", "mov %r1, 0x10\nmov %r2, 0x1000\nmov %r3, 0\nmov %r4, 0\nmov %r5, 0\ncall 25",
    /bpf_perf_event_output: arg 1 \(ctx\): 0x10 is not the program's context/],
  ["bpf_perf_event_output", "a ring buffer as map", "lddw %r2, map_fd 1\nmov %r3, 0\nmov %r4, %r10\nadd %r4, -8\nmov %r5, 8\ncall 25",
    /bpf_perf_event_output: arg 2 \(map\): a ringbuf map \(type 27\) is not accepted here/],
  ["bpf_ringbuf_reserve", "a queue as map", "lddw %r1, map_fd 2\nmov %r2, 8\nmov %r3, 0\ncall 131",
    /bpf_ringbuf_reserve: arg 1 \(map\): a queue map \(type 22\) is not accepted here/],
  ["bpf_ringbuf_discard", "a stack pointer as sample", "mov %r1, %r10\nadd %r1, -8\nmov %r2, 0\ncall 133",
    /bpf_ringbuf_discard: arg 1 \(sample\): 0x[0-9a-f]+ is not a record of a ring buffer/],
  ["bpf_ringbuf_query", "a program array as map", "lddw %r1, map_fd 4\nmov %r2, 0\ncall 134",
    /bpf_ringbuf_query: arg 1 \(map\): a prog_array map \(type 3\) is not accepted here/],
  ["bpf_ringbuf_output", "data 0x10", "lddw %r1, map_fd 1\nmov %r2, 0x10\nmov %r3, 8\nmov %r4, 0\ncall 130",
    /bpf_ringbuf_output: arg 2 \(data\): 8 bytes at 0x10/],
  ["bpf_ringbuf_output", "a number as map", "mov %r1, 0x1000\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130",
    /bpf_ringbuf_output: arg 1 \(map\): 0x1000 is not a map of this program/],
  ["bpf_ringbuf_output", "a hash map", "lddw %r1, map_fd 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130",
    /bpf_ringbuf_output: arg 1 \(map\): a hash map \(type 1\) is not accepted here/],
  ["bpf_ringbuf_submit", "sample 0x10", "mov %r1, 0x10\nmov %r2, 0\ncall 132",
    /bpf_ringbuf_submit: arg 1 \(sample\): 0x10 is not a record of a ring buffer of this program/],
  ["bpf_get_stackid", "a number as map", "mov %r2, 0x1000\nmov %r3, 256\ncall 27",
    /bpf_get_stackid: arg 2 \(map\): 0x1000 is not a map of this program/],
  ["bpf_get_stackid", "a hash map", "lddw %r2, map_fd 0\nmov %r3, 256\ncall 27",
    /bpf_get_stackid: arg 2 \(map\): a hash map \(type 1\) is not accepted here/],
  ["bpf_tail_call", "a number as map", "mov %r2, 0x1000\nmov %r3, 0\ncall 12",
    /bpf_tail_call: arg 2 \(prog_array\): 0x1000 is not a map of this program/],
  ["bpf_tail_call", "a hash map", "lddw %r2, map_fd 0\nmov %r3, 0\ncall 12",
    /bpf_tail_call: arg 2 \(prog_array\): a hash map \(type 1\) is not accepted here/],
];

interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  result?: { ok: boolean; r0?: string; code?: string; message?: string };
}

function runChild(c: CheckedCase): ChildResult {
  const run = spawnSync(process.execPath, [child, JSON.stringify(c)], { cwd: repoRoot, encoding: "utf8", timeout: 30000 });
  const line = run.stdout.trim().split("\n").pop();
  return {
    status: run.status,
    signal: run.signal,
    stderr: run.stderr,
    result: line ? (JSON.parse(line) as ChildResult["result"]) : undefined,
  };
}

function expectExitedNormally(r: ChildResult, what: string): NonNullable<ChildResult["result"]> {
  assert.equal(r.signal, null, `${what}: child killed by ${r.signal}; stderr: ${r.stderr}`);
  assert.equal(r.status, 0, `${what}: child exit status ${r.status}; stderr: ${r.stderr}`);
  assert.ok(r.result, `${what}: child printed no result; stderr: ${r.stderr}`);
  return r.result;
}

describe("14 checked mode: helper arguments", function () {
  for (const backend of ["jit", "interpreter"] as const) {
    describe(backend, () => {
      for (const [helper, what, body, message] of ROWS) {
        it(`${helper} with ${what} faults, naming helper and argument`, () => {
          const source = `${body}\nmov %r0, 0\nexit`;
          const r = expectExitedNormally(runChild({ source, maps: MAPS, backend, checked: true }), helper);
          assert.equal(r.ok, false, `expected a fault, the program returned ${r.r0}`);
          assert.equal(r.code, "VM_FAULT");
          assert.match(r.message ?? "", message);
        });
      }

      it("the same helpers run with good arguments (no false faults)", () => {
        const source = [
          KEY_VALUE,
          "lddw %r1, map_fd 0\nmov %r4, 0\ncall 2", // update
          "stw [%r10-4], 0\nlddw %r1, map_fd 0\nmov %r2, %r10\nadd %r2, -4\ncall 1", // lookup
          "jeq %r0, 0, +3\nmov %r6, %r0\nldxdw %r7, [%r6+0]\nstxdw [%r6+0], %r7", // use the value
          "lddw %r1, map_fd 1\nmov %r2, 16\nmov %r3, 0\ncall 131", // ringbuf reserve
          "jeq %r0, 0, +3\nmov %r1, %r0\nmov %r2, 0\ncall 132", // submit
          `${FMT}\nmov %r2, 3\nmov %r3, 0\ncall 6`, // printk
          "mov %r1, %r10\nadd %r1, -32\nmov %r2, 16\ncall 16", // comm
          "mov %r0, 7\nexit",
        ].join("\n");
        const r = expectExitedNormally(runChild({ source, maps: MAPS, backend, checked: true }), "good arguments");
        assert.deepEqual(r, { ok: true, r0: "7" });
      });

      it("a bad %s pointer prints a marker instead of crashing, checked or not", () => {
        const source = `${FMT}\nmov %r2, 3\nmov %r3, 0x10\ncall 6\nexit`;
        for (const checked of [true, false]) {
          const r = runChild({ source, backend, checked });
          const res = expectExitedNormally(r, `%s (checked ${checked})`);
          assert.deepEqual(res, { ok: true, r0: String("(efault)".length) });
          assert.match(r.stderr, /bpf_trace_printk: \(efault\)/);
        }
      });
    });
  }
});

describe("14 checked mode: no host data, and faults that say what happened", () => {
  for (const backend of ["jit", "interpreter"] as const) {
    it(`never-written stack slots read 0, in the entry frame and in callees (${backend})`, async () => {
      const rt = await Runtime.create({ checked: true, backend });
      try {
        const insns = assembleBytes(
          [
            "call local f1",
            "call local f2",
            "ldxdw %r1, [%r10-8]",
            "or %r0, %r1",
            "ldxdw %r1, [%r10-504]",
            "or %r0, %r1",
            "exit",
            "f1:",
            "stdw [%r10-8], 0x5a5a",
            "stdw [%r10-256], 0x5a5a",
            "mov %r0, 0",
            "exit",
            "f2:",
            "ldxdw %r0, [%r10-8]",
            "ldxdw %r1, [%r10-256]",
            "or %r0, %r1",
            "exit",
          ].join("\n"),
        );
        const obj = rt.load({ programs: [{ name: "p", insns }] });
        assert.equal(obj.program("p").run(Buffer.alloc(8)), 0n);
      } finally {
        rt.close();
      }
    });
  }

  for (const backend of ["jit", "interpreter"] as const) {
    describe(`a simple-plugin trigger (${backend})`, () => {
      let rt: Runtime;
      beforeEach(async () => {
        rt = await Runtime.create({
          plugins: ["@bpfhook/plugin-simple"],
          resolveFrom: repoRoot,
          checked: true,
          budget: 1000,
          backend,
        });
      });
      afterEach(() => rt.close());

      const expectFault = (source: string, message: RegExp): void => {
        try {
          trigger(rt, source, Buffer.alloc(8));
        } catch (e) {
          assert.ok(e instanceof BpfhookError, String(e));
          assert.equal(e.code, "VM_FAULT");
          assert.equal(e.errno, -14);
          assert.match(e.message, message);
          return;
        }
        assert.fail("trigger did not throw");
      };

      it("says the program ran out of its instruction budget", async () => {
        const obj = rt.load({ programs: [{ name: "spin", section: "simple/spin", insns: assembleBytes("mov %r0, 0\nja -1") }] });
        await obj.program("spin").attach();
        expectFault("spin", /\[simple\] call 'trigger' failed \(-14\): prog 'spin': pc \d+: instruction budget of 1000 exhausted/);
      });

      it("names an out-of-bounds access and a bad helper argument", async () => {
        const obj = rt.load({
          programs: [
            { name: "oob", section: "simple/oob", insns: assembleBytes("ldxdw %r0, [%r1+64]\nexit") },
            { name: "arg", section: "simple/arg", insns: assembleBytes("mov %r1, 0x10\nmov %r2, 16\ncall 16\nexit") },
          ],
        });
        await obj.program("oob").attach();
        await obj.program("arg").attach();
        expectFault("oob", /prog 'oob': pc 0: load of 8 bytes at 0x[0-9a-f]+ outside stack, context and regions/);
        expectFault("arg", /prog 'arg': pc 2: bpf_get_current_comm: arg 1 \(buf\): 16 bytes at 0x10 outside writable/);
      });
    });
  }
});
