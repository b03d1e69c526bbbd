/**
 * Module-relative uprobe targets (agent mode's form, issue 10): with
 * `target: { pid, moduleRelative: true }` the frida-uprobe plugin encodes the
 * module's path and the link-time vaddr instead of an absolute address, and
 * its native piece finds the module in its own process (dl_iterate_phdr).
 * Here the "other process" is this one, so every probe must fire exactly as
 * the absolute form does in test 42; the native refusals (module not loaded,
 * vaddr outside code, malformed bytes) are driven with hand-made private data.
 */
import { strict as assert } from "node:assert";
import fs from "node:fs";
import path from "node:path";
import { Runtime, type BpfMap, type LoadedObject } from "@bpfhook/core";
import { symbolResolver } from "@bpfhook/sdk";
import type { AttachRequest } from "@bpfhook/sdk";
import {
  decodePrivateData,
  encodePrivateData,
  plugin,
  UPROBE,
  UprobeFlags,
  URETPROBE,
} from "@bpfhook/plugin-frida-uprobe";
import type { UprobePrivateData } from "@bpfhook/plugin-frida-uprobe";
import { expectError } from "./support/expect-error.js";
import type { TestAddon } from "./support/test-addon.js";
import { useUprobeFixture } from "./support/uprobe-fixture.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const fixture = path.join(repoRoot, "test", "fixtures", "uprobe", "probes.bpf.c");
const RELATIVE = { pid: process.pid, moduleRelative: true };
const host = { log: () => {}, target: RELATIVE };

/** Validates and prepares like the runtime does with `target: RELATIVE`. */
function preparedRelative(type: typeof UPROBE, raw: unknown): UprobePrivateData {
  const data = plugin.privateDataSchema.parse(raw);
  return plugin.prepare!({ type, data }, host) as UprobePrivateData;
}

