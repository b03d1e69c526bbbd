import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { compileFixture, skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd: repoRoot, encoding: "utf8" });

describe("60 cli", () => {
  it("--help lists the commands", () => {
    const r = run("--help");
    assert.equal(r.status, 0);
    for (const cmd of ["inspect", "disasm", "asm", "compile", "conformance"]) assert.match(r.stdout, new RegExp(cmd));
  });

  it("asm writes raw instructions; disasm of an object prints them back", function () {
    skipWithoutClang(this);
    const dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-cli-"));
    writeFileSync(path.join(dir, "p.s"), "mov %r0, 42\nexit\n");
    const a = run("asm", path.join(dir, "p.s"), "-o", path.join(dir, "p.bin"));
    assert.equal(a.status, 0, a.stderr);
    assert.deepEqual([...readFileSync(path.join(dir, "p.bin"))], [0xb7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    const d = run("disasm", compileFixture("runtime/counter.bpf.c"), "-p", "on_count");
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /on_count \(section simple\/count, \d+ instructions\)/);
    assert.match(d.stdout, /call 1\b/);
  });

  it("inspect names each section's plugin and lists the maps", function () {
    skipWithoutClang(this);
    const r = run("inspect", compileFixture("uprobe/probes.bpf.c"));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /on_add\s+uprobe\/libbpfhook_targets\.so:bh_target_add\s+\d+ insns\s+uprobe \(6\) via frida-uprobe/);
    assert.match(r.stdout, /replace_add\s+ureplace\/\S+\s+\d+ insns\s+ureplace \(1009\)/);
    assert.match(r.stdout, /counts\s+hash\s+key\s+4\s+value\s+8\s+entries 16/);
    const json = JSON.parse(run("inspect", "--json", compileFixture("runtime/counter.bpf.c")).stdout);
    assert.equal(json.programs[0].attach, "simple (2001) via simple");
  });

  it("errors name the file and exit 1", () => {
    const r = run("inspect", path.join(repoRoot, "package.json"));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^bpfhook: .*package\.json: not an ELF file/);
    const u = run("inspect");
    assert.notEqual(u.status, 0);
    assert.match(u.stderr, /missing required argument 'object'/);
  });
});
