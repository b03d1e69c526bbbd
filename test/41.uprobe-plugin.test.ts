/**
 * The frida-uprobe plugin's TypeScript side: attach types, section grammar,
 * config validation, prepare() against this process's libc and node, and the
 * private data's byte layout (checked against the C header with gcc).
 */
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AttachTypeId, PLUGIN_ABI_VERSION, symbolResolver } from "@bpfhook/sdk";
import type { AttachTypeSpec } from "@bpfhook/sdk";
import {
  decodePrivateData,
  encodePrivateData,
  parseTargetSection,
  plugin,
  PRIVATE_DATA_FIXED,
  UPROBE,
  UPROBE_ATTACH_TYPES,
  UPROBE_OVERRIDE,
  UprobeFlags,
  uprobeIncludeDir,
  UREPLACE,
  URETPROBE,
} from "@bpfhook/plugin-frida-uprobe";
import type { UprobePrivateData } from "@bpfhook/plugin-frida-uprobe";

const PACKAGE_DIR = path.resolve(__dirname, "..", "..", "plugins", "frida-uprobe");
const LIBC = fs.realpathSync("/lib/x86_64-linux-gnu/libc.so.6");

/** Section -> parseSection(type, rest, section), as the registry calls it. */
function fromSection(section: string): unknown {
  const type = UPROBE_ATTACH_TYPES.find((t) =>
    t.sectionPrefixes.some((p) => section === p || section.startsWith(`${p}/`)),
  )!;
  const prefix = [...type.sectionPrefixes]
    .sort((a, b) => b.length - a.length)
    .find((p) => section === p || section.startsWith(`${p}/`))!;
  return plugin.parseSection(type, section.slice(prefix.length + 1), section);
}

/** Validates like the registry, then prepares like the runtime. */
function prepared(type: AttachTypeSpec, raw: unknown): UprobePrivateData {
  const data = plugin.privateDataSchema.parse(raw);
  return plugin.prepare!({ type, data }, { log: () => {} }) as UprobePrivateData;
}

function issues(raw: unknown): string[] {
  const r = plugin.privateDataSchema.safeParse(raw);
  assert.equal(r.success, false, `expected ${JSON.stringify(raw, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))} to fail`);
  return r.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

function expectCode(fn: () => unknown, code: string, ...parts: string[]): void {
  assert.throws(fn, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    for (const p of parts) assert.ok(err.message.includes(p), `'${err.message}' lacks '${p}'`);
    return true;
  });
}

