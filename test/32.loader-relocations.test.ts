import { strict as assert } from "node:assert";
import { loadObject, type BpfObject, type ProgramSpec } from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

// Instruction facts the assertions read; written out here so the loader's
// tests do not lean on the loader's (or the assembler's) own definitions.
const LDDW = 0x18;
const CALL = 0x85;
const EXIT = 0x95;
const PSEUDO_CALL = 1;
const PSEUDO_FUNC = 4;
const PSEUDO_MAP_IDX = 5;
const PSEUDO_MAP_IDX_VALUE = 6;

interface Slot {
  pc: number;
  opcode: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

function decode(insns: Uint8Array): Slot[] {
  const view = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const out: Slot[] = [];
  for (let pc = 0; pc < insns.byteLength / 8; pc++) {
    const at = pc * 8;
    const regs = view.getUint8(at + 1);
    out.push({ pc, opcode: view.getUint8(at), dst: regs & 0xf, src: regs >> 4, off: view.getInt16(at + 2, true), imm: view.getInt32(at + 4, true) });
  }
  return out;
}

/** lddw instructions with their second slot's imm, skipping the second slots themselves. */
function loads(p: ProgramSpec): { pc: number; src: number; imm: number; imm2: number }[] {
  const slots = decode(p.insns);
  const out = [];
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i]!;
    if (s.opcode !== LDDW) continue;
    out.push({ pc: s.pc, src: s.src, imm: s.imm, imm2: slots[i + 1]!.imm });
    i++;
  }
  return out;
}

function calls(p: ProgramSpec, src: number): Slot[] {
  return decode(p.insns).filter((s) => s.opcode === CALL && s.src === src);
}

function program(obj: BpfObject, name: string): ProgramSpec {
  const p = obj.programs.find((x) => x.name === name);
  assert.ok(p, `program '${name}'`);
  return p;
}

/** Name of the linked function that starts at pc, or a note that none does. */
function functionAt(p: ProgramSpec, pc: number): string {
  return p.functions.find((f) => f.start === pc)?.name ?? `<no function starts at ${pc}>`;
}

function functionOf(p: ProgramSpec, pc: number): string {
  return p.functions.find((f) => pc >= f.start && pc < f.start + f.count)!.name;
}

function bytesOf(p: ProgramSpec, name: string): Buffer {
  const f = p.functions.find((x) => x.name === name)!;
  return Buffer.from(p.insns.subarray(f.start * 8, (f.start + f.count) * 8));
}

