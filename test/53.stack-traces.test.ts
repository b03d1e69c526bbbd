import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import path from "node:path";
import { BpfhookError, codec, Runtime, SharedRegion, type StackTraceMap } from "@bpfhook/core";
import { trigger } from "@bpfhook/plugin-simple";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const EFAULT = -14n;
const DEPTH = 32;

/** struct out of stackid.bpf.c. */
const out = codec.struct({
  id: codec.i64,
  id_again: codec.i64,
  id_skip: codec.i64,
  kernel_id: codec.i64,
  stack_len: codec.i64,
  frames: codec.array(codec.u64, DEPTH),
});

/** Executable mappings of this process, from /proc/self/maps. */
function executableRanges(): [bigint, bigint][] {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((line) => /^\S+ ..x/.test(line))
    .map((line) => {
      const [lo, hi] = line.split(" ")[0]!.split("-");
      return [BigInt(`0x${lo}`), BigInt(`0x${hi}`)] as [bigint, bigint];
    });
}

describe("53 stack traces: BPF_MAP_TYPE_STACK_TRACE and bpf_get_stackid", function () {
  describe("the map", () => {
    let region: SharedRegion;
    before(() => {
      region = SharedRegion.create({ size: 1 << 20 });
    });
    after(() => region.close());

    it("is created like the kernel's and starts empty", () => {
      const m = region.createMap({ name: "st", type: "stack_trace", valueSize: 16 * 8, maxEntries: 100 });
      assert.equal(m.typeName, "stack_trace");
      assert.equal(m.keySize, 4);
      assert.equal(m.maxDepth, 16);
      assert.equal(m.get(0), undefined);
      assert.equal(m.delete(0), false);
      assert.deepEqual([...m.keys()], []);
      assert.equal(m.size, 0);
      m.close();
    });

    it("refuses sizes the kernel refuses, saying why", () => {
      for (const valueSize of [0, 12, 128 * 8]) {
        assert.throws(
          () => region.createMap({ name: `bad${valueSize}`, type: "stack_trace", valueSize, maxEntries: 8 }),
          (err: unknown) =>
            err instanceof BpfhookError && err.code === "MAP_ERROR" && /value size a multiple of 8 up to 127 frames/.test(err.message),
        );
      }
    });
  });

  describe("from a program", function () {
    before(function () {
      skipWithoutClang(this);
    });

    for (const backend of ["jit", "interpreter"] as const) {
      it(`stores the stack get_stack sees (${backend})`, async () => {
        const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot, backend });
        try {
          const obj = rt.load(compileFixture("runtime/stackid.bpf.c"));
          const stacks = obj.map<StackTraceMap>("stacks");
          assert.equal(stacks.maxDepth, DEPTH);
          await obj.program("stackid").attach();

          const r = trigger(rt, "stackid", Buffer.alloc(out.size));
          assert.equal(r.count, 1);
          const o = out.decode(r.context, 0);

          assert.ok(o.stack_len > 0n && o.stack_len % 8n === 0n, `get_stack wrote frames (${o.stack_len})`);
          const frames = o.frames.slice(0, Number(o.stack_len / 8n));
          assert.ok(frames.every((ip) => ip !== 0n), "no zero frame inside the stack");
          // The walk starts where the run started: a return address into bpfhook's own code.
          const exec = executableRanges();
          assert.ok(
            exec.some(([lo, hi]) => frames[0]! >= lo && frames[0]! < hi),
            `frame 0 (0x${frames[0]!.toString(16)}) is in an executable mapping`,
          );

          assert.ok(o.id >= 0n && o.id < 256n, `a stack id (${o.id})`);
          assert.equal(o.id_again, o.id, "the same stack from another call site: the same id");
          assert.equal(o.kernel_id, EFAULT, "no user stack asked for: the empty kernel stack");
          assert.notEqual(o.id_skip, o.id, "skipping a frame is another stack");

          assert.deepEqual(stacks.get(Number(o.id)), frames, "the id reads back as get_stack's frames");
          if (o.id_skip >= 0n) assert.deepEqual(stacks.get(Number(o.id_skip)), frames.slice(1));
          assert.ok([...stacks.keys()].includes(Number(o.id)));
          assert.equal(stacks.delete(Number(o.id)), true);
          assert.equal(stacks.get(Number(o.id)), undefined);
        } finally {
          rt.close();
        }
      });
    }
  });
});
