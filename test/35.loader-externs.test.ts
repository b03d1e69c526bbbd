import { strict as assert } from "node:assert";
import { release } from "node:os";
import path from "node:path";
import {
  BPF_F_MMAPABLE,
  BPF_F_RDONLY_PROG,
  BpfhookError,
  KCONFIG_TABLE,
  kernelVersionCode,
  linuxKernelVersion,
  loadObject,
  Runtime,
  type BpfMap,
} from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");

/** Asserts that `run` throws (synchronously) a BpfhookError with `code` whose message matches. */
function expectError(run: () => unknown, code: string, match: RegExp): BpfhookError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, match);
    return e;
  }
  return assert.fail(`expected ${code}, nothing was thrown`);
}

/** What read_kconfig copies into .bss (struct seen in test/fixtures/kconfig.bpf.c). */
function readSeen(bss: Buffer) {
  const nul = bss.indexOf(0, 24);
  return {
    version: bss.readUInt32LE(0),
    cookie: bss.readUInt32LE(4),
    hz: bss.readUInt32LE(8),
    syscall: bss.readUInt32LE(12),
    kprobes: bss.readUInt32LE(16),
    uprobes: bss.readUInt32LE(20),
    name: bss.subarray(24, nul < 0 || nul > 40 ? 40 : nul).toString(),
    unknown: bss.readBigUInt64LE(40),
  };
}

