/**
 * Config files (docs/CONFIG.md): parsing and validation with positions, the
 * `.rodata` and max_entries load options, and Runtime.fromConfigFile with
 * the three documented examples (examples/configs) attached to the test
 * targets library and really firing.
 */
import { strict as assert } from "node:assert";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BpfhookError, compileBpfC, loadConfigFile, parseConfig, Runtime, type BpfMap } from "@bpfhook/core";
import { clangUnavailable, compileFixture } from "./support/clang.js";
import { expectError } from "./support/expect-error.js";
import { testAddon, type TestAddon } from "./support/test-addon.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const examples = path.join(repoRoot, "examples", "configs");
/** Under test/dist so that plugin names resolve up to the workspace's node_modules. */
const work = path.join(repoRoot, "test", "dist", "config-work");

/** Line and column (1-based) of the first occurrence of `needle` in `text`. */
function posOf(text: string, needle: string, nth = 0): { line: number; column: number } {
  let at = -1;
  for (let i = 0; i <= nth; i++) at = text.indexOf(needle, at + 1);
  assert.ok(at >= 0, `'${needle}' not in the config`);
  const before = text.slice(0, at).split("\n");
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

/** Writes `text` as `name` in the work folder and returns its path. */
function writeConfig(name: string, text: string): string {
  const file = path.join(work, name);
  writeFileSync(file, text);
  return file;
}

/** Asserts a config error at the position of `needle` naming `field`. */
async function expectAt(run: () => unknown, text: string, needle: string, field: string, match?: RegExp, code = "CONFIG_INVALID") {
  const err = await expectError(run, code, match);
  const want = posOf(text, needle);
  assert.equal(err.detail.field, field, err.message);
  assert.deepEqual({ line: err.detail.line, column: err.detail.column }, want, err.message);
  assert.ok(err.message.includes(`:${want.line}:${want.column}: ${field}`), err.message);
  return err;
}

describe("55 config files", function () {
  let t: TestAddon;
  let skipNative: string | undefined;

  before(function () {
    mkdirSync(work, { recursive: true });
    skipNative = clangUnavailable();
    if (skipNative === undefined) {
      // The examples, as a user lays them out: config beside the objects it names.
      for (const f of ["count", "latency", "override"]) {
        compileBpfC(path.join(examples, `${f}.bpf.c`), { out: path.join(work, `${f}.bpf.o`) });
      }
      for (const f of ["count.yaml", "latency.yaml", "override.json"]) cpSync(path.join(examples, f), path.join(work, f));
      t = testAddon();
    }
  });

  function needClang(ctx: Mocha.Context): void {
    if (skipNative !== undefined) {
      console.log(`      skipped: ${skipNative}`);
      ctx.skip();
    }
  }

  describe("parsing and the schema", () => {
    it("reads YAML and JSON to the same typed config", () => {
      const yaml = parseConfig("objects:\n  - path: a.bpf.o\n    rodata: { pid: 42 }\n", path.join(work, "a.yaml"));
      const json = parseConfig('{"objects": [{"path": "a.bpf.o", "rodata": {"pid": 42}}]}', path.join(work, "a.json"));
      assert.deepEqual(yaml.config, json.config);
      assert.equal(yaml.dir, work);
      assert.deepEqual(yaml.config.objects[0]!.rodata, { pid: 42 });
    });

    it("the documented examples are valid", () => {
      for (const f of ["count.yaml", "latency.yaml", "override.json"]) {
        const cfg = loadConfigFile(path.join(examples, f));
        assert.equal(cfg.config.plugins?.[0], "@bpfhook/plugin-frida-uprobe");
      }
    });

    it("bad YAML syntax: the parser's position", async () => {
      const text = "objects:\n  - path: a.bpf.o\n    rodata: { pid: 42\n";
      const err = await expectError(() => parseConfig(text, "bad.yaml"), "CONFIG_INVALID", /bad\.yaml:\d+:\d+: /);
      assert.ok(err.detail.line! >= 3, err.message);
    });

    it("bad JSON syntax", async () => {
      const err = await expectError(() => parseConfig('{"objects": [ {"path": "a.o"} }', "bad.json"), "CONFIG_INVALID");
      assert.equal(err.detail.line, 1);
      assert.ok(err.detail.column! > 1, err.message);
    });

    it("an unknown key points at the key", async () => {
      const text = "objects:\n  - path: a.bpf.o\n    rodta: { pid: 1 }\n";
      await expectAt(() => parseConfig(text, "k.yaml"), text, "rodta", "objects[0].rodta", /unknown key 'rodta'/);
    });

    it("an unknown key in a program entry and at the top", async () => {
      const text = "objects:\n  - path: a.bpf.o\n    programs:\n      p: { cookei: 1 }\n";
      await expectAt(() => parseConfig(text, "k.yaml"), text, "cookei", "objects[0].programs.p.cookei");
      const top = '{"objects": [{"path": "a.o"}], "plugin": []}';
      await expectAt(() => parseConfig(top, "k.json"), top, '"plugin"', "plugin");
    });

    it("a wrong type points at the value", async () => {
      const text = "region:\n  size: big\nobjects:\n  - path: a.bpf.o\n";
      await expectAt(() => parseConfig(text, "t.yaml"), text, "big", "region.size", /number/);
      const t2 = "objects:\n  - path: a.bpf.o\n    maps:\n      m: { maxEntries: -3 }\n";
      await expectAt(() => parseConfig(t2, "t.yaml"), t2, "-3", "objects[0].maps.m.maxEntries");
    });

    it("a missing field points at the object that lacks it", async () => {
      const text = "plugins: []\nobjects:\n  - name: x\n";
      await expectAt(() => parseConfig(text, "m.yaml"), text, "name: x", "objects[0].path");
    });

    it("an unreadable file names it", async () => {
      await expectError(() => loadConfigFile(path.join(work, "missing.yaml")), "CONFIG_INVALID", /missing\.yaml: cannot read/);
    });
  });

  describe("rodata and map sizes (load options)", () => {
    let rt: Runtime;
    before(function () {
      needClang(this);
    });
    beforeEach(async () => {
      rt = await Runtime.create();
    });
    afterEach(() => rt.close());

    it("sets const volatile values before the freeze; programs read them", () => {
      const obj = rt.load(path.join(work, "override.bpf.o"), { rodata: { fallback: -7 } });
      const ro = obj.map<BpfMap<number, Buffer>>(".rodata").get(0)!;
      assert.equal(ro.readBigInt64LE(0), -7n);
    });

    it("refuses an unknown variable, a value that does not fit, a wrong type", async () => {
      const file = path.join(work, "count.bpf.o");
      let e = await expectError(() => rt.load(file, { rodata: { nope: 1 } }), "BAD_ARGUMENT", /no const volatile variable 'nope'.*min_arg/);
      assert.equal(e.detail.field, "rodata.nope");
      e = await expectError(() => rt.load(file, { rodata: { min_arg: "0x8000000000000000" } }), "BAD_ARGUMENT", /does not fit/);
      assert.equal(e.detail.field, "rodata.min_arg");
      await expectError(() => rt.load(file, { rodata: { min_arg: true } }), "BAD_ARGUMENT", /is an integer/);
      await expectError(() => rt.load(file, { rodata: { min_arg: 1.5 } }), "BAD_ARGUMENT", /needs an integer/);
      rt.load(file, { rodata: { min_arg: "-0x10" } }).close();
    });

    it("bools, chars, char arrays, enums and every integer size, as the program reads them", () => {
      const obj = rt.load(compileFixture("runtime/rodata.bpf.c"), {
        rodata: { verbose: true, letter: "z", comm: "ab", small: 255, neg: -2, big: "0xffffffffffffffff", mode: "MODE_ON" },
      });
      assert.equal(obj.program("copy_knobs").run(), 0n);
      const out = obj.map<BpfMap<number, Buffer>>(".bss").get(0)!;
      const v = (i: number) => out.readBigUInt64LE(i * 8);
      assert.deepEqual(
        [v(0), v(1), v(2), v(3), v(4), v(5), v(6)],
        [1n, 122n, 0x6261n, 255n, BigInt.asUintN(64, -2n), 0xffffffffffffffffn, 5n],
      );
      obj.close();
      const bad: [Record<string, unknown>, RegExp][] = [
        [{ verbose: 1 }, /is a bool/],
        [{ comm: "123456789" }, /9 bytes, char\[8\] holds 8/],
        [{ comm: 5 }, /give a string/],
        [{ small: 256 }, /does not fit/],
        [{ neg: 32768 }, /does not fit/],
        [{ mode: "MODE_NONE" }, /needs an integer/],
      ];
      for (const [rodata, match] of bad) {
        assert.throws(() => rt.load(compileFixture("runtime/rodata.bpf.c"), { rodata: rodata as never }), match);
      }
    });

    it("max_entries: raised before creation; unknown map, global data and bad sizes refused", async () => {
      const file = path.join(work, "count.bpf.o");
      const obj = rt.load(file, { maxEntries: { calls: 1024 } });
      assert.equal(obj.objectMap("calls").spec.maxEntries, 1024);
      obj.close();
      let e = await expectError(() => rt.load(file, { maxEntries: { cals: 8 } }), "BAD_ARGUMENT", /no map 'cals'/);
      assert.equal(e.detail.field, "maxEntries.cals");
      e = await expectError(() => rt.load(file, { maxEntries: { ".rodata": 2 } }), "BAD_ARGUMENT", /global data/);
      await expectError(() => rt.load(file, { maxEntries: { calls: 0 } }), "BAD_ARGUMENT", /from 1 to/);
    });
  });

  describe("load options on raw objects", () => {
    it("maxEntries applies to maps given in code; rodata is refused (no BTF)", async () => {
      const rt = await Runtime.create();
      try {
        // mov r0, 0; exit
        const insns = Uint8Array.from([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
        const maps = [{ name: "m", type: 2, keySize: 4, valueSize: 8, maxEntries: 4, flags: 0, section: ".maps" }];
        const obj = rt.load({ programs: [{ name: "p", insns }], maps }, { maxEntries: { m: 32 } });
        assert.equal(obj.objectMap("m").spec.maxEntries, 32);
        obj.close();
        await expectError(() => rt.load({ programs: [{ name: "p", insns }], maps }, { rodata: { x: 1 } }), "BAD_ARGUMENT", /needs an ELF object with BTF/);
      } finally {
        rt.close();
      }
    });
  });

  describe("Runtime.fromConfigFile", () => {
    before(function () {
      needClang(this);
    });

    it("uprobe counting (count.yaml): rodata knob and map size applied, calls counted", async () => {
      const c = await Runtime.fromConfigFile(path.join(work, "count.yaml"));
      try {
        assert.equal(c.links.length, 1);
        const obj = c.objects.get("count")!;
        assert.equal(obj.objectMap("calls").spec.maxEntries, 1024);
        for (const a of [1, 10, 10, 11, 5]) t.add(a, 1);
        const calls = obj.map<BpfMap<bigint, bigint>>("calls");
        assert.equal(calls.get(10n), 2n);
        assert.equal(calls.get(11n), 1n);
        assert.equal(calls.get(1n), undefined, "below min_arg: not counted");
        assert.equal(calls.get(5n), undefined);
      } finally {
        c.close();
      }
      assert.equal(c.runtime.attachments.length, 0);
    });

    it("uretprobe latency histogram (latency.yaml): explicit attach, every call in the histogram", async () => {
      const c = await Runtime.fromConfigFile(path.join(work, "latency.yaml"));
      try {
        assert.equal(c.links.length, 2);
        assert.deepEqual(c.config.config.output, { maps: ["hist"], intervalMs: 1000 });
        for (let i = 0; i < 5; i++) assert.equal(t.fib(1), 1n);
        const hist = c.objects.get("latency")!.map<BpfMap<number, bigint>>("hist");
        let total = 0n;
        for (let s = 0; s < 64; s++) total += hist.get(s) ?? 0n;
        assert.equal(total, 5n);
      } finally {
        c.close();
      }
    });

    it("override (override.json): negative arguments return the configured fallback", async () => {
      const c = await Runtime.fromConfigFile(path.join(work, "override.json"));
      try {
        const before = t.doubleBodyCalls();
        assert.equal(t.double(21), 42n);
        assert.equal(t.double(-3), -7n, "overridden with rodata 'fallback'");
        assert.equal(t.doubleBodyCalls() - before, 1n);
      } finally {
        c.close();
      }
      assert.equal(t.double(-3), -6n, "detached on close");
    });

    it("an unknown plugin points at its entry", async () => {
      const text = 'plugins:\n  - "@bpfhook/plugin-frida-uprobe"\n  - bpfhook-plugin-nope\nobjects:\n  - path: count.bpf.o\n';
      const file = writeConfig("bad-plugin.yaml", text);
      await expectAt(() => Runtime.fromConfigFile(file), text, "bpfhook-plugin-nope", "plugins[1]", /bpfhook-plugin-nope/, "PLUGIN_NOT_FOUND");
    });

    it("cookies as documented: a number, a decimal or \"0x\" string; past 2^64-1 refused at the field", async () => {
      const base = "plugins: ['@bpfhook/plugin-frida-uprobe']\nobjects:\n  - path: count.bpf.o\n    programs:\n      count_calls:\n        cookie: ";
      for (const cookie of ["42", '"42"', '"0x1f"', '"0xffffffffffffffff"', '"18446744073709551615"']) {
        const c = await Runtime.fromConfigFile(writeConfig("cookie.yaml", `${base}${cookie}\n`));
        try {
          assert.equal(c.links.length, 1, cookie);
        } finally {
          c.close();
        }
      }
      for (const [cookie, match] of [
        ['"0x10000000000000000"', /does not fit in a u64/],
        ['"18446744073709551616"', /does not fit in a u64/],
        ["18446744073709551616", /Too big: expected int to be <=9007199254740991/],
      ] as const) {
        const text = `${base}${cookie}\n`;
        await expectAt(() => Runtime.fromConfigFile(writeConfig("bad-cookie.yaml", text)), text, cookie, "objects[0].programs.count_calls.cookie", match);
      }
    });

    it("an unknown program points at its key", async () => {
      const text = "plugins: ['@bpfhook/plugin-frida-uprobe']\nobjects:\n  - path: count.bpf.o\n    programs:\n      count_cals: {}\n";
      const file = writeConfig("bad-prog.yaml", text);
      await expectAt(() => Runtime.fromConfigFile(file), text, "count_cals", "objects[0].programs.count_cals", /no program 'count_cals'.*count_calls/);
    });

    it("bad private data: the plugin schema's field", async () => {
      const text =
        "plugins: ['@bpfhook/plugin-frida-uprobe']\nobjects:\n  - path: latency.bpf.o\n    programs:\n" +
        "      timed_entry:\n        attach: { type: uprobe, module: libbpfhook_targets.so, symbol: 'a b' }\n" +
        "      timed_return:\n        attach: { type: uretprobe, module: libbpfhook_targets.so, symbl: bh_target_fib }\n";
      const file = writeConfig("bad-data.yaml", text);
      await expectAt(() => Runtime.fromConfigFile(file), text, "'a b'", "objects[0].programs.timed_entry.attach.symbol", /one ELF symbol name/);
      const t2 = text.replace("'a b'", "bh_target_fib");
      await expectAt(() => Runtime.fromConfigFile(writeConfig("bad-data2.yaml", t2)), t2, "symbl", "objects[0].programs.timed_return.attach.symbl", /symbl/);
      const t3 = t2.replace("symbl", "symbol").replace("type: uretprobe", "type: uretprob");
      await expectAt(() => Runtime.fromConfigFile(writeConfig("bad-data3.yaml", t3)), t3, "uretprob,", "objects[0].programs.timed_return.attach.type", /uretprob/, "NOT_FOUND");
    });

    it("bad rodata name, size and type; bad map size and map name", async () => {
      const base = "plugins: ['@bpfhook/plugin-frida-uprobe']\nobjects:\n  - path: count.bpf.o\n";
      const cases: { text: string; needle: string; field: string; match: RegExp }[] = [
        { text: `${base}    rodata: { min_ar: 1 }\n`, needle: "min_ar", field: "objects[0].rodata.min_ar", match: /no const volatile/ },
        { text: `${base}    rodata: { min_arg: 0x10000000000000000 }\n`, needle: "0x1000", field: "objects[0].rodata.min_arg", match: /integer|fit/ },
        { text: `${base}    rodata: { min_arg: "9223372036854775808" }\n`, needle: '"9223', field: "objects[0].rodata.min_arg", match: /does not fit/ },
        { text: `${base}    rodata: { min_arg: yes }\n`, needle: "yes", field: "objects[0].rodata.min_arg", match: /integer/ },
        { text: `${base}    rodata: { min_arg: false }\n`, needle: "false", field: "objects[0].rodata.min_arg", match: /is an integer/ },
        { text: `${base}    maps: { calls: { maxEntries: 1.5 } }\n`, needle: "1.5", field: "objects[0].maps.calls.maxEntries", match: /int/ },
        { text: `${base}    maps: { cals: { maxEntries: 8 } }\n`, needle: "cals", field: "objects[0].maps.cals", match: /no map 'cals'/ },
        { text: `${base}    maps: { .rodata: { maxEntries: 8 } }\n`, needle: "8 }", field: "objects[0].maps..rodata.maxEntries", match: /global data/ },
      ];
      for (const [i, c] of cases.entries()) {
        const file = writeConfig(`bad-load-${i}.yaml`, c.text);
        const err = await expectError(() => Runtime.fromConfigFile(file), (await codeOf(file)) ?? "", c.match);
        const want = posOf(c.text, c.needle);
        assert.equal(err.detail.field, c.field, err.message);
        assert.deepEqual({ line: err.detail.line, column: err.detail.column }, want, `${c.text}\n${err.message}`);
      }
      async function codeOf(file: string): Promise<string | undefined> {
        try {
          await Runtime.fromConfigFile(file);
        } catch (e) {
          return (e as BpfhookError).code;
        }
        return undefined;
      }
    });

    it("a missing object file points at its path", async () => {
      const text = "objects:\n  - path: nowhere.bpf.o\n";
      const file = writeConfig("bad-path.yaml", text);
      const err = await expectError(() => Runtime.fromConfigFile(file), "NOT_FOUND", /nowhere\.bpf\.o: cannot read/);
      assert.equal(err.detail.field, "objects[0].path");
      assert.deepEqual({ line: err.detail.line, column: err.detail.column }, posOf(text, "nowhere"));
    });

    it("a section no listed plugin serves points at the object", async () => {
      const text = "objects:\n  - path: count.bpf.o\n";
      const file = writeConfig("no-plugin.yaml", text);
      await expectAt(() => Runtime.fromConfigFile(file), text, "path", "objects[0]", /served by no plugin/);
    });

    it("all or nothing: a failing attach leaves nothing attached and the runtime closed", async () => {
      // The first object attaches fine; the second's target does not exist.
      const text =
        "plugins: ['@bpfhook/plugin-frida-uprobe']\nobjects:\n  - path: count.bpf.o\n  - path: latency.bpf.o\n    programs:\n" +
        "      timed_entry:\n        attach: { type: uprobe, module: libbpfhook_targets.so, symbol: bh_target_fib }\n" +
        "      timed_return:\n        attach: { type: uretprobe, module: libbpfhook_targets.so, symbol: bh_no_such_function }\n";
      const file = writeConfig("partial.yaml", text);
      let err: unknown;
      try {
        await Runtime.fromConfigFile(file);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof BpfhookError, String(err));
      assert.equal(err.detail.field, "objects[1].programs.timed_return");
      assert.deepEqual({ line: err.detail.line, column: err.detail.column }, posOf(text, "attach:", 1));
      assert.match(err.message, /bh_no_such_function/);
      // Nothing fires: the count example's probe on bh_target_add was taken off again.
      const c = await Runtime.fromConfigFile(path.join(work, "count.yaml"));
      try {
        t.add(50, 1);
        assert.equal(c.objects.get("count")!.map<BpfMap<bigint, bigint>>("calls").get(50n), 1n, "one probe only: the failed runtime's is gone");
      } finally {
        c.close();
      }
    });

    it("overrides win over the file's options", async () => {
      const c = await Runtime.fromConfigFile(path.join(work, "latency.yaml"), { backend: "interpreter", region: { size: 8 << 20 } });
      try {
        assert.equal(c.runtime.options.backend, "interpreter");
        assert.equal(c.runtime.options.region?.size, 8 << 20);
        assert.equal(c.runtime.options.region?.maxMaps, 16);
        assert.equal(c.runtime.loadedObjects[0]!.programs[0]!.jitSize, 0);
      } finally {
        c.close();
      }
    });

    it("a region too small for the file's maxMaps points at region", async () => {
      const text = "region: { size: 8192, maxMaps: 64 }\nobjects:\n  - path: count.bpf.o\n";
      const file = writeConfig("small-region.yaml", text);
      await expectAt(() => Runtime.fromConfigFile(file), text, "{ size", "region", /too small/, "BAD_ARGUMENT");
    });
  });
});
