import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { testTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
// A bound on every run: a command that reads a device or blocks on a FIFO must fail the test, not hang it.
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 20_000 });

describe("60 cli", () => {
  it("--help lists the commands", () => {
    const r = run("--help");
    assert.equal(r.status, 0);
    for (const cmd of ["inspect", "disasm", "asm", "compile", "conformance"]) assert.match(r.stdout, new RegExp(cmd));
  });

  it("asm writes raw instructions; disasm of an object prints them back", function () {
    skipWithoutClang(this);
    const dir = testTempDir("bpfhook-cli-");
    writeFileSync(path.join(dir, "p.s"), "mov %r0, 42\nexit\n");
    const a = run("asm", path.join(dir, "p.s"), "-o", path.join(dir, "p.bin"));
    assert.equal(a.status, 0, a.stderr);
    assert.deepEqual([...readFileSync(path.join(dir, "p.bin"))], [0xb7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    const d = run("disasm", compileFixture("runtime/counter.bpf.c"), "-p", "on_count");
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /on_count \(section simple\/count, \d+ instructions\)/);
    assert.match(d.stdout, /call 1 {2}# bpf_map_lookup_elem\n/, "helper calls carry the helper's name as a comment");
  });

  it("inspect names each section's plugin and lists the maps", function () {
    skipWithoutClang(this);
    const r = run("inspect", compileFixture("uprobe/probes.bpf.c"));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /load: ok$/m);
    assert.match(r.stdout, /on_add\s+uprobe\/libbpfhook_targets\.so:bh_target_add\s+\d+ insns\s+uprobe \(6\) via frida-uprobe/);
    assert.match(r.stdout, /replace_add\s+ureplace\/\S+\s+\d+ insns\s+ureplace \(1009\)/);
    assert.match(r.stdout, /counts\s+hash\s+key\s+4\s+value\s+8\s+entries 16/);
    const json = JSON.parse(run("inspect", "--json", compileFixture("runtime/counter.bpf.c")).stdout);
    assert.equal(json.programs[0].attach, "simple (2001) via simple");
  });

  it("inspect exits 1 where a load would refuse the object, and says why", function () {
    skipWithoutClang(this);
    const file = compileFixture("cli/cuda_helper.bpf.c");
    const r = run("inspect", file);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /read_timer\s+simple\/gpu\s+\d+ insns\s+simple \(2001\) via simple/);
    // The verifier refuses first (strict mode), naming the helper as the VM would.
    const why = /prog 'read_timer': pc 0: call 502: call to helper 502 \(bpf_get_globaltimer, a CUDA helper; no loaded plugin provides it\)/;
    assert.match(r.stdout, new RegExp(`load: refused: .*${why.source}`));
    assert.match(r.stderr, new RegExp(`^bpfhook: .*${why.source}`));
    const json = JSON.parse(run("inspect", "--json", file).stdout);
    assert.equal(json.load.ok, false);
    assert.equal(json.load.code, "VERIFIER_REFUSED");
  });

  it("inspect labels programs that cannot attach by section (and exits 0: they load)", function () {
    skipWithoutClang(this);
    const r = run("inspect", compileFixture("cli/unattachable.bpf.c"));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /no_symbol\s+uprobe\/x\s+\d+ insns\s+not attachable by section \(uprobe \(6\) via frida-uprobe\): .*expected <module>:<symbol>/);
    assert.match(r.stdout, /no_plugin\s+nosuchplugin\/y\s+\d+ insns\s+not attachable by section: no registered plugin serves it/);
    assert.match(r.stdout, /attachable\s+simple\/ok\s+\d+ insns\s+simple \(2001\) via simple/);
    assert.match(r.stdout, /load: ok; 2 of 3 programs cannot attach by section/);
    const json = JSON.parse(run("inspect", "--json", compileFixture("cli/unattachable.bpf.c")).stdout);
    assert.deepEqual(
      json.programs.map((p: { name: string; attachable: boolean }) => [p.name, p.attachable]),
      [["no_symbol", false], ["no_plugin", false], ["attachable", true]],
    );
  });

  it("inspect refuses what is not a regular file instead of reading it forever", () => {
    const dir = testTempDir("bpfhook-cli-");
    const fifo = path.join(dir, "fifo");
    spawnSync("mkfifo", [fifo]);
    for (const [file, kind] of [["/dev/zero", "a character device"], [fifo, "a FIFO"], [dir, "a directory"]] as const) {
      const r = run("inspect", file);
      assert.equal(r.error, undefined, `${file}: ${String(r.error)}`);
      assert.equal(r.status, 1, `${file}: ${r.stderr}`);
      assert.equal(r.stderr, `bpfhook: ${file}: not a regular file (${kind}); give an ELF object file\n`);
    }
  });

  it("errors name the file and exit 1", () => {
    const r = run("inspect", path.join(repoRoot, "package.json"));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^bpfhook: .*package\.json: not an ELF file/);
    const u = run("inspect");
    assert.notEqual(u.status, 0);
    assert.match(u.stderr, /missing required argument 'object'/);
  });

  it("--help of the command and of every subcommand; unknown commands and flags are refused", () => {
    const top = run("--help");
    const commands = ["inspect", "verify", "ptx", "disasm", "asm", "compile", "clean", "new-plugin", "run", "attach", "detach", "maps", "ps", "conformance"];
    for (const cmd of commands) assert.match(top.stdout, new RegExp(`^  ${cmd}\\b`, "m"), `--help lists ${cmd}`);
    for (const cmd of commands) {
      const h = run(cmd, "--help");
      assert.equal(h.status, 0, `${cmd} --help: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`^Usage: bpfhook ${cmd}`, "m"), `${cmd} --help`);
      const bad = run(cmd, "--bogus-flag");
      assert.notEqual(bad.status, 0, `${cmd} --bogus-flag`);
      assert.match(bad.stderr, /unknown option '--bogus-flag'|required option '.*' not specified/, `${cmd} --bogus-flag: ${bad.stderr}`);
    }
    const unknown = run("frobnicate");
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  });

  it("a file that cannot be read or written is one line naming it, not a stack trace", () => {
    const dir = testTempDir("bpfhook-cli-");
    const noStack = (r: ReturnType<typeof run>, what: RegExp) => {
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `a stack trace:\n${r.stderr}`);
    };
    noStack(run("asm", path.join(dir, "missing.s"), "-o", path.join(dir, "out.bin")), /^bpfhook: ENOENT: no such file or directory, open '.*missing\.s'\n$/);
    writeFileSync(path.join(dir, "p.s"), "exit\n");
    noStack(run("asm", path.join(dir, "p.s"), "-o", path.join(dir, "no", "such", "dir", "p.bin")), /^bpfhook: ENOENT: .*p\.bin'\n$/);
    noStack(run("disasm", path.join(dir, "missing.o")), /^bpfhook: .*missing\.o/);
    noStack(run("ptx", path.join(dir, "missing.o")), /^bpfhook: .*missing\.o/);
  });

  it("ptx: an arch out of range, an object without programs", function () {
    const r = run("ptx", "whatever.o", "--arch", "sm_5");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^bpfhook: --arch: arch 'sm_5' is out of range \(sm_30 to sm_999\)/);
    assert.match(run("ptx", "whatever.o", "--arch", "sm_99999999999999999999").stderr, /out of range/);
    skipWithoutClang(this);
    const dir = testTempDir("bpfhook-cli-");
    const src = path.join(dir, "maps_only.bpf.c");
    writeFileSync(src, '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nint value SEC(".data") = 1;\n');
    const built = run("compile", src, "-o", path.join(dir, "maps_only.bpf.o"));
    assert.equal(built.status, 0, built.stderr);
    const none = run("ptx", path.join(dir, "maps_only.bpf.o"));
    assert.equal(none.status, 1);
    assert.match(none.stderr, /maps_only\.bpf\.o: has no programs/);
  });
});
