/**
 * `bpfhook new-plugin`: the scaffolded package builds and passes its tests
 * right after scaffolding, with no edit (npm install, npm run build, npm
 * test, as its README says), once per suite run; and the command refuses
 * bad arguments before writing anything.
 */
import { strict as assert } from "node:assert";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { skipWithoutClang } from "./support/clang.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 20_000 });

/** npm's answers that mean "the registry cannot be reached and the cache lacks a package", not a bug of ours. */
const OFFLINE = /ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i;

describe("63 bpfhook new-plugin", () => {
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "bpfhook-new-plugin-"));
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("--help describes the command and its options", () => {
    const r = run("new-plugin", "--help");
    assert.equal(r.status, 0, r.stderr);
    for (const o of ["--name", "--attach-type-id", "--prefix", "<dir>"]) assert.ok(r.stdout.includes(o), o);
    assert.match(run("--help").stdout, /new-plugin/);
  });

  it("refuses a non-empty folder, a bad name, prefix or attach type id, writing nothing", () => {
    const full = path.join(scratch, "full");
    mkdirSync(full);
    writeFileSync(path.join(full, "keep.txt"), "x");
    const cases: [string[], RegExp][] = [
      [[full], /exists and is not empty/],
      [[path.join(scratch, "a"), "--name", "Bad Name"], /name 'Bad Name' must be lowercase/],
      [[path.join(scratch, "b"), "--prefix", "x/y"], /prefix 'x\/y' must be/],
      [[path.join(scratch, "c"), "--attach-type-id", "7"], /attach type id 7 must be an integer in 4096\.\.65535/],
    ];
    for (const [args, message] of cases) {
      const r = run("new-plugin", ...args);
      assert.equal(r.status, 1, `${args.join(" ")}: ${r.stdout}`);
      assert.match(r.stderr, message);
    }
    assert.deepEqual(readdirSync(full), ["keep.txt"]);
    for (const d of ["a", "b", "c"]) assert.equal(existsSync(path.join(scratch, d)), false, d);
  });

  it("scaffolds a package that installs, builds and passes its tests with no edit", function () {
    skipWithoutClang(this);
    for (const tool of ["cmake", "c++"]) {
      if (spawnSync(tool, ["--version"]).status !== 0) {
        console.log(`      skipped: ${tool} not found (the plugin's native piece is C++ built with cmake-js)`);
        this.skip();
      }
    }
    this.timeout(240_000);
    const dir = path.join(scratch, "bpfhook-plugin-ticker");
    const made = run("new-plugin", dir, "--attach-type-id", "4321", "--prefix", "tick");
    assert.equal(made.status, 0, made.stderr);
    assert.match(made.stdout, /plugin 'ticker', attach type id 4321, sections tick\/<channel>, helper 14321/);
    const manifest = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    assert.equal(manifest.dependencies["@bpfhook/sdk"], `file:${path.join(repoRoot, "sdk")}`);

    // The native template follows the project's style (clang-format finds .clang-format in a parent folder).
    if (spawnSync("clang-format", ["--version"]).status === 0) {
      copyFileSync(path.join(repoRoot, ".clang-format"), path.join(scratch, ".clang-format"));
      const fmt = spawnSync("clang-format", ["--dry-run", "--Werror", path.join(dir, "native", "plugin.cpp")], { encoding: "utf8" });
      assert.equal(fmt.status, 0, fmt.stderr);
    }

    const times: string[] = [];
    const step = (cmd: string, ...args: string[]): SpawnSyncReturns<string> => {
      const t0 = Date.now();
      // No colours: mocha colours its marks when CI is set (supports-color).
      const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: "1", NO_COLOR: "1", FORCE_COLOR: "0" };
      const r = spawnSync(cmd, args, { cwd: dir, encoding: "utf8", timeout: 180_000, env });
      times.push(`${args.join(" ")} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return r;
    };
    const install = step("npm", "install", "--prefer-offline", "--no-audit", "--no-fund");
    if (install.status !== 0 && OFFLINE.test(install.stderr)) {
      console.log(`      skipped: npm cannot reach the registry and its cache lacks a dependency: ${install.stderr.trim().split("\n").pop()}`);
      this.skip();
    }
    assert.equal(install.status, 0, install.stderr);
    const build = step("npm", "run", "build");
    assert.equal(build.status, 0, build.stdout + build.stderr);
    assert.ok(existsSync(path.join(dir, "build", "Release", "libbpfhook_ticker.so")), "native piece built");
    const test = step("npm", "test");
    // oxlint-disable-next-line no-control-regex -- ANSI colour codes, stripped on purpose
    const out = (test.stdout + test.stderr).replace(/\x1b\[[0-9;]*m/g, "");
    assert.equal(test.status, 0, out);
    console.log(`      (${times.join(", ")})`);
    // The contract cases that apply, and the counting program: all passed.
    assert.match(out, /\b9 passing\b/, out);
    assert.doesNotMatch(out, /failing/);
    assert.match(out, /2 pending/, "threads and agent cases skipped, each with its reason");
    assert.match(out, /✔ counts every event of its channel, sums their values, and reads the helper/);
    assert.match(out, /✔ bad private data is refused by the schema before native code runs, naming the field/);
  });
});
