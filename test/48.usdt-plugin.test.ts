/**
 * The USDT plugin of examples/usdt-plugin, built here the way a third party
 * builds it: its own package in a temporary copy, @bpfhook/sdk installed from
 * a tarball of sdk/ (scripts/pack-sdk.sh, which also records its sha512 in
 * the lockfile), zod and typescript from the registry (npm ci), its native piece against the installed SDK's include/ and
 * native/hook. Probed programs built with <sys/sdt.h> at -O0 and -O2 (every
 * argument form gcc emits: registers, memory at register + offset, constants,
 * globals relative to %rip; sizes 1 to 8, signed and unsigned), a probed
 * shared library with a semaphore; programs on libbpf's usdt.bpf.h,
 * unmodified. Attached with the Runtime API and from a config file in this
 * process, and under `bpfhook run` (agent mode; objects by section, and a
 * config file); every value is compared exactly.
 */
import { strict as assert } from "node:assert";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { compileBpfC, Runtime, type BpfMap, type LoadedObject } from "@bpfhook/core";
import { runContractTests } from "@bpfhook/testkit";
import { testAddon, type TestAddon } from "./support/test-addon.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const example = path.join(repoRoot, "examples", "usdt-plugin");
const fixtures = path.join(repoRoot, "test", "fixtures", "usdt");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");

const U64 = (v: bigint) => BigInt.asUintN(64, v);

/** What the programs write into `vals` for one round (usdt_app 1), by slot. */
function expectedApp(): Map<number, bigint> {
  const e = new Map<number, bigint>();
  const put = (base: number, args: bigint[], cnt: number) => {
    args.forEach((v, i) => e.set(base + i, U64(v)));
    e.set(base + 6, BigInt(cnt));
    e.set(base + 7, 0n); // bpf_usdt_cookie: none given
    e.set(base + 8, U64(-2n)); // bpf_usdt_arg(6): -ENOENT
  };
  // work(1, -10^10, -1, 60001): a, b, c, d, local = 3a, s = -a
  put(0, [1n, -10_000_000_000n, -1n, 60001n, 3n, -1n], 6);
  // other(1): a + 1000, a * -10^9, -a as signed char, 65535, 0, -32768
  put(16, [1001n, -1_000_000_000n, -1n, 65535n, 0n, -32768n], 6);
  // constants: 5, -1, (signed char)-1, 123456789012, (unsigned char)255
  put(32, [5n, -1n, -1n, 123_456_789_012n, 255n], 5);
  // globals: app_global = -123456, app_byte = 200
  put(48, [-123_456n, 200n], 2);
  e.set(100, 2n); // demo:args fired at both of its sites
  e.set(101, 1n);
  e.set(102, 1n);
  return e;
}

/** demo:lib for usdt_lib_fire(x): x, 2x, lib_global (7000, through (%rcx)), 42. */
function expectedLib(x: bigint, cookie = 0n, hits = 1n): Map<number, bigint> {
  const e = new Map<number, bigint>();
  [x, 2n * x, 7000n, 42n].forEach((v, i) => e.set(64 + i, v));
  e.set(64 + 6, 4n);
  e.set(64 + 7, cookie);
  e.set(64 + 8, U64(-2n));
  e.set(64 + 9, x + 2n * x + 7000n + 42n); // BPF_USDT's named arguments
  e.set(103, hits);
  return e;
}

function assertSlots(actual: (k: number) => bigint, expected: Map<number, bigint>, what: string): void {
  for (const [k, v] of expected) assert.equal(actual(k), v, `${what}: vals[${k}]`);
}