describe("45 module-relative uprobe targets", function () {
  let obj: LoadedObject;
  let t: TestAddon;
  let objectPath: string;

  useUprobeFixture(
    fixture,
    "bpfhook-urel-",
    (s) => {
      t = s.t!;
      objectPath = s.objectPath!;
      if (s.obj) obj = s.obj;
    },
    { target: RELATIVE },
  );

  const slots = () => obj.map<BpfMap<number, bigint>>("slots");
  const counts = () => obj.map<BpfMap<number, bigint>>("counts");
  const slot = (i: number) => slots().get(i) ?? 0n;
  const count = (k: number) => counts().get(k) ?? 0n;

  describe("private data", () => {
    it("carries the flag, the module's path as mapped and the link-time vaddr, no absolute address", () => {
      const r = symbolResolver.resolveSymbol({ module: "libbpfhook_targets.so", symbol: "bh_target_add" });
      const data = preparedRelative(URETPROBE, { module: "libbpfhook_targets.so", symbol: "bh_target_add" });
      const d = decodePrivateData(plugin.encode({ type: URETPROBE, data }));
      assert.equal(d.flags & UprobeFlags.MODULE_RELATIVE, UprobeFlags.MODULE_RELATIVE);
      assert.equal(d.modulePath, r.modulePath);
      assert.ok(path.isAbsolute(d.modulePath!));
      assert.equal(d.address, r.vaddr);
      assert.equal(d.address, r.address - r.bias);
      assert.notEqual(d.address, r.address, "a shared library's bias is never 0");
      assert.equal(d.attachType, URETPROBE.id);
      assert.equal(d.funcSize, r.symbolSize);
      assert.match(plugin.describe!({ type: URETPROBE, data }), /bh_target_add at vaddr 0x[0-9a-f]+ \(module-relative\)/);
    });

    it("an IFUNC (libc strlen) keeps the resolver flag, its vaddr relative too", () => {
      const r = symbolResolver.resolveSymbol({ module: "libc", symbol: "strlen" });
      assert.equal(r.kind, "ifunc");
      const d = decodePrivateData(plugin.encode({ type: UPROBE, data: preparedRelative(UPROBE, { module: "libc", symbol: "strlen" }) }));
      assert.equal(d.flags, UprobeFlags.IFUNC_RESOLVER | UprobeFlags.MODULE_RELATIVE);
      assert.equal(d.address, r.vaddr);
      assert.equal(d.modulePath, r.modulePath);
    });

    it("a file offset and an address inside a module become module-relative too", () => {
      const r = symbolResolver.resolveSymbol({ module: "libbpfhook_targets.so", symbol: "bh_target_add" });
      const byOffset = preparedRelative(UPROBE, { module: "libbpfhook_targets.so", offset: r.fileOffset! }).resolved!;
      assert.deepEqual([byOffset.vaddr, byOffset.modulePath, byOffset.flags], [r.vaddr, r.modulePath, UprobeFlags.MODULE_RELATIVE]);
      const byAddress = preparedRelative(UPROBE, { address: r.address }).resolved!;
      assert.deepEqual([byAddress.vaddr, byAddress.modulePath, byAddress.flags], [r.vaddr, r.modulePath, UprobeFlags.MODULE_RELATIVE]);
    });

    it("refuses an address in anonymous memory: it can't be moved to another process", function () {
      const anon = fs
        .readFileSync("/proc/self/maps", "utf8")
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f.length === 5 && f[1]!.startsWith("r-x") && f[4] === "0");
      if (!anon) {
        console.log("      skipped: no anonymous executable mapping in this process");
        this.skip();
      }
      const start = BigInt(`0x${anon![0]!.split("-")[0]}`);
      assert.throws(
        () => preparedRelative(UPROBE, { address: start }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "BAD_ARGUMENT");
          assert.match(e.message, /is in no module of process \d+, so it can't be moved to another process/);
          return true;
        },
      );
      // The absolute form still takes it.
      const abs = plugin.prepare!({ type: UPROBE, data: plugin.privateDataSchema.parse({ address: start }) }, { log: () => {} });
      assert.equal((abs as UprobePrivateData).resolved!.flags, 0);
    });
  });

  describe("attached in this process", () => {
    it("an entry probe sees the arguments, the function's absolute address and the cookie", async () => {
      const link = await obj.program("on_add").attach({ cookie: 77n });
      assert.match(link.description, /libbpfhook_targets\.so:bh_target_add at vaddr 0x[0-9a-f]+ \(module-relative\)/);
      assert.equal(t.add(3, 4), 7n);
      assert.deepEqual([slot(0), slot(1)], [3n, 4n]);
      assert.equal(slot(2), t.addressOf("bh_target_add"), "bpf_get_func_ip: the native side found the right bias");
      assert.equal(slot(3), 77n);
      assert.equal(count(0), 1n);
      link.detach();
      t.add(1, 1);
      assert.equal(count(0), 1n, "no run after detach");
    });

    it("a return probe sees the return value and the entry arguments", async () => {
      await obj.program("on_add_ret").attach();
      assert.equal(t.add(20, 22), 42n);
      assert.deepEqual([slot(4), slot(5)], [42n, 20n]);
    });

    it("override and replace act as in the absolute form", async () => {
      await obj.program("filter_double").attach();
      const before = t.doubleBodyCalls();
      assert.deepEqual([t.double(21), t.double(-5), t.double(100)], [42n, -1n, 200n]);
      assert.equal(t.doubleBodyCalls() - before, 2n, "the body ran only for the calls not overridden");
      const link = await obj.program("replace_add").attach();
      assert.equal(t.add(6, 7), 42n);
      link.detach();
      assert.equal(t.add(6, 7), 13n);
    });

    it("on libc: malloc (plain) and strlen (an IFUNC, its implementation hooked)", async () => {
      await obj.program("on_malloc").attach();
      await obj.program("on_strlen").attach();
      t.mallocLoop(1000, 12345);
      for (let i = 0; i < 25; i++) assert.equal(t.strlen("bpfhook-marker!"), 15);
      assert.equal(count(7), 1000n);
      assert.equal(count(8), 25n);
    });

    it("on the main program (dlpi_name \"\": matched through /proc/self/exe)", async () => {
      await obj.program("on_hrtime").attach();
      for (let i = 0; i < 100; i++) process.hrtime.bigint();
      assert.ok(count(9) >= 100n, `uv_hrtime hits: ${count(9)}`);
    });
  });

  it("Runtime refuses a malformed target option", async () => {
    await expectError(() => Runtime.create({ target: { pid: -1 } }), "BAD_ARGUMENT", /option 'target\.pid' must be a positive integer/);
    const bad = { pid: process.pid, moduleRelative: "yes" } as unknown as { pid: number };
    await expectError(() => Runtime.create({ target: bad }), "BAD_ARGUMENT", /option 'target\.moduleRelative' must be a boolean/);
  });

  describe("native refusals (hand-made private data)", () => {
    /**
     * A runtime whose frida-uprobe plugin encodes as usual and then lets
     * `edit` rewrite the bytes the native attach() receives.
     */
    async function withBytes(edit: (bytes: Uint8Array, req: AttachRequest<UprobePrivateData>) => Uint8Array) {
      const tampered = { ...plugin, encode: (req: AttachRequest<UprobePrivateData>) => edit(plugin.encode(req), req) };
      const r = await Runtime.create({ plugins: [tampered], target: RELATIVE });
      return { r, o: r.load(objectPath) };
    }
    const reencode = (bytes: Uint8Array, change: Partial<ReturnType<typeof decodePrivateData>>) => {
      const d = decodePrivateData(bytes);
      return encodePrivateData({ ...d, ...change });
    };

    it("a module that is not loaded: ENOENT naming the module, the target and the pid", async () => {
      const { r, o } = await withBytes((b) => reencode(b, { modulePath: "/nonexistent/libfoo.so" }));
      try {
        const err = await expectError(
          () => o.program("on_add").attach(),
          "ATTACH_FAILED",
          new RegExp(`uprobe '.*libbpfhook_targets\\.so:bh_target_add': module /nonexistent/libfoo\\.so is not loaded in process ${process.pid}`),
        );
        assert.equal(err.errno, -2);
        assert.equal(r.attachments.length, 0);
      } finally {
        r.close();
      }
    });

    it("a vaddr outside the module's executable segments: EFAULT naming the vaddr", async () => {
      const { r, o } = await withBytes((b) => reencode(b, { address: 0n, funcSize: 0n }));
      try {
        const err = await expectError(
          () => o.program("on_add").attach(),
          "ATTACH_FAILED",
          new RegExp(`vaddr 0x0 is in no executable segment of module /.*libbpfhook_targets\\.so .*in process ${process.pid}`),
        );
        assert.equal(err.errno, -14);
      } finally {
        r.close();
      }
    });

    const malformed: [string, (b: Uint8Array) => Uint8Array][] = [
      // Flag set, the data ends at the description's NUL.
      ["a missing module string", (b) => b.subarray(0, b.indexOf(0, 32) + 1)],
      // The module string's NUL cut off.
      ["an unterminated module string", (b) => b.subarray(0, b.length - 1)],
      ["a relative module path", (b) => {
        const d = decodePrivateData(b);
        const abs = encodePrivateData({ ...d, modulePath: "/x" });
        const out = Buffer.from(abs);
        out[out.length - 3] = "x".charCodeAt(0); // "/x\0" -> "xx\0"
        return out;
      }],
    ];
    for (const [what, edit] of malformed) {
      it(`${what}: EINVAL from the native decode`, async () => {
        const { r, o } = await withBytes((b) => {
          assert.equal(decodePrivateData(b).flags & UprobeFlags.MODULE_RELATIVE, UprobeFlags.MODULE_RELATIVE);
          return edit(b);
        });
        try {
          const err = await expectError(() => o.program("on_add").attach(), "ATTACH_FAILED", /malformed private data/);
          assert.equal(err.errno, -22);
        } finally {
          r.close();
        }
      });
    }
  });
});
