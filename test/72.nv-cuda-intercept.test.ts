/**
 * The nv-cuda plugin's interception, end to end in agent mode: vec_add is
 * built by nvcc in the run, with nvcc's default static runtime (the hooked
 * functions are local symbols of the executable, found in its .symtab) and
 * with `-cudart shared` (exported by libcudart.so), and started under
 * `bpfhook run --plugin plugins/nv-cuda` with an entry probe on vectorAdd.
 *
 * No GPU and no driver here: the CUDA runtime's own calls fail (cudaMalloc
 * says the driver is too old), but it still registers the fat binary and the
 * kernels at start-up and `<<<>>>` still reaches __cudaLaunchKernel. The
 * driver calls the plugin makes itself go to the stand-in driver
 * (plugins/nv-cuda/native/tests/standin_driver.c, named by
 * BPFHOOK_NV_CUDA_DRIVER), which answers success, "runs" nothing and logs
 * each call: the PTX it is given is assembled here by ptxas.
 */
import { strict as assert } from "node:assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AgentSession, assembleBytes, compileBpfC, conformanceFiles, parseDataFile, Runtime, type PerCpuMap } from "@bpfhook/core";
import { definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import { z } from "zod";
import { conformanceModule, parseGpuDump, type ConformanceProgram } from "@bpfhook/plugin-nv-cuda";
import { conformanceDir } from "./helpers/conformance-dir.js";
import { compileFixture, FIXTURES_DIR, skipWithoutClang } from "./support/clang.js";
import { cudaBuildDir, nvccBuild, ptxasCheck, skipWithoutCuda } from "./support/cuda.js";
import { testTempDir } from "./support/tmp.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
const pluginDir = path.join(repoRoot, "plugins", "nv-cuda");
const standin = path.join(pluginDir, "build", "libbh_cuda_standin.so");
const KERNEL = "_Z9vectorAddPKfS0_Pfi";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  agentLog: string;
  driverLog: string[];
  ptxFiles: string[];
  dump: string;
}

function runUnderAgent(exe: string, extraEnv: Record<string, string> = {}, fixture = "intercept_probe", args: readonly string[] = ["1000", "1", "fake"]): Run {
  const dir = testTempDir("bpfhook-nvi-");
  const agentLog = path.join(dir, "agent.log");
  const driverLog = path.join(dir, "driver.log");
  const dump = path.join(dir, "gpu-maps.dump");
  const object = compileFixture(`nv-cuda/${fixture}.bpf.c`);
  const r = spawnSync(
    process.execPath,
    [cli, "run", "-j", "--plugin", pluginDir, "--agent-log", agentLog, object, "--", exe, ...args],
    {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: driverLog, BH_CUDA_STANDIN_NPARAMS: "4", BPFHOOK_NV_CUDA_DUMP: dump, ...extraEnv },
    },
  );
  const lines = existsSync(driverLog) ? readFileSync(driverLog, "utf8").split("\n").filter((l) => l !== "") : [];
  const ptxFiles = lines.map((l) => /^cuModuleLoadData .* ptx=(\S+)$/.exec(l)?.[1]).filter((f): f is string => f !== undefined);
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    agentLog: existsSync(agentLog) ? readFileSync(agentLog, "utf8") : "",
    driverLog: lines,
    ptxFiles,
    dump,
  };
}

function explain(r: Run): string {
  return `\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nagent log:\n${r.agentLog}\ndriver log:\n${r.driverLog.join("\n")}`;
}

