/**
 * Plugins are code that runs in the host: they load only from where the user
 * put them. Package names resolve from the application (or a config file's
 * directory), never from the working directory; a package's entry module and
 * native piece must lie inside it; a refused native piece is unloaded again.
 */
import { strict as assert } from "node:assert";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Runtime, defaultResolveDir } from "@bpfhook/core";
import { PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { expectError } from "./support/expect-error.js";
import { makePluginApp } from "./support/plugin-app.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const sdkInclude = path.join(repoRoot, "sdk", "include");

/** Writes a plugin package into `nodeModules/<name>` and returns its directory. */
function writePackage(nodeModules: string, name: string, manifest: object, files: Record<string, string>): string {
  const dir = path.join(nodeModules, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", ...manifest }));
  for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, file), text);
  return dir;
}

/** A plugin module whose native piece is `nativeLibrary` (JS expression). */
function pluginModule(name: string, nativeLibrary: string, marker?: string): string {
  return `"use strict";
const path = require("node:path");
${marker ? `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran");` : ""}
exports.plugin = {
  name: ${JSON.stringify(name)}, abiVersion: ${PLUGIN_ABI_VERSION},
  attachTypes: [{ id: 4300, name: ${JSON.stringify(name)}, sectionPrefixes: [${JSON.stringify(name)}] }],
  privateDataSchema: { safeParse: (v) => ({ success: true, data: v }) },
  nativeLibrary: ${nativeLibrary},
  parseSection: () => ({}),
  encode: () => new Uint8Array(0),
};
`;
}

describe("54 plugin resolution", () => {
  const scratch = path.join(repoRoot, "test", "dist", "resolution-apps");
  before(() => {
    rmSync(scratch, { recursive: true, force: true });
    mkdirSync(scratch, { recursive: true });
  });

  it("resolves from the application's entry module by default, not from the working directory", async () => {
    // A package named like ours, planted in a parent of the working directory.
    const planted = mkdtempSync(path.join(os.tmpdir(), "bpfhook-planted-"));
    const marker = path.join(planted, "planted-code-ran");
    writePackage(
      path.join(planted, "node_modules", "@bpfhook"),
      "plugin-simple",
      { bpfhook: { plugin: "./index.js" } },
      { "index.js": pluginModule("simple", `"/nonexistent.so"`, marker) },
    );
    const cwd = path.join(planted, "work", "dir");
    mkdirSync(cwd, { recursive: true });
    const before = process.cwd();
    process.chdir(cwd);
    try {
      assert.ok(!defaultResolveDir().startsWith(planted), "the default is not derived from the working directory");
      const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-simple"] });
      try {
        const simple = rt.registry.get("simple");
        assert.ok(simple, "the real simple plugin is registered");
        assert.ok(simple.nativeLibrary.startsWith(path.join(repoRoot, "plugins", "simple")), simple.nativeLibrary);
      } finally {
        rt.close();
      }
      assert.equal(existsSync(marker), false, "the planted package's code must not run");
    } finally {
      process.chdir(before);
      rmSync(planted, { recursive: true, force: true });
    }
  });

  it("bpfhook inspect does not run a bundled plugin's namesake planted in the working directory", function () {
    skipWithoutClang(this);
    const object = compileFixture("runtime/counter.bpf.c");
    const planted = mkdtempSync(path.join(os.tmpdir(), "bpfhook-planted-cli-"));
    const marker = path.join(planted, "planted-code-ran");
    writePackage(
      path.join(planted, "node_modules", "@bpfhook"),
      "plugin-simple",
      { bpfhook: { plugin: "./index.js" } },
      { "index.js": pluginModule("simple", `"/nonexistent.so"`, marker) },
    );
    try {
      const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
      const r = spawnSync(process.execPath, [cli, "inspect", object], { cwd: planted, encoding: "utf8", timeout: 20_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /simple/);
      assert.equal(existsSync(marker), false, "the planted package's code must not run");
    } finally {
      rmSync(planted, { recursive: true, force: true });
    }
  });

  it("refuses names that are paths, not packages", async () => {
    for (const name of ["../../evil", "/etc/passwd", "./local", "a/../../b"]) {
      await expectError(() => Runtime.create({ plugins: [name], resolveFrom: repoRoot }), "BAD_ARGUMENT", /not an npm package name/);
    }
  });

  it("refuses an entry module outside the package, also through a symlink", async () => {
    const nm = path.join(scratch, "escape-app", "node_modules");
    const outside = path.join(scratch, "escape-app", "outside.js");
    const marker = path.join(scratch, "escape-app", "outside-ran");
    mkdirSync(nm, { recursive: true });
    writeFileSync(outside, pluginModule("escape", `"/nonexistent.so"`, marker));
    writePackage(nm, "bpfhook-plugin-dotdot", { bpfhook: { plugin: "../../outside.js" } }, {});
    const linked = writePackage(nm, "bpfhook-plugin-link", { bpfhook: { plugin: "./entry.js" } }, {});
    symlinkSync(outside, path.join(linked, "entry.js"));
    const from = path.join(scratch, "escape-app");
    await expectError(
      () => Runtime.create({ plugins: ["bpfhook-plugin-dotdot"], resolveFrom: from }),
      "PLUGIN_INVALID",
      /\[bpfhook-plugin-dotdot\] entry module .*outside\.js lies outside the plugin package's directory/,
    );
    await expectError(
      () => Runtime.create({ plugins: ["bpfhook-plugin-link"], resolveFrom: from }),
      "PLUGIN_INVALID",
      /\[bpfhook-plugin-link\] entry module .*entry\.js lies outside/,
    );
    assert.equal(existsSync(marker), false, "the escaping module must not run");
  });

  it("refuses a native library outside the package, before anything native is loaded", async () => {
    const nm = path.join(scratch, "native-app", "node_modules");
    mkdirSync(nm, { recursive: true });
    writePackage(nm, "bpfhook-plugin-libc", { bpfhook: { plugin: "./index.js" } }, {
      "index.js": pluginModule("libc-plugin", `"/lib/x86_64-linux-gnu/libc.so.6"`),
    });
    const dir = writePackage(nm, "bpfhook-plugin-symlib", { bpfhook: { plugin: "./index.js" } }, {
      "index.js": pluginModule("symlib", `path.join(__dirname, "lib.so")`),
    });
    const from = path.join(scratch, "native-app");
    await expectError(
      () => Runtime.create({ plugins: ["bpfhook-plugin-libc"], resolveFrom: from }),
      "PLUGIN_INVALID",
      /\[libc-plugin\] native library \/lib\/x86_64-linux-gnu\/libc\.so\.6 lies outside the plugin package's directory/,
    );
    // Registered while lib.so does not exist; then it becomes a symlink out
    // of the package: the check at open time resolves it and refuses.
    const rt = await Runtime.create({ plugins: ["bpfhook-plugin-symlib"], resolveFrom: from });
    try {
      symlinkSync("/lib/x86_64-linux-gnu/libc.so.6", path.join(dir, "lib.so"));
      const obj = rt.load({ programs: [{ name: "p", section: "symlib/x", insns: Buffer.from("b7000000000000009500000000000000", "hex") }] });
      await expectError(() => obj.program("p").attach(), "PLUGIN_INVALID", /\[symlib\] native library .*lib\.so lies outside/);
      assert.equal(rt.attachments.length, 0);
    } finally {
      rt.close();
    }
  });

  it("registers the same package once, however often it is named", async () => {
    const app = makePluginApp(); // its package.json depends on @bpfhook/plugin-simple too
    const rt = await Runtime.create({
      plugins: ["@bpfhook/plugin-simple", "@bpfhook/plugin-simple"],
      packageJson: path.join(app, "package.json"),
      resolveFrom: repoRoot,
    });
    try {
      assert.deepEqual(rt.registry.list().map((p) => p.name).sort(), ["echo", "simple"]);
      assert.equal(rt.use("@bpfhook/plugin-simple"), rt.registry.get("simple"));
    } finally {
      rt.close();
    }
  });

  it("unloads a refused native piece (dlclose on every failure path)", async function () {
    const nm = path.join(scratch, "abi-app", "node_modules");
    mkdirSync(nm, { recursive: true });
    const dir = writePackage(nm, "bpfhook-plugin-oldabi", { bpfhook: { plugin: "./index.js" } }, {
      "index.js": pluginModule("oldabi", `path.join(__dirname, "liboldabi.so")`),
      "oldabi.c": `#include <stddef.h>
#include "bpfhook/plugin.h"
static int attach(void *s, const struct bh_attach_opts *o, char *e, size_t n) { (void)s; (void)o; (void)e; (void)n; return -1; }
static int detach(void *s, int id) { (void)s; (void)id; return 0; }
static const struct bh_plugin_ops ops = { sizeof ops, BH_PLUGIN_ABI_VERSION + 1, "oldabi", NULL, NULL, attach, detach, NULL, NULL };
const struct bh_plugin_ops *bh_plugin_entry(void) { return &ops; }
`,
    });
    const lib = path.join(dir, "liboldabi.so");
    try {
      execFileSync("gcc", ["-shared", "-fPIC", "-O1", "-I", sdkInclude, "-o", lib, path.join(dir, "oldabi.c")]);
    } catch (e) {
      console.log(`      skipped: gcc could not build the test plugin (${(e as Error).message.split("\n")[0]})`);
      this.skip();
    }
    const rt = await Runtime.create({ plugins: ["bpfhook-plugin-oldabi"], resolveFrom: path.join(scratch, "abi-app") });
    try {
      const obj = rt.load({ programs: [{ name: "p", section: "oldabi/x", insns: Buffer.from("b7000000000000009500000000000000", "hex") }] });
      await expectError(() => obj.program("p").attach(), "ABI_MISMATCH", /plugin ABI \d+, core speaks ABI/);
      const maps = readFileSync("/proc/self/maps", "utf8");
      assert.ok(!maps.includes(lib), "the refused library is no longer mapped");
      assert.equal(rt.attachments.length, 0);
    } finally {
      rt.close();
    }
  });
});