function missing(): string | undefined {
  const sdt = ["/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h"];
  if (!sdt.some(existsSync)) return "no <sys/sdt.h> (apt-get install systemtap-sdt-dev; scripts/setup.sh does)";
  if (!existsSync("/usr/include/bpf/usdt.bpf.h")) return "no <bpf/usdt.bpf.h> (apt-get install libbpf-dev)";
  for (const tool of ["gcc", "cmake", "clang", "npm"]) {
    if (spawnSync(tool, ["--version"]).status !== 0) return `no ${tool}`;
  }
  return undefined;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 240_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe("48 USDT plugin (examples/usdt-plugin, a third party's package)", function () {
  this.timeout(300_000);
  // Paths fixed when the suite is defined (the plugin contract below names
  // them); everything in them is built by the `before` hook.
  const work = mkdtempSync(path.join(os.tmpdir(), "bpfhook-usdt-"));
  const pkg = path.join(work, "usdt-plugin");
  const lib = path.join(work, "libusdt_lib.so");
  let app = ""; // a folder whose node_modules holds the plugin (resolution by name)
  const bin: Record<"O0" | "O2", string> = { O0: "", O2: "" };
  const obj: Record<"O0" | "O2", string> = { O0: "", O2: "" };
  let t: TestAddon;

  before(function () {
    const why = missing();
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    t = testAddon();
    // The package as its author has it: sources, lockfile, scripts (no build output).
    cpSync(example, pkg, {
      recursive: true,
      filter: (src) => !/[/](node_modules|dist|build|vendor)$/.test(src),
    });
    run("bash", ["scripts/pack-sdk.sh"], pkg, { ...process.env, SDK_DIR: path.join(repoRoot, "sdk") });
    // pack-sdk.sh wrote the tarball's sha512 into the copy's lockfile: npm ci installs exactly it.
    const install = spawnSync("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: pkg, encoding: "utf8", timeout: 240_000 });
    if (install.status !== 0) {
      console.log(`      skipped: npm ci of the plugin's dependencies failed (registry unreachable?):\n${install.stderr.slice(-600)}`);
      this.skip();
    }
    run("npm", ["run", "build"], pkg);
    app = path.join(work, "app");
    mkdirSync(path.join(app, "node_modules"), { recursive: true });
    symlinkSync(pkg, path.join(app, "node_modules", "bpfhook-plugin-usdt"));

    run("gcc", ["-O2", "-g", "-shared", "-fPIC", "-o", lib, path.join(fixtures, "usdt_lib.c")], work);
    const template = readFileSync(path.join(fixtures, "usdt.bpf.c.in"), "utf8");
    for (const level of ["O0", "O2"] as const) {
      bin[level] = path.join(work, `usdt_app_${level}`);
      run("gcc", [`-${level}`, "-g", "-o", bin[level], path.join(fixtures, "usdt_app.c"), `-L${work}`, "-lusdt_lib", `-Wl,-rpath,${work}`], work);
      const src = path.join(work, `usdt_${level}.bpf.c`);
      writeFileSync(src, template.replaceAll("@APP@", bin[level]).replaceAll("@LIB@", lib));
      obj[level] = compileBpfC(src);
    }
    t.callLibrary(lib, "usdt_lib_fire", 0); // maps the library in this process (the contract attaches to it)
  });

  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  // The contract every plugin passes (@bpfhook/testkit), run on this one as
  // on the workspace's (test 58).
  runContractTests(describe, {
    plugin: pkg,
    attachType: "usdt",
    validData: { path: lib, provider: "demo", name: "lib" },
    invalidData: [
      { data: { path: lib, provider: "", name: "lib" }, field: "provider" },
      { data: { path: 5, provider: "demo", name: "lib" }, field: "path" },
      { data: { path: lib, provider: "demo", name: "lib", nope: 1 }, field: "nope" },
    ],
    trigger: (_rt, n) => {
      for (let i = 0; i < n; i++) t.callLibrary(lib, "usdt_lib_fire", 1);
    },
    // The harness process maps no library of this test: libstdc++'s own
    // USDT probe (libstdcxx:throw, in __cxa_throw) is there.
    nativeData: { path: realpathSync("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"), provider: "libstdcxx", name: "throw" },
    threads: { skip: "the test addon has no native threads that fire a USDT probe; the embedded cases fire it from this thread" },
    agent: { skip: "the cases 'under bpfhook run' below attach this plugin in agent mode, by section and from a config file" },
  });

  describe("the package", () => {
    it("depends on @bpfhook/sdk from the tarball and on nothing of the repository", () => {
      const manifest = JSON.parse(readFileSync(path.join(example, "package.json"), "utf8"));
      assert.equal(manifest.dependencies["@bpfhook/sdk"], "file:vendor/bpfhook-sdk-0.1.0.tgz");
      assert.equal(manifest.dependencies["@bpfhook/core"], undefined);
      const installed = path.join(pkg, "node_modules", "@bpfhook", "sdk");
      assert.ok(existsSync(path.join(installed, "native", "hook", "CMakeLists.txt")), "the SDK ships the hook engine");
      assert.ok(!existsSync(path.join(installed, "native", "hook", "build-selftests")), "and no build output");
      for (const f of ["index.ts", "args.ts", "stapsdt.ts"]) {
        const src = readFileSync(path.join(example, "src", f), "utf8");
        assert.doesNotMatch(src, /@bpfhook\/core|\.\.\/\.\.\//, `${f} imports only the SDK`);
      }
    });

    it("reads the notes: sites, .stapsdt.base, semaphores", () => {
      const usdt = require(path.join(pkg, "dist", "index.js"));
      const sites = usdt.readUsdtSites(bin.O2);
      assert.deepEqual(
        sites.map((s: { provider: string; name: string }) => `${s.provider}:${s.name}`).sort(),
        ["demo:args", "demo:args", "demo:consts", "demo:globals"],
      );
      const libSites = usdt.readUsdtSites(lib);
      assert.deepEqual(libSites.map((s: { provider: string; name: string }) => `${s.provider}:${s.name}`), ["demo:lib", "demo:padded", "demo:tail"]);
      const l = libSites[0];
      assert.equal(l.args, "-8@%rdi -8@%rdx -8@(%rcx) -4@$42");
      const nm = execFileSync("nm", [lib], { encoding: "utf8" });
      const sema = /^([0-9a-f]+) \S demo_lib_semaphore$/m.exec(nm);
      assert.ok(sema, "the library's semaphore symbol");
      assert.equal(l.semaphore, BigInt(`0x${sema[1]}`));
    });

    it("parses argument specs as libbpf does, and refuses what it cannot read", () => {
      const { parseArg, ARG_CONST, ARG_REG, ARG_REG_DEREF } = require(path.join(pkg, "dist", "index.js"));
      const pick = (a: Record<string, unknown>) => [a.type, a.valOff, a.regOff, a.signed, a.bitshift];
      assert.deepEqual(pick(parseArg("-4@%eax")), [ARG_REG, 0n, 80, true, 32]);
      assert.deepEqual(pick(parseArg("8@%r8")), [ARG_REG, 0n, 72, false, 0]);
      assert.deepEqual(pick(parseArg("-1@%dil")), [ARG_REG, 0n, 112, true, 56]);
      assert.deepEqual(pick(parseArg("2@%r8w")), [ARG_REG, 0n, 72, false, 48]);
      assert.deepEqual(pick(parseArg("-4@-20(%rbp)")), [ARG_REG_DEREF, U64(-20n), 32, true, 32]);
      assert.deepEqual(pick(parseArg("8@(%rsp)")), [ARG_REG_DEREF, 0n, 152, false, 0]);
      assert.deepEqual(pick(parseArg("4@$5")), [ARG_CONST, 5n, 0, false, 32]);
      assert.deepEqual(pick(parseArg("-1@$-1")), [ARG_CONST, U64(-1n), 0, true, 56]);
      // A global: memory at the probe's ip + (symbol + offset - site).
      const lookup = (n: string) => (n === "counter" ? 0x4010n : undefined);
      assert.deepEqual(pick(parseArg("-4@counter(%rip)", 0x1000n, lookup)), [ARG_REG_DEREF, 0x3010n, 128, true, 32]);
      assert.deepEqual(pick(parseArg("8@counter+8(%rip)", 0x1000n, lookup)), [ARG_REG_DEREF, 0x3018n, 128, false, 0]);
      assert.throws(() => parseArg("-4@nothere(%rip)", 0x1000n, lookup), /no symbol 'nothere' in the module/);
      assert.throws(() => parseArg("3@%eax"), /size 3 is not 1, 2, 4 or 8 bytes/);
      assert.throws(() => parseArg("16@%xmm0"), /unknown register '%xmm0'/);
      assert.throws(() => parseArg("-4@%eax,8"), /not SIZE@%reg/);
    });
  });

  describe("embedded (this process): the library", () => {
    const vals = (o: LoadedObject) => {
      const m = o.map<BpfMap<number, bigint>>("vals");
      return (k: number) => m.get(k) ?? 0n;
    };
    const fire = (x: number) => t.callLibrary(lib, "usdt_lib_fire", x);

    it("Runtime API: attached by section, exact arguments; the semaphore is set while attached and restored on detach", async () => {
      const before = fire(1); // loads it; counts the rounds that saw the semaphore set
      assert.equal(fire(1), before, "no probe attached: the semaphore reads 0");
      const rt = await Runtime.create({ plugins: ["bpfhook-plugin-usdt"], resolveFrom: app });
      try {
        const o = rt.load(obj.O2);
        const link = await o.program("on_lib").attach();
        assert.match(link.description, /^usdt .*libusdt_lib\.so:demo:lib \(1 site in /);
        assert.equal(fire(5), before + 1, "attached: the semaphore reads non-zero");
        assertSlots(vals(o), expectedLib(5n), "demo:lib");
        link.detach();
        assert.equal(fire(6), before + 1, "detached: the semaphore is back to 0");
        assert.equal(vals(o)(103), 1n, "and the probe no longer fires");
        // bpf_usdt_cookie: the usdtCookie of an explicit attach.
        const again = await o.program("on_lib").attach({ type: "usdt", data: { path: lib, provider: "demo", name: "lib", usdtCookie: 77 } });
        fire(7);
        assertSlots(vals(o), expectedLib(7n, 77n, 2n), "demo:lib with a cookie");
        again.detach();
      } finally {
        rt.close();
      }
      assert.equal(fire(1), before + 2, "closed: the semaphore is 0 again");
    });

    it("from a config file, the plugin found by package name", async () => {
      const config = path.join(app, "usdt.yaml");
      writeFileSync(
        config,
        [
          "plugins: [bpfhook-plugin-usdt]",
          "objects:",
          `  - path: ${obj.O0}`,
          "    programs:",
          "      on_args: { attach: false }",
          "      on_consts: { attach: false }",
          "      on_globals: { attach: false }",
          `      on_lib: { attach: { type: usdt, path: ${lib}, provider: demo, name: lib, usdtCookie: "0x1234" } }`,
          "",
        ].join("\n"),
      );
      const c = await Runtime.fromConfigFile(config);
      try {
        fire(9);
        const o = [...c.objects.values()][0]!;
        assertSlots(vals(o), expectedLib(9n, 0x1234n), "demo:lib from the config");
      } finally {
        c.close();
      }
    });

    it("refuses a probe the module lacks, naming the ones it has, and a site it cannot hook; one before ret with padding after attaches", async () => {
      const rt = await Runtime.create({ plugins: ["bpfhook-plugin-usdt"], resolveFrom: app });
      try {
        const o = rt.load(obj.O2);
        await assert.rejects(
          o.program("on_lib").attach({ type: "usdt", data: { path: lib, provider: "demo", name: "nope" } }),
          /\[usdt\].*demo:nope: no such probe in .*libusdt_lib\.so \(its probes: demo:lib, demo:padded, demo:tail\)/,
        );
        // A site right before `ret` at the end of .text: the hook's jump
        // would run into the next section's code.
        await assert.rejects(
          o.program("on_lib").attach({ type: "usdt", data: { path: lib, provider: "demo", name: "tail" } }),
          /\[usdt\].*usdt demo:tail: site 0 \(vaddr 0x[0-9a-f]+\): .*function too short: ret at \+1 ends it inside the 5 bytes to patch, and the \d+ bytes after it up to the next alignment boundary are not all padding/,
        );
        fire(1);
        t.callLibrary(lib, "usdt_lib_tail", 5);
        assert.equal(o.map<BpfMap<number, bigint>>("vals").get(103) ?? 0n, 0n, "a refused attach leaves nothing attached");
        // A site right before `ret` with alignment padding after its
        // function: the 5-byte jump runs over the padding.
        const padded = await o.program("on_lib").attach({ type: "usdt", data: { path: lib, provider: "demo", name: "padded" } });
        t.callLibrary(lib, "usdt_lib_padded", 5);
        t.callLibrary(lib, "usdt_lib_padded", 6);
        assert.equal(o.map<BpfMap<number, bigint>>("vals").get(103), 2n, "the probe before ret fired once per call");
        padded.detach();
        t.callLibrary(lib, "usdt_lib_padded", 7);
        assert.equal(o.map<BpfMap<number, bigint>>("vals").get(103), 2n, "and stopped at detach");
      } finally {
        rt.close();
      }
    });
  });

  describe("under bpfhook run (agent mode)", () => {
    /** vals from the JSON lines of `bpfhook run -j` (the maps printed at exit). */
    function runVals(args: string[]): { vals: (k: number) => bigint; stdout: string } {
      const r = spawnSync(process.execPath, [cli, "run", "-j", ...args], { cwd: work, encoding: "utf8", timeout: 120_000 });
      assert.equal(r.status, 0, `bpfhook run failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
      const m = new Map<number, bigint>();
      // The target's own output is not JSON (it may come on either stream).
      let stdout = r.stderr;
      for (const line of r.stdout.split("\n")) {
        if (!line.startsWith("{")) {
          stdout += `${line}\n`;
          continue;
        }
        const o = JSON.parse(line);
        if (o.type === "map" && o.data.name === "vals") for (const e of o.data.entries) m.set(e.key, BigInt(e.value));
      }
      assert.ok(m.size > 0, `no 'vals' map in the output:\n${r.stdout.slice(-2000)}`);
      return { vals: (k) => m.get(k) ?? 0n, stdout };
    }

    for (const level of ["O0", "O2"] as const) {
      it(`-${level}: the executable's probes and the library's, attached by section`, () => {
        // Both orders: `--plugin DIR OBJECT` (the issue's) takes one value, so the object stays an object.
        const args = level === "O0" ? [obj[level], "--plugin", pkg] : ["--plugin", pkg, obj[level]];
        const { vals, stdout } = runVals([...args, "--", bin[level], "1"]);
        assertSlots(vals, expectedApp(), `usdt_app -${level}`);
        assertSlots(vals, expectedLib(1n), `usdt_app -${level}: demo:lib`);
        assert.match(stdout, /sema 1/, "the library saw its semaphore set");
      });
    }

    it("from a config file (-c), the plugin by package name", () => {
      const config = path.join(app, "agent.yaml");
      writeFileSync(config, ["plugins: [bpfhook-plugin-usdt]", "objects:", `  - path: ${obj.O2}`, ""].join("\n"));
      const { vals } = runVals(["-c", config, "--", bin.O2, "3"]);
      assert.equal(vals(100), 6n, "demo:args: 2 sites x 3 rounds");
      assertSlots(vals, expectedLib(3n, 0n, 3n), "demo:lib, last round");
    });
  });
});