describe("32 loader: relocations and linking", () => {
  before(function () {
    skipWithoutClang(this);
  });

  describe("maps", () => {
    it("rewrites lddw of a BTF map into src 5, imm = map index", () => {
      const obj = loadObject(compileFixture("malloc_count.bpf.c"));
      const p = program(obj, "on_malloc");
      const mapLoads = loads(p);
      assert.ok(mapLoads.length >= 3);
      for (const l of mapLoads) assert.deepEqual([l.src, l.imm2], [PSEUDO_MAP_IDX, 0]);
      assert.deepEqual(
        [...new Set(mapLoads.map((l) => obj.maps[l.imm]!.name))].sort(),
        ["last_size", "malloc_calls"],
      );
      // Helper calls are left alone: lookup (1) and update (2).
      const helpers = decode(p.insns).filter((s) => s.opcode === CALL).map((s) => [s.src, s.imm]);
      assert.ok(helpers.some(([src, imm]) => src === 0 && imm === 1));
      assert.ok(helpers.some(([src, imm]) => src === 0 && imm === 2));
    });

    it("rewrites references to legacy maps and to static maps", () => {
      const legacy = loadObject(compileFixture("legacy_maps.bpf.c"));
      assert.deepEqual(
        loads(program(legacy, "use_legacy")).map((l) => [l.src, legacy.maps[l.imm]!.name]),
        [
          [PSEUDO_MAP_IDX, "legacy_counts"],
          [PSEUDO_MAP_IDX, "legacy_seen"],
        ],
      );
      // `hidden` is static: clang refers to it through the .maps section symbol plus an offset.
      const btf = loadObject(compileFixture("btf_maps.bpf.c"));
      assert.deepEqual(
        loads(program(btf, "touch_maps")).map((l) => btf.maps[l.imm]!.name),
        ["typed", "sized", "both_spellings", "hidden"],
      );
    });

    it("points every program of a multi-program object at the shared ring buffer", () => {
      const obj = loadObject(compileFixture("events.bpf.c"));
      for (const p of obj.programs) {
        assert.deepEqual(
          loads(p).map((l) => [l.src, l.imm]),
          [[PSEUDO_MAP_IDX, 0]],
          p.name,
        );
      }
    });
  });

  describe("global data", () => {
    it("rewrites lddw of a global into src 6: imm = map index, second imm = offset in the value", () => {
      const obj = loadObject(compileFixture("globals.bpf.c"));
      const offsetOf = (mapName: string, variable: string): number => {
        const m = obj.maps.find((x) => x.name === mapName)!;
        return m.valueType!.members!.find((v) => v.name === variable || v.name.endsWith(`.${variable}`))!.offset;
      };
      const refs = loads(program(obj, "use_globals")).map((l) => {
        assert.equal(l.src, PSEUDO_MAP_IDX_VALUE);
        return `${obj.maps[l.imm]!.name}+${l.imm2}`;
      });
      const expected = [
        `.bss+${offsetOf(".bss", "histogram")}`,
        `.bss+${offsetOf(".bss", "over_threshold")}`, // static: section symbol + imm
        `.data+${offsetOf(".data", "hits")}`,
        `.data+${offsetOf(".data", "last_verbose")}`, // static
        `.rodata+${offsetOf(".rodata", "cfg")}`,
        `.rodata+${offsetOf(".rodata", "factor")}`,
        `.rodata+${offsetOf(".rodata", "____fmt")}`,
      ];
      assert.deepEqual([...new Set(refs)].sort(), expected.sort());
      // The offsets are the variables' real places, not all zero.
      assert.ok(expected.includes(".bss+64") && expected.includes(".data+8") && expected.includes(".rodata+16"));
    });

    it("points string literals into .rodata.str1.1 at their bytes", () => {
      const obj = loadObject(compileFixture("globals.bpf.c"));
      const strings = obj.maps.findIndex((m) => m.name === ".rodata.str1.1");
      const text = Buffer.from(obj.maps[strings]!.initialData!);
      const pointed = loads(program(obj, "use_strings"))
        .filter((l) => l.imm === strings)
        .map((l) => text.subarray(l.imm2, text.indexOf(0, l.imm2)).toString());
      assert.deepEqual(pointed.sort(), ["first", "second"]);
    });
  });

  describe("subprograms", () => {
    const obj = () => loadObject(compileFixture("subprogs.bpf.c"));

    it("appends every reachable subprogram once, transitively, after the program", () => {
      const p = program(obj(), "chain_first");
      assert.deepEqual(
        p.functions.map((f) => `${f.section}:${f.name}`),
        ["simple/chain:chain_first", "simple/chain:twice", ".text:sum_squares", ".text:square"],
      );
      let next = 0;
      for (const f of p.functions) {
        assert.equal(f.start, next, `${f.name} follows the previous function`);
        next += f.count;
        assert.equal(decode(p.insns)[f.start + f.count - 1]!.opcode, EXIT, `${f.name} ends with exit`);
      }
      assert.equal(next * 8, p.insns.byteLength);
    });

    it("points each call's imm at the appended callee (target = pc + imm + 1)", () => {
      const p = program(obj(), "chain_first");
      const edges = calls(p, PSEUDO_CALL).map((c) => `${functionOf(p, c.pc)} -> ${functionAt(p, c.pc + c.imm + 1)}`);
      // twice: same section, no relocation; sum_squares: global in .text;
      // square: static, only reachable through sum_squares (called twice).
      assert.deepEqual(edges.sort(), ["chain_first -> sum_squares", "chain_first -> twice", "sum_squares -> square", "sum_squares -> square"]);
    });

    it("links calls through the .text section symbol (static callee) and global data in subprograms", () => {
      const p = program(obj(), "just_total");
      assert.deepEqual(
        p.functions.map((f) => f.name),
        ["just_total", "bump_total", "square"],
      );
      const edges = calls(p, PSEUDO_CALL).map((c) => `${functionOf(p, c.pc)} -> ${functionAt(p, c.pc + c.imm + 1)}`);
      assert.deepEqual(edges.sort(), ["just_total -> bump_total", "just_total -> square"]);
      const bss = obj().maps.findIndex((m) => m.name === ".bss");
      const ref = loads(p).find((l) => functionOf(p, l.pc) === "bump_total");
      assert.deepEqual(ref && [ref.src, ref.imm, ref.imm2], [PSEUDO_MAP_IDX_VALUE, bss, 0]);
    });

    it("gives each program its own copy of a shared subprogram", () => {
      const o = obj();
      const first = program(o, "chain_first");
      const second = program(o, "chain_second");
      assert.deepEqual(
        second.functions.map((f) => f.name),
        ["chain_second", "twice"],
      );
      assert.ok(bytesOf(first, "twice").equals(bytesOf(second, "twice")), "same code, relocated the same way");
      const [call] = calls(second, PSEUDO_CALL);
      assert.equal(functionAt(second, call!.pc + call!.imm + 1), "twice");
      assert.ok(bytesOf(first, "square").equals(bytesOf(program(o, "just_total"), "square")));
    });

    it("turns a callback's address into lddw src 4 pointing at the appended function", () => {
      const p = program(obj(), "with_loop");
      assert.deepEqual(
        p.functions.map((f) => f.name),
        ["with_loop", "loop_step", "bump_total"],
      );
      const [callback] = loads(p).filter((l) => l.src === PSEUDO_FUNC);
      assert.ok(callback);
      assert.equal(functionAt(p, callback.pc + callback.imm + 1), "loop_step");
      assert.equal(callback.imm2, 0);
      // bpf_loop (helper 181) itself stays a plain helper call.
      assert.ok(decode(p.insns).some((s) => s.opcode === CALL && s.src === 0 && s.imm === 181));
      const edges = calls(p, PSEUDO_CALL).map((c) => `${functionOf(p, c.pc)} -> ${functionAt(p, c.pc + c.imm + 1)}`);
      assert.deepEqual(edges, ["loop_step -> bump_total"]);
    });
  });

  describe("CO-RE", () => {
    it("keeps field relocations at the object's own layout", () => {
      const p = program(loadObject(compileFixture("core_fields.bpf.c")), "core_fields");
      // ctx->args[2]: 8 (common) + 8 (id) + 2 * 8 = 32, as compiled.
      assert.ok(decode(p.insns).some((s) => s.opcode === 0x79 && s.off === 32), "ldxdw from ctx + 32");
    });
  });
});