describe("41 frida-uprobe plugin", () => {
  describe("contract", () => {
    it("serves uprobe, uretprobe, uprobe_override and ureplace with bpftime's ids and pt_regs", () => {
      assert.equal(plugin.name, "frida-uprobe");
      assert.equal(plugin.abiVersion, PLUGIN_ABI_VERSION);
      assert.deepEqual(
        plugin.attachTypes.map((t) => [t.id, t.name, t.sectionPrefixes, t.contextSize]),
        [
          [AttachTypeId.UPROBE, "uprobe", ["uprobe", "uprobe.s"], 168],
          [AttachTypeId.URETPROBE, "uretprobe", ["uretprobe", "uretprobe.s"], 168],
          [AttachTypeId.UPROBE_OVERRIDE, "uprobe_override", ["uprobe.override", "uoverride"], 168],
          [AttachTypeId.UREPLACE, "ureplace", ["ureplace"], 168],
        ],
      );
      assert.deepEqual([UPROBE.id, URETPROBE.id, UPROBE_OVERRIDE.id, UREPLACE.id], [6, 7, 1008, 1009]);
    });

    it("points at its native piece and is found through package.json", () => {
      assert.equal(plugin.nativeLibrary, path.join(PACKAGE_DIR, "build", "libbpfhook_frida_uprobe.so"));
      const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, "package.json"), "utf8"));
      assert.equal(pkg.name, "@bpfhook/plugin-frida-uprobe");
      assert.equal(pkg.bpfhook.plugin, "./dist/index.js");
      assert.match(pkg.scripts["build:native"], /cmake -S \. -B build.*--target bpfhook_frida_uprobe/);
      assert.ok(fs.existsSync(path.join(uprobeIncludeDir(), "bpfhook", "uprobe_plugin.h")));
    });
  });

  describe("section names", () => {
    const rows: [string, unknown][] = [
      ["uprobe/libc.so.6:malloc", { module: "libc.so.6", symbol: "malloc" }],
      ["uprobe/libc:malloc+0x10", { module: "libc", symbol: "malloc", offset: 0x10n }],
      ["uprobe/libc:malloc+16", { module: "libc", symbol: "malloc", offset: 16n }],
      ["uprobe/libc.so.6:0x98930", { module: "libc.so.6", offset: 0x98930n }],
      ["uprobe/libc.so.6:4096", { module: "libc.so.6", offset: 4096n }],
      // libbpf's absolute-path forms: the path starts right after "uprobe/".
      ["uprobe//proc/self/exe:main_loop", { module: "/proc/self/exe", symbol: "main_loop" }],
      ["uprobe//usr/lib/x86_64-linux-gnu/libc.so.6:free", { module: "/usr/lib/x86_64-linux-gnu/libc.so.6", symbol: "free" }],
      ["uprobe/./target:uprobe_add", { module: "./target", symbol: "uprobe_add" }],
      ["uprobe/:main_loop", { module: "", symbol: "main_loop" }],
      ["uprobe//opt/a:b/libx.so:f", { module: "/opt/a:b/libx.so", symbol: "f" }],
      ["uprobe.s/libc:malloc", { module: "libc", symbol: "malloc" }],
      ["uretprobe/libc.so.6:malloc", { module: "libc.so.6", symbol: "malloc" }],
      ["uretprobe.s/libc.so.6:malloc", { module: "libc.so.6", symbol: "malloc" }],
      ["uprobe.override/libc.so.6:getpid", { module: "libc.so.6", symbol: "getpid" }],
      ["uoverride/self:check_license", { module: "self", symbol: "check_license" }],
      ["ureplace/libm.so.6:cos", { module: "libm.so.6", symbol: "cos" }],
      ["uprobe/libc:malloc@@GLIBC_2.2.5", { module: "libc", symbol: "malloc@@GLIBC_2.2.5" }],
    ];
    for (const [section, expected] of rows) {
      it(section, () => assert.deepEqual(fromSection(section), expected));
    }

    it("refuses sections that name no function, with the forms it takes", () => {
      const cases: [string, string][] = [
        ["uprobe", "names no function; use uprobe/<module>:<symbol>[+<offset>]"],
        ["uretprobe/malloc", "expected <module>:<symbol> after 'uretprobe/'"],
        ["uprobe/libc:", "nothing after ':'"],
        ["uprobe/libc:malloc+", "not <symbol>+<offset>"],
        ["uprobe/libc:malloc+zz", "not <symbol>+<offset>"],
        ["uprobe/libc:+0x10", "not <symbol>+<offset>"],
      ];
      for (const [section, message] of cases) {
        assert.throws(() => fromSection(section), (err: Error) => err.message.includes(message), section);
      }
    });

    it("gives section data the schema accepts", () => {
      for (const [section] of rows) plugin.privateDataSchema.parse(fromSection(section));
    });

    it("parseTargetSection is exported for tools", () => {
      assert.deepEqual(parseTargetSection("libc:free", "uprobe/libc:free"), { module: "libc", symbol: "free" });
    });
  });

  describe("config entries", () => {
    it("accepts the three target forms, with numbers as number, bigint or string", () => {
      const parse = (raw: Record<string, unknown>) => plugin.privateDataSchema.parse(plugin.parseConfig!(UPROBE, raw));
      assert.deepEqual(parse({ module: "libc.so.6", symbol: "malloc" }), {
        module: "libc.so.6",
        symbol: "malloc",
        ifunc: "implementation",
      });
      assert.equal(parse({ module: "libc", symbol: "malloc", offset: 4 }).offset, 4n);
      assert.equal(parse({ module: "libc", symbol: "malloc", offset: "0x10" }).offset, 16n);
      assert.equal(parse({ module: "libc", offset: 0x98930n }).offset, 0x98930n);
      assert.equal(parse({ address: "0x7f0000001000" }).address, 0x7f0000001000n);
      assert.equal(parse({ address: "18446744073709551615" }).address, (1n << 64n) - 1n);
      assert.equal(parse({ module: "libc", symbol: "strlen", ifunc: "resolver" }).ifunc, "resolver");
    });

    it("names the bad field and says what it takes", () => {
      const rows: [Record<string, unknown>, string][] = [
        [{ module: "libc", symbol: "malloc", offset: "ten" }, "offset: offset must be a non-negative integer"],
        [{ module: "libc", symbol: "malloc", offset: 1.5 }, "offset: offset must be a non-negative integer"],
        [{ module: "libc", symbol: "malloc", offset: -1 }, "offset: offset must be between 0 and 2^64-1"],
        [{ module: "libc", symbol: "malloc", offset: true }, "offset: offset must be a non-negative integer"],
        [{ address: "0x1" + "0".repeat(16) }, "address: address must be between 0 and 2^64-1"],
        [{ address: 0 }, "address: address must not be 0"],
        [{ address: 4096, module: "libc" }, "module: 'module' can't go with 'address'"],
        [{ address: 4096, offset: 1 }, "offset: 'offset' can't go with 'address'"],
        [{ symbol: "malloc" }, "module: module is required"],
        [{ module: "libc" }, "symbol: module 'libc' needs a symbol"],
        [{ module: "libc", symbol: "malloc+4" }, "symbol: symbol must be one ELF symbol name"],
        [{ module: "libc", symbol: "" }, "symbol: symbol must not be empty"],
        [{ module: 6, symbol: "malloc" }, "module: "],
        [{ module: "libc", symbol: "strlen", ifunc: "both" }, "ifunc: "],
        [{ module: "libc", symbol: "malloc", modle: "x" }, 'Unrecognized key: "modle"'],
        [{ module: "libc", symbol: "malloc", resolved: { address: 1 } }, 'Unrecognized key: "resolved"'],
      ];
      for (const [raw, expected] of rows) {
        const found = issues(raw);
        assert.ok(
          found.some((i) => i.startsWith(expected) || (expected.startsWith("Unrecognized") && i.includes(expected))),
          `${JSON.stringify(raw)}: ${found.join("; ")}`,
        );
      }
    });
  });

  describe("prepare() in this process", () => {
    it("resolves a function to the symbol service's address", () => {
      const data = prepared(UPROBE, { module: "libc.so.6", symbol: "malloc" });
      const expected = symbolResolver.resolveSymbol({ module: "libc.so.6", symbol: "malloc" });
      assert.deepEqual(data.resolved, {
        address: expected.address,
        vaddr: expected.vaddr,
        flags: 0,
        description: `${LIBC}:malloc`,
        modulePath: LIBC,
        kind: "func",
        funcOffset: 0n,
        funcSize: expected.symbolSize,
      });
      const inside = prepared(UPROBE, { module: "libc", symbol: "malloc", offset: 4 });
      assert.equal(inside.resolved!.address, expected.address + 4n);
      assert.equal(inside.resolved!.description, `${LIBC}:malloc+0x4`);
      assert.equal(inside.resolved!.funcOffset, 4n);
      assert.equal(inside.resolved!.funcSize, expected.symbolSize);
    });

    it("refuses uretprobe, uprobe_override and ureplace inside a function, naming the type and offset", () => {
      for (const type of [URETPROBE, UPROBE_OVERRIDE, UREPLACE]) {
        expectCode(
          () => prepared(type, { module: "libc", symbol: "malloc", offset: 4 }),
          "BAD_ARGUMENT",
          `${type.name} ${LIBC}:malloc+0x4: a ${type.name} must be at the function's entry, not at offset 0x4`,
        );
        assert.equal(prepared(type, { module: "libc", symbol: "malloc", offset: 0 }).resolved!.funcOffset, 0n);
      }
    });

    it("prepares sections of every form", () => {
      const malloc = symbolResolver.resolveSymbol({ module: "libc", symbol: "malloc" });
      for (const section of [
        "uprobe/libc.so.6:malloc",
        `uprobe/${LIBC}:malloc`,
        "uprobe//lib/x86_64-linux-gnu/libc.so.6:malloc",
        `uprobe/libc:0x${malloc.fileOffset!.toString(16)}`,
      ]) {
        assert.equal(prepared(UPROBE, fromSection(section)).resolved!.address, malloc.address, section);
      }
      const own = symbolResolver.resolveSymbol({ module: "self", symbol: "uv_version" });
      assert.equal(prepared(UPROBE, fromSection("uprobe//proc/self/exe:uv_version")).resolved!.address, own.address);
    });

    it("hooks an IFUNC's implementation by default, its resolver on request", () => {
      const impl = prepared(UPROBE, { module: "libc", symbol: "strlen" });
      assert.equal(impl.resolved!.kind, "ifunc");
      assert.equal(impl.resolved!.flags, UprobeFlags.IFUNC_RESOLVER);
      assert.match(plugin.describe!({ type: UPROBE, data: impl }), /IFUNC resolver/);
      const resolverItself = prepared(UPROBE, { module: "libc", symbol: "strlen", ifunc: "resolver" });
      assert.equal(resolverItself.resolved!.flags, 0);
      assert.equal(resolverItself.resolved!.address, impl.resolved!.address);
      expectCode(
        () => prepared(UPROBE, { module: "libc", symbol: "strlen", offset: 4 }),
        "BAD_ARGUMENT",
        "'strlen' is an IFUNC",
        'ifunc: "resolver"',
      );
    });

    it("checks an absolute address against the process's executable mappings", () => {
      const malloc = symbolResolver.resolveSymbol({ module: "libc", symbol: "malloc" });
      const data = prepared(UPROBE, { address: malloc.address });
      assert.equal(data.resolved!.address, malloc.address);
      assert.equal(data.resolved!.description, `0x${malloc.address.toString(16)} (libc.so.6:0x${malloc.fileOffset!.toString(16)})`);
      expectCode(() => prepared(UPROBE, { address: 8 }), "NOT_FOUND", "address 0x8 is not in an executable mapping", `process ${process.pid}`);
      const readOnly = symbolResolver.findModule("libc").ranges.find((r) => !r.executable)!;
      expectCode(
        () => prepared(UPROBE, { address: readOnly.start }),
        "NOT_FOUND",
        `it is in a ${readOnly.perms} mapping of ${LIBC}`,
      );
    });

    it("names the symbol and module it could not find", () => {
      expectCode(() => prepared(UPROBE, { module: "libc", symbol: "mallocx" }), "NOT_FOUND", "symbol 'mallocx' not found in", LIBC);
      expectCode(
        () => prepared(UREPLACE, fromSection("ureplace/libfoo.so:bar")),
        "NOT_FOUND",
        `module 'libfoo.so' is not mapped in process ${process.pid}`,
      );
      expectCode(() => prepared(UPROBE, { module: "libc", offset: 1n << 40n }), "NOT_FOUND", "file offset 0x10000000000");
    });

    it("resolves in the process the host names as the target", () => {
      // The resolution is pid-relative; our own pid through host.target must agree with the default.
      const data = plugin.privateDataSchema.parse({ module: "libc", symbol: "free" });
      const here = { log: () => {}, target: { pid: process.pid, moduleRelative: false } };
      const a = (plugin.prepare!({ type: UPROBE, data }, here) as UprobePrivateData).resolved!;
      assert.equal(a.address, symbolResolver.resolveSymbol({ module: "libc", symbol: "free" }).address);
      assert.equal(a.flags & UprobeFlags.MODULE_RELATIVE, 0);
      const missing = { log: () => {}, target: { pid: 0x7ffffff0, moduleRelative: false } };
      expectCode(() => plugin.prepare!({ type: UPROBE, data }, missing), "NOT_FOUND", "process 2147483632");
    });
  });

  describe("encode()", () => {
    it("writes u64 address, u32 attach type, u32 flags, u64 function offset and size, then the description and a NUL", () => {
      const bytes = encodePrivateData({
        address: 0x1122334455667788n,
        attachType: 1008,
        flags: 1,
        funcOffset: 0x10n,
        funcSize: 0x317n,
        description: "m:s",
      });
      assert.equal(
        Buffer.from(bytes).toString("hex"),
        "8877665544332211" + "f0030000" + "01000000" + "1000000000000000" + "1703000000000000" + "6d3a7300",
      );
      assert.equal(bytes.length, PRIVATE_DATA_FIXED + 4);
    });

    it("encodes prepared data with the attach type chosen", () => {
      for (const type of UPROBE_ATTACH_TYPES) {
        const data = prepared(type, { module: "libc", symbol: "malloc" });
        const decoded = decodePrivateData(plugin.encode({ type, data }));
        assert.deepEqual(decoded, {
          address: data.resolved!.address,
          attachType: type.id,
          flags: 0,
          funcOffset: 0n,
          funcSize: data.resolved!.funcSize,
          description: `${LIBC}:malloc`,
        });
        // A program that calls no helper is flagged (the engine then skips saving vector state).
        const program = { name: "p", section: "uprobe/x", helperIds: [] };
        assert.equal(decodePrivateData(plugin.encode({ type, data, program })).flags, UprobeFlags.NO_HELPERS);
        const calls = { ...program, helperIds: [1] };
        assert.equal(decodePrivateData(plugin.encode({ type, data, program: calls })).flags, 0);
      }
    });

    it("refuses to encode before prepare(), naming the target", () => {
      const data = plugin.privateDataSchema.parse({ module: "libc", symbol: "malloc", offset: 2 });
      assert.throws(() => plugin.encode({ type: UPROBE, data }), /uprobe libc:malloc\+0x2: encode\(\) before prepare\(\)/);
      assert.equal(plugin.describe!({ type: UPROBE, data }), "uprobe libc:malloc+0x2");
    });

    it("matches the C header's layout, byte for byte", function () {
      const header = fs.readFileSync(path.join(uprobeIncludeDir(), "bpfhook", "uprobe_plugin.h"), "utf8");
      assert.match(header, /#define BH_UPROBE_F_IFUNC_RESOLVER \(1u << 0\)/);
      assert.match(header, new RegExp(`#define BH_UPROBE_F_MODULE_RELATIVE \\(1u << ${Math.log2(UprobeFlags.MODULE_RELATIVE)}\\)`));
      assert.match(header, new RegExp(`#define BH_UPROBE_PRIVATE_DATA_FIXED ${PRIVATE_DATA_FIXED}u`));
      try {
        execFileSync("gcc", ["--version"], { stdio: "ignore" });
      } catch {
        this.skip();
      }
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bpfhook-uprobe-h-"));
      try {
        const bytes = encodePrivateData({
          address: 0x7f0012345678n,
          attachType: 1009,
          flags: 1,
          funcOffset: 4n,
          funcSize: 0x40n,
          description: "/lib/x.so:f+0x4",
        });
        fs.writeFileSync(path.join(dir, "data.bin"), bytes);
        const relative = encodePrivateData({
          address: 0x1234n,
          attachType: 6,
          flags: UprobeFlags.MODULE_RELATIVE | UprobeFlags.IFUNC_RESOLVER,
          description: "libc.so.6:strlen",
          modulePath: "/usr/lib/libc.so.6",
        });
        fs.writeFileSync(path.join(dir, "rel.bin"), relative);
        fs.writeFileSync(path.join(dir, "check.c"), DECODE_C);
        execFileSync("gcc", ["-std=c11", "-Wall", "-Wextra", "-Werror", "-I", uprobeIncludeDir(), "-o", "check", "check.c"], {
          cwd: dir,
          stdio: "pipe",
        });
        const out = execFileSync(path.join(dir, "check"), ["data.bin"], { cwd: dir, encoding: "utf8" });
        assert.equal(out, "ok 0x7f0012345678 1009 1 4 64 /lib/x.so:f+0x4 -\nshort -22\nflags -22\n");
        const rel = execFileSync(path.join(dir, "check"), ["rel.bin"], { cwd: dir, encoding: "utf8" });
        assert.equal(rel, "ok 0x1234 6 5 0 0 libc.so.6:strlen /usr/lib/libc.so.6\nshort -22\nflags -22\n");
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

/** Decodes private data with the header's own helper, and checks its refusals. */
const DECODE_C = String.raw`
#include <stdio.h>
#include <inttypes.h>
#include <bpfhook/uprobe_plugin.h>

int main(int argc, char **argv) {
  unsigned char buf[256];
  FILE *f = fopen(argc > 1 ? argv[1] : "data.bin", "rb");
  if (!f) return 2;
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  struct bh_uprobe_target t;
  int rc = bh_uprobe_private_data_decode(buf, n, &t);
  if (rc != 0) return 3;
  printf("ok 0x%" PRIx64 " %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu64 " %s %s\n", t.address, t.attach_type, t.flags,
         t.func_offset, t.func_size, t.description, t.module_path ? t.module_path : "-");
  printf("short %d\n", bh_uprobe_private_data_decode(buf, BH_UPROBE_PRIVATE_DATA_FIXED, &t));
  buf[12] |= 0x80;
  printf("flags %d\n", bh_uprobe_private_data_decode(buf, n, &t));
  return 0;
}
`;
