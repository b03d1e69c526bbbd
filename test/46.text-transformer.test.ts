/**
 * The text transformer (plugins/text-transformer, issue 12): tt_selftest runs
 * its checks under each mechanism (auto, REL32, PAGE0, SUD), each mode in a
 * child process of its own, as root and as an unprivileged user (nobody),
 * where page 0 cannot be mapped and the page-0 mode must skip with a reason.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, chmodSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..");
const buildDir = path.join(repoRoot, "plugins", "text-transformer", "build-selftests");
const selftest = path.join(buildDir, "tt_selftest");
const dlopenLib = path.join(buildDir, "libtt_dlopen_lib.so");
const MODES = ["auto", "rel32", "page0", "sud"];

function run(argv: string[], timeoutMs: number, env?: NodeJS.ProcessEnv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", timeout: timeoutMs, ...(env ? { env } : {}) });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  return { status: r.status, signal: r.signal, out };
}

/** Every mode ran to its end (or skipped with a reason) and no check failed. */
function assertModes(out: string, skippable: string[]) {
  const fails = out.split("\n").filter((l) => l.startsWith("FAIL"));
  assert.deepEqual(fails, [], `failed checks:\n${out}`);
  for (const m of MODES) {
    const done = out.includes(`done [${m}]: 0 failures`);
    const skipped = new RegExp(`^SKIP mode ${m}: .+`, "m").test(out);
    assert.ok(done || (skipped && skippable.includes(m)), `mode ${m} neither finished nor skipped:\n${out}`);
    if (skipped) console.log(`      mode ${m}: ${out.match(new RegExp(`^SKIP mode ${m}: (.+)$`, "m"))?.[1]}`);
  }
  assert.match(out, /tt_selftest: all modes passed/);
}

describe("46 text transformer", function () {
  this.timeout(300_000);
  before(function () {
    if (!existsSync(selftest)) {
      console.log(`      skipped: ${selftest} not built (run 'npm run build:selftests')`);
      this.skip();
    }
  });

  it("every mechanism, as this user", function () {
    const r = run([selftest], 240_000);
    assert.equal(r.signal, null, `tt_selftest died with ${r.signal}:\n${r.out}`);
    assert.equal(r.status, 0, `tt_selftest failed:\n${r.out}`);
    const root = process.getuid?.() === 0;
    assertModes(r.out, root ? [] : ["page0"]);
    // libc's sites: the reference's sweep stopped at an AVX-512 instruction
    // after 151 of them; a resyncing sweep must find them all.
    const libc = r.out.match(/libc\.so\.6: (\d+) sites: rel32 (\d+)/);
    assert.ok(libc, `no libc line:\n${r.out}`);
    assert.ok(Number(libc[1]) > 400, `only ${libc[1]} sites in libc`);
    assert.ok(Number(libc[2]) > Number(libc[1]) / 2, `REL32 took only ${libc[2]} of ${libc[1]}`);
    console.log(`      libc: ${libc[1]} sites, ${libc[2]} by REL32 in auto mode`);
  });

  it("every mechanism, as an unprivileged user (page 0 refused)", function () {
    if (process.getuid?.() !== 0) {
      console.log("      skipped: not root, so the first case already ran unprivileged");
      this.skip();
    }
    if (!existsSync("/usr/bin/setpriv")) {
      console.log("      skipped: setpriv (util-linux) not installed");
      this.skip();
    }
    // A copy nobody can read and run, with the library it dlopens beside it
    // (named by TT_DLOPEN_LIB: the checkout may be in a directory nobody
    // cannot enter, as a mktemp -d clone is).
    const dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-tt-"));
    try {
      chmodSync(dir, 0o755);
      const bin = path.join(dir, "tt_selftest");
      copyFileSync(selftest, bin);
      chmodSync(bin, 0o755);
      const lib = path.join(dir, "libtt_dlopen_lib.so");
      copyFileSync(dlopenLib, lib);
      chmodSync(lib, 0o755);
      const r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin], 240_000, {
        ...process.env,
        TT_DLOPEN_LIB: lib,
      });
      if (/dlopen after install.*cannot open/.test(r.out)) assert.fail(`nobody cannot read ${dlopenLib}:\n${r.out}`);
      assert.equal(r.signal, null, `tt_selftest died with ${r.signal}:\n${r.out}`);
      assert.equal(r.status, 0, `tt_selftest failed as nobody:\n${r.out}`);
      assertModes(r.out, ["page0"]);
      assert.match(r.out, /SKIP mode page0: .*page 0 cannot be mapped/);
      assert.match(r.out, /stats \[auto\]: .*page0 0 /);
      // Without root every site of libc and ld.so should be REL32: one left
      // to Syscall User Dispatch turns it on (still correct), and every
      // system call of the process then pays ~20 ns (the issue's untraced
      // target is +3 ns).
      for (const lib of ["libc\\.so\\.6", "ld-linux-x86-64\\.so\\.2"]) {
        const m = r.out.match(new RegExp(`${lib}: (\\d+) sites: rel32 (\\d+) \\(([^)]*)\\).* sud (\\d+)`));
        assert.ok(m, `no ${lib} line:\n${r.out}`);
        const left = r.out.split("\n").filter((l) => l.includes("left to sud"));
        // Every one, in every run here; placement depends on the address
        // layout (ASLR), so a stray site is tolerated, not ten.
        assert.ok(Number(m[4]) <= 1, `${m[4]} sites of ${lib} left to SUD as nobody:\n${left.join("\n")}`);
        console.log(`      as 65534: ${lib.replace(/\\/g, "")}: ${m[1]} sites, ${m[2]} by REL32 (${m[3]}), sud ${m[4]}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
