import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { loadObject, type BpfObject, type ProgramSpec } from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const EXIT = 0x95;

function program(obj: BpfObject, name: string): ProgramSpec {
  const p = obj.programs.find((x) => x.name === name);
  assert.ok(p, `program '${name}' in ${obj.programs.map((x) => x.name).join(", ")}`);
  return p;
}

describe("30 loader: objects and programs", () => {
  before(function () {
    skipWithoutClang(this);
  });

  it("reads a libbpf-style uprobe object: programs by section, names, license", () => {
    const path = compileFixture("malloc_count.bpf.c");
    const obj = loadObject(path);
    assert.equal(obj.file, path);
    assert.equal(obj.license, "GPL");
    assert.equal(obj.kernelVersion, undefined);
    assert.deepEqual(
      obj.programs.map((p) => [p.name, p.section]),
      [
        ["on_malloc", "uprobe/libc.so.6:malloc"],
        ["on_malloc_return", "uretprobe/libc.so.6:malloc"],
      ],
    );
    assert.equal(program(obj, "on_malloc").section, "uprobe/libc.so.6:malloc");
    for (const p of obj.programs) {
      assert.equal(p.offset, 0);
      assert.equal(p.insns.byteLength, p.size, "no subprograms: insns are the function alone");
      assert.deepEqual(p.functions, [{ name: p.name, section: p.section, start: 0, count: p.size / 8 }]);
      assert.equal(p.insns[p.insns.byteLength - 8], EXIT, "ends with exit");
    }
  });

  it("reports every program of a multi-program object, whatever its section prefix", () => {
    const obj = loadObject(compileFixture("events.bpf.c"));
    assert.deepEqual(
      obj.programs.map((p) => `${p.section} ${p.name}`),
      [
        "uprobe/libc.so.6:write on_write",
        "uretprobe/libc.so.6:write on_write_return",
        "tracepoint/syscalls/sys_enter_openat on_openat",
        "simple/tick on_tick",
      ],
    );
  });

  it("splits a section with several functions into one program per global function", () => {
    const obj = loadObject(compileFixture("subprogs.bpf.c"));
    const chain = obj.programs.filter((p) => p.section === "simple/chain");
    assert.deepEqual(
      chain.map((p) => p.name),
      ["chain_first", "chain_second"],
    );
    const [first, second] = chain as [ProgramSpec, ProgramSpec];
    // `twice` (static) sits in the same section, so neither program starts at 0.
    assert.ok(first.offset > 0 && first.offset % 8 === 0);
    assert.ok(second.offset >= first.offset + first.size);
    assert.equal(first.functions[0]!.count * 8, first.size);
    // .text functions and static functions are subprograms, never programs.
    const names = obj.programs.map((p) => p.name);
    for (const sub of ["square", "sum_squares", "bump_total", "loop_step", "twice"]) assert.ok(!names.includes(sub), sub);
  });

  it("reads the license and the version section", () => {
    const obj = loadObject(compileFixture("legacy_maps.bpf.c"));
    assert.equal(obj.license, "GPL");
    assert.equal(obj.kernelVersion, 0x050a00);
    assert.equal(loadObject(compileFixture("globals.bpf.c")).license, "Dual MIT/GPL");
  });

  it("loads from a buffer as from a path, named by opts.name", () => {
    const path = compileFixture("malloc_count.bpf.c");
    const fromPath = loadObject(path);
    const fromBuffer = loadObject(new Uint8Array(readFileSync(path)));
    assert.equal(fromBuffer.file, undefined);
    assert.deepEqual({ ...fromBuffer, file: path }, fromPath);
    assert.equal(loadObject(readFileSync(path), { name: "counter.o" }).file, "counter.o");
  });

  it("leaves the caller's buffer untouched", () => {
    const bytes = readFileSync(compileFixture("subprogs.bpf.c"));
    const copy = Buffer.from(bytes);
    loadObject(bytes);
    assert.ok(bytes.equals(copy));
  });
});