describe("72 nv-cuda interception (agent mode, stand-in driver)", function () {
  this.timeout(180_000);
  const exes = new Map<string, string>();

  before(function () {
    skipWithoutCuda(this);
    skipWithoutClang(this);
    if (!existsSync(standin) || !existsSync(path.join(pluginDir, "build", "libbpfhook_nv_cuda.so"))) {
      console.log("      skipped: plugins/nv-cuda is not built (npm run build:native in plugins/nv-cuda)");
      this.skip();
    }
    exes.set("static", nvccBuild("vec_add.cu", "vec_add_static", []));
    exes.set("shared", nvccBuild("vec_add.cu", "vec_add_shared", ["-cudart", "shared"]));
  });

  for (const build of ["static", "shared"] as const) {
    it(`${build} runtime: registration seen, stub mapped, instrumented module loaded, launch redirected with the kernel's arguments`, () => {
      const r = runUnderAgent(exes.get(build)!);
      assert.equal(r.status, 0, explain(r));
      // The program ran to its end without a GPU; its launch reported an error of the runtime's own (no driver).
      assert.match(r.stderr, /vec_add n=1000 launch=\d+ check=skipped/, explain(r));

      const hooked = /nv-cuda: (\d+) CUDA runtime functions hooked in process \d+ \((\d+) at symbol-table vaddrs of (\S+), (\d+) exported\)/.exec(r.agentLog);
      assert.ok(hooked, `hooks installed${explain(r)}`);
      if (build === "static") {
        // nvcc's static runtime: local symbols of the executable, from its .symtab.
        assert.equal(Number(hooked[2]), 11, "every hooked function found in the executable's .symtab");
        assert.equal(hooked[3], exes.get(build));
      } else {
        // -cudart shared: none in the executable; libcudart.so exports them.
        assert.equal(Number(hooked[2]), 0);
        assert.ok(Number(hooked[4]) >= 10, `libcudart.so's exports: ${hooked[4]}`);
      }
      assert.match(r.agentLog, /nv-cuda: fat binary #1 registered \(wrapper 0x[0-9a-f]+, handle 0x[0-9a-f]+\)/, explain(r));
      const stub = new RegExp(`nv-cuda: kernel ${KERNEL}: host stub (0x[0-9a-f]+) \\(instrumented\\)`).exec(r.agentLog);
      assert.ok(stub, `the host stub mapped to the mangled name${explain(r)}`);

      // The stand-in got the instrumented module: it contains the probe and ptxas accepts it.
      assert.equal(r.ptxFiles.length, 1, explain(r));
      const ptx = readFileSync(r.ptxFiles[0]!, "utf8");
      assert.match(ptx, new RegExp(`\\.entry ${KERNEL}\\(`));
      // Both programs of the object in one module: the entry probe and the exit probe.
      assert.match(ptx, /call(\.uni)? \(\S+\), bpf_prog_0_count_threads/, "the entry probe is called in the kernel");
      assert.match(ptx, /call(\.uni)? \(\S+\), bpf_prog_1_time_blocks/, "the exit probe is called in the kernel");
      assert.match(r.agentLog, new RegExp(`prog 'count_threads' \\(entry\\), 'time_blocks' \\(exit\\) on ${KERNEL} \\[[^\\]]*\\]: instrumented module loaded \\(1 kernels, 3 maps\\)`), explain(r));
      for (const arch of [80, 90]) {
        const a = ptxasCheck(ptx, arch, `intercepted-${build}`);
        assert.equal(a.status, 0, `ptxas sm_${arch}: ${a.output}`);
      }
      const fn = r.driverLog.map((l) => new RegExp(`^cuModuleGetFunction module=(\\S+) name=${KERNEL} fn=(\\S+)$`).exec(l)).find((m) => m !== null);
      assert.ok(fn, explain(r));
      // The runtime's globals of the instrumented module were filled, and cudaMemcpyToSymbol's write copied.
      for (const g of ["bh_pid_tgid", "bh_ring", "bh_map_table", "scale"]) {
        assert.ok(r.driverLog.some((l) => l.startsWith(`cuModuleGetGlobal name=${g} `)), `global ${g} set${explain(r)}`);
      }
      assert.match(r.agentLog, /global scale copied to the instrumented module \(4 bytes\)/);

      // The launch: the instrumented function, the grid and block of <<<4, 256>>>, the arguments a, b, c, n.
      const launches = r.driverLog.filter((l) => l.startsWith("cuLaunchKernel "));
      assert.equal(launches.length, 1, explain(r));
      const m = /^cuLaunchKernel fn=(\S+) name=(\S+) grid=4,1,1 block=256,1,1 shmem=0 stream=\S+ params=(\S+)$/.exec(launches[0]!);
      assert.ok(m, launches[0]);
      assert.equal(m[1], fn[2], "launched the instrumented CUfunction");
      assert.equal(m[2], KERNEL);
      const params = m[3]!.split(",").map((v) => BigInt(v));
      assert.deepEqual(params.slice(0, 3), [0x1000n, 0x2000n, 0x3000n], "the pointers a, b, c");
      assert.equal(params[3]! & 0xffffffffn, 1000n, "n (an int: the low 4 bytes)");
      assert.match(r.agentLog, new RegExp(`launch of ${KERNEL} \\(grid 4,1,1 block 256,1,1\\) redirected to instrumented function`));

      // The GPU maps as the native piece copied them back at exit (here the stand-in's host memory: nothing ran, all zero).
      const dump = parseGpuDump(readFileSync(r.dump), ["threads", "info", "block_end"]);
      assert.deepEqual(
        dump.maps.map((m) => [m.descriptor.type, m.descriptor.keySize, m.descriptor.valueSize, m.descriptor.maxEntries, m.descriptor.capacity]),
        [
          [6, 4, 8, 1, 1024],
          [2, 4, 8, 2, 0],
          [1, 4, 8, 8192, 16384],
        ],
      );
      const zero = Buffer.alloc(4);
      assert.equal(Buffer.from(dump.maps[0]!.lookup(zero)!).readBigUInt64LE(0), 0n);
      assert.equal(dump.maps[0]!.lookupPerShard(0).length, 1024);
      assert.deepEqual([...dump.maps[2]!.entries()], []);
      assert.deepEqual(dump.ring?.records, []);
    });
  }

  it("bpftime's cuda_probe program as it is (kprobe/ and kretprobe/ sections, GPU helpers 502-505) goes into the kernel", () => {
    const r = runUnderAgent(exes.get("static")!, {}, "cuda_probe");
    assert.equal(r.status, 0, explain(r));
    assert.match(r.agentLog, new RegExp(`prog 'probe__cuda' \\(entry\\), 'retprobe__cuda' \\(exit\\) on ${KERNEL} \\[[^\\]]*\\]: instrumented module loaded`), explain(r));
    assert.equal(r.ptxFiles.length, 1);
    const ptx = readFileSync(r.ptxFiles[0]!, "utf8");
    for (const reg of ["%tid.x", "%globaltimer"]) assert.ok(ptx.includes(reg), `the GPU helpers read ${reg}`);
    for (const arch of [80, 90]) {
      const a = ptxasCheck(ptx, arch, "intercepted-bpftime");
      assert.equal(a.status, 0, `ptxas sm_${arch}: ${a.output}`);
    }
    assert.equal(r.driverLog.filter((l) => l.startsWith(`cuLaunchKernel `) && l.includes(`name=${KERNEL} grid=4,1,1 block=256,1,1`)).length, 1, explain(r));
  });

  it("falls back to the original kernel, with a warning naming it, when the instrumented module cannot be loaded", () => {
    const r = runUnderAgent(exes.get("static")!, { BH_CUDA_STANDIN_FAIL: "cuModuleLoadData" });
    assert.equal(r.status, 0, explain(r));
    assert.match(r.agentLog, new RegExp(`kernel ${KERNEL} runs uninstrumented: .*cuModuleLoadData failed \\(CUresult 218\\)`), explain(r));
    assert.ok(!r.driverLog.some((l) => l.startsWith("cuLaunchKernel ")), "nothing launched through the driver table");
    assert.match(r.stderr, /vec_add n=1000 launch=\d+ check=skipped/, "the original launch ran (and failed without a driver)");
  });

  it("when the controller dies the probes go: later launches are not redirected, and the program runs to its end", async () => {
    const dir = testTempDir("bpfhook-nvi-");
    const driverLog = path.join(dir, "driver.log");
    const agentLog = path.join(dir, "agent.log");
    const object = compileFixture("nv-cuda/intercept_probe.bpf.c");
    // 100 launches 20 ms apart; the controller is killed after the third.
    const ctl = spawn(process.execPath, [cli, "run", "-q", object, "--plugin", pluginDir, "--agent-log", agentLog, "--", exes.get("static")!, "1000", "100", "fake", "20"], {
      cwd: repoRoot,
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: driverLog },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    ctl.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    ctl.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const launches = (): number => (existsSync(driverLog) ? readFileSync(driverLog, "utf8").split("\n").filter((l) => l.startsWith("cuLaunchKernel ")).length : 0);
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const end = Date.now() + 20_000;
      while (!cond()) {
        if (Date.now() > end) assert.fail(`${what} did not happen\n${out}\n${existsSync(agentLog) ? readFileSync(agentLog, "utf8") : ""}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await until(() => launches() >= 3, "three redirected launches");
      ctl.kill("SIGKILL");
      // The program (no longer bpfhook's child once it is gone) writes its last line to our pipe: it did not crash.
      await until(() => /vec_add n=1000 launch=\d+ check=skipped/.test(out), "the program's last line");
      const log = readFileSync(agentLog, "utf8");
      assert.match(log, /is gone: detaching every probe/);
      const n = launches();
      assert.ok(n >= 3 && n < 100, `${n} launches redirected, the rest ran the original kernel`);
    } finally {
      ctl.kill("SIGKILL");
    }
  });

  for (const build of ["static", "shared"] as const) {
    it(`${build} runtime: a kernel in a shared object and one in the executable, one instrumented module per fat binary`, () => {
      const dir = cudaBuildDir();
      const cudart = build === "shared" ? ["-cudart", "shared"] : [];
      const lib = `lk${build}`;
      nvccBuild("lib_kernel.cu", `lib${lib}.so`, ["-shared", "-Xcompiler", "-fPIC", ...cudart]);
      const exe = nvccBuild("lib_main.cu", `lib_main_${build}`, [...cudart, "-L", dir, `-l${lib}`, "-Xlinker", `-rpath=${dir}`]);
      const r = runUnderAgent(exe, { BH_CUDA_STANDIN_NPARAMS: "2" }, "lib_probe", ["3"]);
      assert.equal(r.status, 0, explain(r));
      assert.match(r.stderr, /lib_main repeat=3 lib=\d+ main=\d+/, explain(r));
      if (build === "static") {
        // nvcc's static runtime: one copy in the executable and one in the shared object, both hooked.
        const hooked = /nv-cuda: \d+ CUDA runtime functions hooked in process \d+ \((\d+) at symbol-table vaddrs of (\S+), \d+ exported\)/.exec(r.agentLog);
        assert.ok(hooked, explain(r));
        assert.equal(Number(hooked[1]), 22, "11 functions in each file");
        assert.deepEqual(hooked[2]!.split(","), [exe, path.join(dir, `lib${lib}.so`)]);
      }
      // The shared object registered its kernel before the agent started: its stub comes from its symbol table.
      assert.match(r.agentLog, /nv-cuda: kernel _Z8libScalePfif: host stub 0x[0-9a-f]+ \(instrumented; from the symbol table\)/, explain(r));
      assert.equal(r.ptxFiles.length, 2, `two modules loaded${explain(r)}`);
      const ptxs = r.ptxFiles.map((f) => readFileSync(f, "utf8"));
      assert.equal(ptxs.filter((p) => /\.entry _Z8libScalePfif\(/.test(p) && !/\.entry _Z10mainKernelPii\(/.test(p)).length, 1, "the shared object's module");
      assert.equal(ptxs.filter((p) => /\.entry _Z10mainKernelPii\(/.test(p) && !/\.entry _Z8libScalePfif\(/.test(p)).length, 1, "the executable's module");
      for (const [i, ptx] of ptxs.entries()) {
        assert.match(ptx, /call(\.uni)? \(\S+\), bh_guard_0/);
        const a = ptxasCheck(ptx, 90, `lib-${build}-${i}`);
        assert.equal(a.status, 0, `ptxas: ${a.output}`);
      }
      const launches = r.driverLog.filter((l) => l.startsWith("cuLaunchKernel "));
      assert.equal(launches.filter((l) => / name=_Z8libScalePfif grid=4,1,1 block=128,1,1 /.test(l)).length, 3, explain(r));
      assert.equal(launches.filter((l) => / name=_Z10mainKernelPii grid=2,1,1 block=64,1,1 /.test(l)).length, 3, explain(r));
    });
  }

  it("two translation units with kernels in one executable: two fat binaries, two instrumented modules", () => {
    const exe = nvccBuild("lib_main.cu", "two_tu", [path.join(FIXTURES_DIR, "nv-cuda", "lib_kernel.cu")]);
    const r = runUnderAgent(exe, { BH_CUDA_STANDIN_NPARAMS: "2" }, "lib_probe", ["2"]);
    assert.equal(r.status, 0, explain(r));
    assert.match(r.agentLog, /nv-cuda: fat binary #2 registered/, explain(r));
    assert.equal(r.ptxFiles.length, 2, `one module per fat binary${explain(r)}`);
    const launches = r.driverLog.filter((l) => l.startsWith("cuLaunchKernel "));
    assert.equal(launches.filter((l) => / name=_Z8libScalePfif /.test(l)).length, 2, explain(r));
    assert.equal(launches.filter((l) => / name=_Z10mainKernelPii /.test(l)).length, 2, explain(r));
  });

  it("late attach (bpfhook attach -p): kernels registered and launched before are redirected from then on, and go back at detach", async () => {
    const dir = testTempDir("bpfhook-nvi-");
    const driverLog = path.join(dir, "driver.log");
    const agentLog = path.join(dir, "agent.log");
    const object = compileFixture("nv-cuda/intercept_probe.bpf.c");
    // 400 launches 10 ms apart, started without bpfhook: the runtime has registered and launched (its handle cached) before the attach.
    const target = spawn(exes.get("static")!, ["1000", "400", "fake", "10"], {
      // An injected agent reads its log file from the target's environment.
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: driverLog, BH_CUDA_STANDIN_NPARAMS: "4", BPFHOOK_AGENT_LOG: agentLog },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    target.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    target.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) => target.on("exit", (code) => resolve(code)));
    try {
      await new Promise((r) => setTimeout(r, 300));
      const launches = (): string[] => (existsSync(driverLog) ? readFileSync(driverLog, "utf8").split("\n").filter((l) => l.startsWith("cuLaunchKernel ")) : []);
      assert.equal(launches().length, 0, "nothing redirected before the attach");
      const r = spawnSync(process.execPath, [cli, "attach", "-j", "-p", String(target.pid), "--duration", "1", object, "--plugin", pluginDir], {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: 60_000,
      });
      const log = existsSync(agentLog) ? readFileSync(agentLog, "utf8") : "";
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}\n${log}\n${out}`);
      // The stub's handle was cached by __cudaGetKernel before the attach: only the replay from the symbol table redirects it.
      assert.match(log, new RegExp(`nv-cuda: kernel ${KERNEL}: host stub 0x[0-9a-f]+ \\(instrumented; from the symbol table\\)`), log);
      const during = launches();
      assert.ok(during.length >= 10, `launches redirected while attached: ${during.length}\n${log}`);
      assert.match(during[0]!, new RegExp(`^cuLaunchKernel fn=\\S+ name=${KERNEL} grid=4,1,1 block=256,1,1 shmem=0 stream=\\S+ params=0x1000,0x2000,0x3000,`));
      await new Promise((r) => setTimeout(r, 300));
      const after = launches().length;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(launches().length, after, "no redirected launch after the detach");
      assert.equal(await exited, 0, out);
      assert.match(out, /vec_add n=1000 launch=\d+ check=skipped/, "the program ran to its end");
    } finally {
      target.kill("SIGKILL");
    }
  });

  it("detaching one program of the object keeps the others instrumented (its guard slot turned off in the module in use)", async () => {
    const dir = testTempDir("bpfhook-nvi-");
    const driverLog = path.join(dir, "driver.log");
    const object = compileFixture("nv-cuda/intercept_probe.bpf.c");
    const s = await AgentSession.run({
      objects: [object],
      plugins: [pluginDir],
      command: exes.get("static")!,
      args: ["1000", "400", "fake", "10"],
      stdio: ["ignore", "ignore", "ignore"],
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: driverLog, BH_CUDA_STANDIN_NPARAMS: "4" },
    });
    const lines = (): string[] => (existsSync(driverLog) ? readFileSync(driverLog, "utf8").split("\n") : []);
    const launches = (): number => lines().filter((l) => l.startsWith("cuLaunchKernel ")).length;
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const end = Date.now() + 20_000;
      while (!cond()) {
        if (Date.now() > end) assert.fail(`${what} did not happen\n${lines().join("\n")}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const applied = () => s.backend.settle(s.backend.area.info().planSeq, []);
    try {
      await until(() => launches() >= 3, "three redirected launches");
      // The module in use is the exit probe's attach (the latest): it holds both programs, count_threads in slot 0, time_blocks in slot 1.
      const ptx = readFileSync(/^cuModuleLoadData .* ptx=(\S+)$/.exec(lines().find((l) => l.startsWith("cuModuleLoadData "))!)![1]!, "utf8");
      assert.match(ptx, /bh_guard_0\(.*\n(?:.*\n)*?\tcall \(rr\), bpf_prog_0_count_threads/);
      assert.match(ptx, /bh_guard_1\(.*\n(?:.*\n)*?\tcall \(rr\), bpf_prog_1_time_blocks/);
      const global = /^cuModuleGetGlobal name=bh_prog_off dptr=(\S+)/;
      assert.ok(!lines().some((l) => global.test(l)), "every slot on at load: bh_prog_off left as it is");

      s.runtime.attachments.find((l) => l.programName === "time_blocks")!.detach();
      await applied();
      const dptr = lines().map((l) => global.exec(l)?.[1]).find((d) => d !== undefined);
      assert.ok(dptr, `bh_prog_off written at the detach\n${lines().join("\n")}`);
      assert.ok(lines().includes(`cuMemcpyHtoD dptr=${dptr} size=8 head=0000000001000000`), "slot 0 on, slot 1 off");
      const at = launches();
      await until(() => launches() >= at + 3, "launches still redirected after detaching one program");
      assert.equal(lines().filter((l) => l.startsWith("cuModuleLoadData ")).length, 1, "the same module, no reload");

      s.runtime.attachments.find((l) => l.programName === "count_threads")!.detach();
      await applied();
      await new Promise((r) => setTimeout(r, 100));
      const last = launches();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(launches(), last, "the last program detached: the original kernel runs");
    } finally {
      s.child?.kill("SIGKILL");
      s.close();
    }
  });

  it("kprobe/<name> is nv-cuda's when the name is a CUDA kernel of the target, a kernel-kprobe plugin's otherwise", async () => {
    const target = spawn(exes.get("static")!, ["10", "300", "fake", "10"], { stdio: "ignore", env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin } });
    // Until the child has exec'd the program (its /proc/<pid>/exe is node's before).
    for (let i = 0; i < 200 && readlinkSync(`/proc/${target.pid}/exe`) !== exes.get("static"); i++) await new Promise((r) => setTimeout(r, 10));
    const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-nv-cuda"], resolveFrom: repoRoot, target: { pid: target.pid!, moduleRelative: true } });
    try {
      rt.use(
        definePlugin({
          name: "kernel-kprobe",
          abiVersion: PLUGIN_ABI_VERSION,
          attachTypes: [{ id: 4101, name: "kernel_kprobe", sectionPrefixes: ["kprobe", "kretprobe"] }],
          privateDataSchema: z.object({ fn: z.string() }),
          nativeLibrary: "/nonexistent/libkernel_kprobe.so",
          parseSection: (_t, rest) => ({ fn: rest }),
          encode: () => new Uint8Array(0),
        }),
      );
      const owner = (section: string) => `${rt.registry.matchSection(section)?.plugin.name} ${rt.registry.matchSection(section)?.type.id}`;
      assert.equal(owner(`kprobe/${KERNEL}`), "nv-cuda 8");
      assert.equal(owner(`kretprobe/${KERNEL}`), "nv-cuda 9");
      assert.equal(owner("kprobe/__memcapture"), "nv-cuda 8", "memory capture: the target has kernels");
      assert.equal(owner("kprobe/do_sys_openat2"), "kernel-kprobe 4101");
      assert.equal(owner("kprobe/_Z9vectorAddPKfS0_Pf"), "kernel-kprobe 4101", "the mangled name exactly");
      // bpftime's program loads with the CUDA context for its kprobe/ sections.
      const obj = rt.load(compileFixture("nv-cuda/cuda_probe.bpf.c"));
      assert.ok(obj.program("probe__cuda").helperIds.includes(505));
    } finally {
      rt.close();
      target.kill("SIGKILL");
    }
  });

  it("live GPU maps: the device maps are mirrored into the object's maps while the target runs, bh_ring drained into printk", async () => {
    const dir = testTempDir("bpfhook-nvi-");
    const driverLog = path.join(dir, "driver.log");
    const object = compileFixture("nv-cuda/intercept_probe.bpf.c");
    // The stand-in leaves what count_threads would on a GPU (1 per thread of each launch, per-thread shards) and one printk record per launch.
    const s = await AgentSession.run({
      objects: [object],
      plugins: [pluginDir],
      command: exes.get("static")!,
      args: ["1000", "300", "fake", "10"],
      stdio: ["ignore", "ignore", "ignore"],
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: driverLog, BH_CUDA_STANDIN_SIMULATE: "count", BPFHOOK_NV_CUDA_SYNC_MS: "20" },
    });
    const printk: string[] = [];
    s.on("printk", (l: { message: string }) => printk.push(l.message));
    const obj = [...s.objects.values()][0]!;
    const threads = (): bigint => (obj.map<PerCpuMap<number, bigint>>("threads").get(0) ?? []).reduce((a, b) => a + b, 0n);
    const launches = (): number => (existsSync(driverLog) ? readFileSync(driverLog, "utf8").split("\n").filter((l) => l.startsWith("cuLaunchKernel ")).length : 0);
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const end = Date.now() + 20_000;
      while (!cond()) {
        if (Date.now() > end) assert.fail(`${what} did not happen (threads ${threads()}, launches ${launches()}, printk ${printk.length})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await until(() => threads() >= 3n * 1024n, "three launches' threads in the CPU map");
      assert.equal(s.exitStatus, undefined, "while the target runs");
      // One read for every check below: the mirror moves on while the
      // target runs (a second read may already hold a later launch).
      const perCpu = obj.map<PerCpuMap<number, bigint>>("threads").get(0)!;
      const seen = perCpu.reduce((a, b) => a + b, 0n);
      assert.equal(seen % 1024n, 0n, "whole launches of 4 x 256 threads, summed over the shards");
      assert.ok(seen >= 3n * 1024n && seen <= BigInt(launches()) * 1024n, `no more than launched: ${seen} for ${launches()}`);
      assert.equal(perCpu[0], seen, "the GPU's sum in CPU 0's slot");
      await until(() => printk.length >= 3, "three printk lines from bh_ring");
      assert.deepEqual(printk.slice(0, 3), ["stand-in launch 1", "stand-in launch 2", "stand-in launch 3"]);
      await until(() => threads() > seen, "the mirror keeps up");
    } finally {
      s.child?.kill("SIGKILL");
      s.close();
    }
  });

  it("refuses a kernel the target does not have, naming its kernels", () => {
    const dir = testTempDir("bpfhook-nvi-");
    const src = path.join(dir, "other.bpf.c");
    const text = readFileSync(path.join(repoRoot, "test", "fixtures", "nv-cuda", "intercept_probe.bpf.c"), "utf8").replace('SEC("cuda/vectorAdd")', 'SEC("cuda/noSuchKernel")');
    writeFileSync(src, text);
    const object = path.join(dir, "other.bpf.o");
    compileBpfC(src, { out: object });
    const r = spawnSync(process.execPath, [cli, "run", "-q", object, "--plugin", pluginDir, "--", exes.get("static")!, "10", "1", "fake"], {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin },
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`kernel 'noSuchKernel' is not a kernel of .*vec_add_static \\(its kernels: ${KERNEL}\\)`), r.stderr);
  });

  it("npm run test:gpu's conformance run: one module ptxas accepts, and the runner launches every program (stand-in driver: nothing runs)", function () {
    const dir = conformanceDir();
    if (dir === undefined) {
      console.log("      skipped: bpf_conformance not found (set BPFHOOK_CONFORMANCE_DIR or add shared/conformance)");
      this.skip();
    }
    // bench/gpu/conformance-programs.ts's selection: programs with a result that call no helper.
    const programs: ConformanceProgram[] = [];
    for (const file of conformanceFiles(dir!)) {
      const c = parseDataFile(readFileSync(file, "utf8"), path.basename(file));
      const asm = c.sections.get("asm");
      if (c.error !== undefined || asm === undefined || c.result === undefined) continue;
      const insns = assembleBytes(asm.text, { file: c.file, firstLine: asm.firstLine });
      let helper = false;
      for (let i = 0; i + 8 <= insns.length; i += 8) helper ||= insns[i] === 0x85 && insns[i + 1]! >> 4 === 0;
      if (!helper) programs.push({ name: path.basename(file, ".data"), insns, mem: c.mem ?? new Uint8Array(0), expected: c.result });
    }
    const mod = conformanceModule(programs, 90);
    assert.deepEqual(mod.refused, ["callx: prog 'callx': insn 2: callx (call by register) is not supported on the GPU"]);
    const a = ptxasCheck(mod.ptx, 90, "conformance-device");
    assert.equal(a.status, 0, a.output);
    const work = testTempDir("bpfhook-nvi-");
    const ptx = path.join(work, "conformance.ptx");
    const manifest = path.join(work, "conformance.manifest");
    const log = path.join(work, "driver.log");
    writeFileSync(ptx, mod.ptx);
    writeFileSync(manifest, mod.manifest);
    const entries = mod.manifest.trim().split("\n").length;
    assert.equal(entries, programs.length - 1);
    const r = spawnSync(path.join(pluginDir, "build", "bh_cuda_conformance_runner"), [ptx, manifest], {
      encoding: "utf8",
      env: { ...process.env, BPFHOOK_NV_CUDA_DRIVER: standin, BH_CUDA_STANDIN_LOG: log, BH_CUDA_STANDIN_NPARAMS: "0" },
    });
    const m = /conformance on the device: (\d+) passed, (\d+) failed/.exec(r.stdout);
    assert.ok(m, `${r.stdout}${r.stderr}`);
    assert.equal(Number(m[1]) + Number(m[2]), entries, "every program launched and compared");
    // Nothing runs: r0 stays 0, so exactly the programs expecting 0 "pass".
    assert.equal(Number(m[1]), mod.manifest.trim().split("\n").filter((l) => l.endsWith(" 0")).length);
    const launched = readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith("cuLaunchKernel "));
    assert.equal(launched.length, entries);
    assert.match(launched[0]!, /name=bh_conf_0 grid=1,1,1 block=1,1,1 /);
  });
});