describe("35 loader: __kconfig and __ksym externs", () => {
  it("encodes LINUX_KERNEL_VERSION from uname as libbpf's KERNEL_VERSION(a, b, c)", () => {
    assert.equal(kernelVersionCode(6, 18, 44), (6 << 16) + (18 << 8) + 44);
    assert.equal(kernelVersionCode(5, 4, 300), (5 << 16) + (4 << 8) + 255, "patch is capped at 255");
    assert.equal(linuxKernelVersion("6.18.44-fc-v1252"), kernelVersionCode(6, 18, 44));
    assert.equal(linuxKernelVersion("6.1"), kernelVersionCode(6, 1, 0));
    assert.equal(linuxKernelVersion("weird"), 0);
    assert.ok(linuxKernelVersion() > kernelVersionCode(2, 6, 0), `uname release ${release()}`);
  });

  describe("with clang-built objects", () => {
    before(function () {
      skipWithoutClang(this);
    });

    it("lays externs out in a read-only .kconfig map as libbpf does, and relocates loads to it", () => {
      const obj = loadObject(compileFixture("kconfig.bpf.c"));
      const kconfig = obj.maps.find((m) => m.name === ".kconfig");
      assert.ok(kconfig, obj.maps.map((m) => m.name).join(", "));
      assert.equal(obj.maps.at(-1), kconfig, ".kconfig comes after the object's own maps");
      assert.equal(kconfig.readonly, true);
      assert.equal(kconfig.flags, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG);
      assert.deepEqual([kconfig.keySize, kconfig.maxEntries], [4, 1]);
      // Largest alignment first, then by name; 8-byte multiple overall.
      const layout = kconfig.valueType!.members!.map((m) => `${m.name}@${m.offset}`);
      assert.deepEqual(layout, [
        "CONFIG_BPFHOOK_UNKNOWN@0",
        "CONFIG_BPF_SYSCALL@8",
        "CONFIG_HZ@12",
        "CONFIG_KPROBES@16",
        "LINUX_KERNEL_VERSION@20",
        "CONFIG_BPFHOOK_NAME@24",
        "CONFIG_UPROBES@40",
        "LINUX_HAS_BPF_COOKIE@41",
      ]);
      assert.equal(kconfig.valueSize, 48);
      const data = Buffer.from(kconfig.initialData!);
      assert.equal(data.readBigUInt64LE(0), 0n, "a weak extern nothing defines is 0");
      assert.equal(data.readUInt32LE(8), 1, "CONFIG_BPF_SYSCALL=y is TRI_YES");
      assert.equal(data.readUInt32LE(12), KCONFIG_TABLE["CONFIG_HZ"]);
      assert.equal(data.readUInt32LE(16), 0, "CONFIG_KPROBES=n");
      assert.equal(data.readUInt32LE(20), linuxKernelVersion());
      assert.ok(data.subarray(24, 40).every((b) => b === 0));
      assert.deepEqual([data[40], data[41]], [1, 1], "bools: CONFIG_UPROBES=y, LINUX_HAS_BPF_COOKIE");

      // Every load of an extern became an lddw of .kconfig's value (src 6) at its offset.
      const index = obj.maps.indexOf(kconfig);
      const prog = obj.programs.find((p) => p.name === "read_kconfig")!;
      const offsets: number[] = [];
      for (let pc = 0; pc + 1 < prog.insns.length / 8; pc++) {
        const at = pc * 8;
        if (prog.insns[at] === 0x18 && prog.insns[at + 1]! >> 4 === 6 && Buffer.from(prog.insns).readInt32LE(at + 4) === index) {
          offsets.push(Buffer.from(prog.insns).readInt32LE(at + 12));
          pc++;
        }
      }
      assert.deepEqual(offsets.sort((a, b) => a - b), [0, 8, 12, 16, 20, 24, 40, 41]);
    });

    it("takes values from the kconfig option, checked against each extern's type", () => {
      const path = compileFixture("kconfig.bpf.c");
      const obj = loadObject(path, { kconfig: { CONFIG_HZ: 1000, CONFIG_BPFHOOK_NAME: "a-much-too-long-name", CONFIG_KPROBES: "m" } });
      const data = Buffer.from(obj.maps.find((m) => m.name === ".kconfig")!.initialData!);
      assert.equal(data.readUInt32LE(12), 1000);
      assert.equal(data.readUInt32LE(16), 2, "m is TRI_MODULE");
      assert.equal(data.subarray(24, 40).toString(), "a-much-too-long\0", "a string is cut to fit with its NUL, as libbpf does");

      const bad = (kconfig: Record<string, unknown>, message: RegExp) =>
        expectError(() => loadObject(path, { kconfig: kconfig as never }), "ELF_UNSUPPORTED", message);
      bad({ CONFIG_HZ: "y" }, /section '\.kconfig', symbol 'CONFIG_HZ': __kconfig extern \(int, 4 bytes\): tristate value 'y' does not fit an integer/);
      bad({ CONFIG_HZ: 2 ** 40 }, /symbol 'CONFIG_HZ': __kconfig extern \(int, 4 bytes\): value 1099511627776 does not fit \(-2147483648\.\.2147483647\)/);
      bad({ CONFIG_UPROBES: "m" }, /symbol 'CONFIG_UPROBES': __kconfig extern \(bool, 1 bytes\): value 'm' \(module\) does not fit a bool/);
      bad({ CONFIG_BPF_SYSCALL: 7 }, /symbol 'CONFIG_BPF_SYSCALL': __kconfig extern \(tristate, 4 bytes\): value "7" is not y, n or m/);
      bad({ CONFIG_BPFHOOK_NAME: 5 }, /symbol 'CONFIG_BPFHOOK_NAME': __kconfig extern \(char array, 16 bytes\): value 5 is not a string/);
    });

    it("refuses a strong extern nothing defines, naming it and the program that uses it", () => {
      const path = compileFixture("errors/kconfig.bpf.c");
      const err = expectError(() => loadObject(path), "ELF_UNSUPPORTED", /program 'read_kconfig' \(section 'simple\/kconfig'\) uses this __kconfig extern/);
      assert.equal(err.detail.symbol, "CONFIG_BPFHOOK_MISSING");
      // Given a value, the same object loads.
      const obj = loadObject(path, { kconfig: { CONFIG_BPFHOOK_MISSING: 5 } });
      assert.ok(obj.maps.some((m) => m.name === ".kconfig"));
    });

    it("needs BTF to know an extern's kind, and says so", () => {
      const path = compileFixture("kconfig.bpf.c", { debug: false });
      expectError(() => loadObject(path), "ELF_UNSUPPORTED", /symbol 'LINUX_KERNEL_VERSION': an extern variable can only be resolved with BTF \(compile with -g\)/);
    });

    describe("at run time", () => {
      let rt: Runtime;
      beforeEach(async () => {
        rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"], resolveFrom: repoRoot });
      });
      afterEach(() => rt.close());

      it("programs read the values (also from a subprogram)", () => {
        const obj = rt.load(compileFixture("kconfig.bpf.c"), { kconfig: { CONFIG_BPFHOOK_NAME: "bpfhook" } });
        assert.equal(obj.program("read_kconfig").run(), 1n);
        const seen = readSeen(obj.map<BpfMap<number, Buffer>>(".bss").get(0)!);
        assert.deepEqual(seen, {
          version: linuxKernelVersion(),
          cookie: 1,
          hz: KCONFIG_TABLE["CONFIG_HZ"],
          syscall: 1,
          kprobes: 0,
          uprobes: 1,
          name: "bpfhook",
          unknown: 0n,
        });
      });

      it("freezes .kconfig and .rodata after load; .data and .bss stay writable", () => {
        const obj = rt.load(compileFixture("globals.bpf.c"));
        const rodata = obj.map<BpfMap<number, Buffer>>(".rodata");
        assert.equal(rodata.frozen, true);
        const before = rodata.get(0)!;
        const err = expectError(() => rodata.set(0, Buffer.alloc(rodata.valueSize)), "READ_ONLY", /^map '\.rodata': update: the map is frozen/);
        assert.equal(err.detail.symbol, ".rodata");
        expectError(() => rodata.delete(0), "READ_ONLY", /^map '\.rodata': delete: /);
        assert.deepEqual(rodata.get(0), before, "the refused write changed nothing");
        for (const name of [".data", ".bss"]) {
          const m = obj.map<BpfMap<number, Buffer>>(name);
          assert.equal(m.frozen, false, name);
          m.set(0, Buffer.alloc(m.valueSize, 1));
          assert.ok(m.get(0)!.every((b) => b === 1), name);
        }
        const kobj = rt.load(compileFixture("kconfig.bpf.c"));
        const kconfig = kobj.map<BpfMap<number, Buffer>>(".kconfig");
        expectError(() => kconfig.set(0, Buffer.alloc(kconfig.valueSize)), "READ_ONLY", /^map '\.kconfig': update: /);
      });
    });
  });
});

