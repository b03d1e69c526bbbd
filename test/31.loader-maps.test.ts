import { strict as assert } from "node:assert";
import {
  BPF_F_MMAPABLE,
  BPF_F_NO_PREALLOC,
  BPF_F_RDONLY_PROG,
  BPF_MAP_TYPE,
  loadObject,
  type BpfObject,
  type BtfTypeInfo,
  type MapSpec,
} from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

function map(obj: BpfObject, name: string): MapSpec {
  const m = obj.maps.find((x) => x.name === name);
  assert.ok(m, `map '${name}' in ${obj.maps.map((x) => x.name).join(", ")}`);
  return m;
}

/** name -> [offset, kind, size] of a struct's / datasec's members. */
function layout(t: BtfTypeInfo | undefined): Record<string, [number, string, number]> {
  assert.ok(t?.members, "has members");
  return Object.fromEntries(t.members.map((m) => [m.name, [m.offset, m.type.kind, m.type.size]]));
}

describe("31 loader: map specs", () => {
  before(function () {
    skipWithoutClang(this);
  });

  describe("BTF maps in .maps", () => {
    it("reads __uint / __type definitions (malloc counter)", () => {
      const obj = loadObject(compileFixture("malloc_count.bpf.c"));
      assert.deepEqual(
        obj.maps.map((m) => m.name),
        ["malloc_calls", "last_size"],
      );
      const calls = map(obj, "malloc_calls");
      assert.deepEqual(
        { type: calls.type, keySize: calls.keySize, valueSize: calls.valueSize, maxEntries: calls.maxEntries, flags: calls.flags, section: calls.section },
        { type: BPF_MAP_TYPE.HASH, keySize: 4, valueSize: 8, maxEntries: 1024, flags: 0, section: ".maps" },
      );
      assert.deepEqual(calls.keyType, { id: calls.keyType!.id, name: "__u32", kind: "int", size: 4, signed: false });
      assert.equal(calls.valueType?.name, "__u64");
      assert.equal(calls.initialData, undefined);
      assert.equal(calls.readonly, undefined);
    });

    it("sizes keys and values through typedefs, qualifiers, structs, unions, arrays, enums and pointers", () => {
      const obj = loadObject(compileFixture("btf_maps.bpf.c"));
      const typed = map(obj, "typed");
      assert.equal(typed.type, BPF_MAP_TYPE.LRU_HASH);
      assert.equal(typed.maxEntries, 64);
      assert.equal(typed.flags, BPF_F_NO_PREALLOC);
      assert.equal(typed.pinning, 1); // LIBBPF_PIN_BY_NAME
      // struct key { u32 pid; u16 cpu; u8 kind; } pads to 8.
      assert.equal(typed.keySize, 8);
      assert.equal(typed.keyType?.name, "key_t", "keeps the typedef's name, under const volatile");
      assert.equal(typed.keyType?.kind, "struct");
      assert.deepEqual(layout(typed.keyType), { pid: [0, "int", 4], cpu: [4, "int", 2], kind: [6, "int", 1] });

      // comm[16] @0, enum @16, union @20, bitfields in the word @24, pointer @32, s64 @40, _Bool @48 -> 56.
      assert.equal(typed.valueSize, 56);
      const value = typed.valueType!;
      assert.equal(value.name, "struct value");
      assert.deepEqual(layout(value), {
        comm: [0, "array", 16],
        state: [16, "enum", 4],
        num: [20, "union", 4],
        flag: [24, "int", 4],
        level: [24, "int", 4],
        next: [32, "ptr", 8],
        total: [40, "int", 8],
        done: [48, "int", 1],
      });
      const member = (name: string) => value.members!.find((m) => m.name === name)!;
      assert.deepEqual([member("flag").bitOffset, member("flag").bitSize], [192, 1]);
      assert.deepEqual([member("level").bitOffset, member("level").bitSize], [193, 3]);
      assert.equal(member("total").bitSize, undefined);
      assert.equal(member("total").type.signed, true);
      assert.equal(member("done").type.bool, true);
      assert.equal(member("next").type.target, "struct value", "pointers name their target, not expand it");
      const comm = member("comm").type;
      assert.deepEqual([comm.length, comm.element?.name, comm.element?.size, comm.element?.signed], [16, "char", 1, true]);
      assert.deepEqual(
        member("num").type.members!.map((m) => [m.name, m.offset, m.type.signed]),
        [
          ["as_u32", 0, false],
          ["as_s32", 0, true],
        ],
      );
      assert.deepEqual(
        member("state").type.enumValues!.map((v) => v.name),
        ["STATE_IDLE", "STATE_RUNNING", "STATE_GONE"],
      );
    });

    it("takes key_size / value_size, alone or agreeing with __type", () => {
      const obj = loadObject(compileFixture("btf_maps.bpf.c"));
      const sized = map(obj, "sized");
      assert.deepEqual([sized.type, sized.keySize, sized.valueSize, sized.maxEntries], [BPF_MAP_TYPE.ARRAY, 4, 24, 4]);
      assert.equal(sized.keyType, undefined);
      const both = map(obj, "both_spellings");
      assert.deepEqual([both.type, both.keySize, both.valueSize], [BPF_MAP_TYPE.PERCPU_ARRAY, 4, 24]);
      assert.deepEqual([both.valueType?.kind, both.valueType?.length, both.valueType?.element?.size], ["array", 3, 8]);
    });

    it("reads static maps, pointer keys and enum values", () => {
      const hidden = map(loadObject(compileFixture("btf_maps.bpf.c")), "hidden");
      assert.deepEqual([hidden.keySize, hidden.valueSize], [8, 4]);
      assert.deepEqual([hidden.keyType?.kind, hidden.keyType?.target], ["ptr", "void"]);
      assert.equal(hidden.valueType?.name, "enum state");
    });

    it("gives perf event arrays int keys and values, as libbpf does", () => {
      const perf = map(loadObject(compileFixture("btf_maps.bpf.c")), "perf");
      assert.deepEqual([perf.type, perf.keySize, perf.valueSize], [BPF_MAP_TYPE.PERF_EVENT_ARRAY, 4, 4]);
    });

    it("reads a ring buffer: no key or value, max_entries is the byte size", () => {
      const obj = loadObject(compileFixture("events.bpf.c"));
      assert.equal(obj.maps.length, 1);
      const events = map(obj, "events");
      assert.deepEqual([events.type, events.keySize, events.valueSize, events.maxEntries], [BPF_MAP_TYPE.RINGBUF, 0, 0, 256 * 1024]);
    });

    it("needs BTF: .maps without -g is an error that says so", () => {
      const path = compileFixture("malloc_count.bpf.c", { debug: false });
      assert.throws(
        () => loadObject(path),
        (e: Error & { code?: string }) => e.code === "ELF_INVALID" && e.message.includes("section '.maps'") && e.message.includes("-g"),
      );
    });
  });

  describe("legacy maps section", () => {
    const expected = [
      { name: "legacy_counts", type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 8, maxEntries: 16, flags: 0, section: "maps" },
      { name: "legacy_seen", type: BPF_MAP_TYPE.HASH, keySize: 8, valueSize: 16, maxEntries: 128, flags: BPF_F_NO_PREALLOC, section: "maps" },
    ];

    it("reads struct bpf_map_def, one map per symbol", () => {
      assert.deepEqual(loadObject(compileFixture("legacy_maps.bpf.c")).maps, expected);
    });

    it("needs no BTF", () => {
      assert.deepEqual(loadObject(compileFixture("legacy_maps.bpf.c", { debug: false })).maps, expected);
    });
  });

  describe("global data", () => {
    it("turns .rodata, .data, .bss and .rodata.str1.1 into one-entry array maps", () => {
      const obj = loadObject(compileFixture("globals.bpf.c"));
      assert.deepEqual(
        obj.maps.map((m) => m.name).sort(),
        [".bss", ".data", ".rodata", ".rodata.str1.1"],
      );
      for (const m of obj.maps) {
        assert.equal(m.section, m.name);
        assert.deepEqual([m.type, m.keySize, m.maxEntries], [BPF_MAP_TYPE.ARRAY, 4, 1], m.name);
        assert.equal(m.initialData?.byteLength, m.valueSize, m.name);
        assert.deepEqual(m.keyType, { name: "u32", kind: "int", size: 4, signed: false });
      }
    });

    it("keeps .rodata's initial content, read-only", () => {
      const rodata = map(loadObject(compileFixture("globals.bpf.c")), ".rodata");
      assert.equal(rodata.readonly, true);
      assert.equal(rodata.flags, BPF_F_RDONLY_PROG | BPF_F_MMAPABLE);
      const vars = layout(rodata.valueType);
      assert.deepEqual([vars["cfg"], vars["factor"]], [
        [0, "struct", 16],
        [16, "int", 4],
      ]);
      const bytes = Buffer.from(rodata.initialData!);
      assert.equal(bytes.readUInt32LE(0), 1); // cfg.verbose
      assert.equal(bytes.readBigUInt64LE(8), 0x1122334455667788n); // cfg.threshold
      assert.equal(bytes.readUInt32LE(16), 3); // factor
      // bpf_printk's format is a function-local static: a variable of .rodata too.
      const fmt = rodata.valueType!.members!.find((m) => m.name.endsWith("____fmt"));
      assert.ok(fmt);
      assert.equal(bytes.subarray(fmt.offset, fmt.offset + fmt.type.size).toString("latin1"), "hits %llu\0");
    });

    it("keeps .data's initial content, writable, with static variables placed", () => {
      const data = map(loadObject(compileFixture("globals.bpf.c")), ".data");
      assert.equal(data.readonly, undefined);
      assert.equal(data.flags, BPF_F_MMAPABLE);
      assert.deepEqual(layout(data.valueType), { hits: [0, "int", 8], last_verbose: [8, "int", 4] });
      const bytes = Buffer.from(data.initialData!);
      assert.equal(bytes.readBigUInt64LE(0), 42n);
      assert.equal(bytes.readUInt32LE(8), 7);
    });

    it("zeroes .bss", () => {
      const bss = map(loadObject(compileFixture("globals.bpf.c")), ".bss");
      assert.deepEqual(layout(bss.valueType), { histogram: [0, "array", 64], over_threshold: [64, "int", 4], copied: [68, "array", 8] });
      assert.equal(bss.valueSize, 76);
      assert.ok(bss.initialData!.every((b) => b === 0));
    });

    it("keeps string literals from .rodata.str1.1", () => {
      const strings = map(loadObject(compileFixture("globals.bpf.c")), ".rodata.str1.1");
      assert.equal(strings.readonly, true);
      const text = Buffer.from(strings.initialData!).toString("latin1");
      assert.ok(text.includes("first\0") && text.includes("second\0"), JSON.stringify(text));
      assert.equal(strings.valueType, undefined, "clang describes no DATASEC for merged strings");
    });
  });
});
