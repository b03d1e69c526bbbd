import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { assembleBytes, conformanceFiles, loadObject, parseDataFile, Runtime, type BpfObject } from "@bpfhook/core";
import {
  compileProgram,
  CUDA_CTX,
  CUDA_PROBE_TYPE,
  CUDA_RETPROBE_TYPE,
  entryPtx,
  findFatbins,
  instrumentModule,
  instrumentPtx,
  kernelBaseName,
  kernelMatches,
  kernelSelector,
  parseCudaSection,
  parsePtxModule,
  plugin,
  PtxCompileError,
  ptxVersionFor,
  runtimePtx,
  standaloneModule,
  type ProgramInsertion,
} from "@bpfhook/plugin-nv-cuda";
import { definePlugin, PLUGIN_ABI_VERSION } from "@bpfhook/sdk";
import { z } from "zod";
import { conformanceDir } from "./helpers/conformance-dir.js";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { nvccBuild, nvccPtx, ptxasCheck, skipWithoutCuda } from "./support/cuda.js";

const repoRoot = path.resolve(__dirname, "..", "..");
const ARCHS = [80, 90];

/** Where each program of an object goes, as the plugin reads its section. */
function insertionsOf(obj: BpfObject): ProgramInsertion[] {
  return obj.programs.map((p) => {
    const prefix = p.section.split("/")[0]!;
    const type = CUDA_RETPROBE_TYPE.sectionPrefixes.includes(prefix) ? CUDA_RETPROBE_TYPE : CUDA_PROBE_TYPE;
    const data = parseCudaSection(type, p.section.slice(prefix.length + 1), p.section);
    return { program: p, kind: data.at, kernel: kernelSelector(data) };
  });
}

function assertAssembles(ptx: string, name: string): void {
  for (const arch of ARCHS) {
    const retargeted = ptx.replace(/^\.target sm_\d+/m, `.target sm_${arch}`).replace(/^\.version \d+\.\d+/m, `.version ${ptxVersionFor(arch)}`);
    const r = ptxasCheck(retargeted, arch, name);
    assert.equal(r.status, 0, `ptxas -arch=sm_${arch} ${r.file}:\n${r.output}`);
  }
}

/** Program bytes from assembler text (one function). */
const prog = (name: string, asm: string) => ({ name, insns: assembleBytes(asm) });

function expectCompileError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PtxCompileError, `a PtxCompileError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

describe("71 nv-cuda: eBPF to PTX, insertion, ptxas", function () {
  this.timeout(300_000);
  before(function () {
    skipWithoutCuda(this);
    skipWithoutClang(this);
  });

  it("the runtime alone (every helper) assembles", () => {
    assertAssembles(`.version 7.0\n.target sm_80\n.address_size 64\n${runtimePtx({ mapSlots: 3 })}`, "runtime");
  });

  for (const fixture of ["cuda_probe", "gpu_features", "plain_probe"]) {
    it(`${fixture}.bpf.c: compiled, inserted into nvcc's kernels, assembled for sm_80 and sm_90`, () => {
      const obj = loadObject(compileFixture(`nv-cuda/${fixture}.bpf.c`));
      for (const arch of ARCHS) {
        const ptx = nvccPtx("kernels.cu", arch);
        const out = instrumentPtx(ptx, insertionsOf(obj), obj.maps);
        assert.ok(out.kernels.has("_Z9vectorAddPKfS0_Pfi"), "vectorAdd is instrumented");
        // The module's own header is kept.
        assert.equal(parsePtxModule(out.ptx).version, parsePtxModule(ptx).version);
        assert.match(out.ptx, new RegExp(`^\\.target sm_${arch}$`, "m"));
        const r = ptxasCheck(out.ptx, arch, `${fixture}-in-kernels`);
        assert.equal(r.status, 0, `ptxas -arch=sm_${arch} ${r.file}:\n${r.output}`);
      }
    });
  }

  it("selects kernels as the sections say: bpftime's exact names, ours by base name and glob", () => {
    const obj = loadObject(compileFixture("nv-cuda/gpu_features.bpf.c"));
    const out = instrumentPtx(nvccPtx("kernels.cu", 90), insertionsOf(obj), obj.maps);
    // features: cuda/vectorAdd; on_exit: cudaret/vector*; memory: kprobe/__memcapture (every kernel)
    assert.deepEqual(out.kernels.get("_Z9vectorAddPKfS0_Pfi"), { entry: 1, exit: 1, memory: 1, memoryAccesses: 3, memorySkipped: [] });
    assert.deepEqual(out.kernels.get("_Z5scaleIfEvPT_S0_i"), { entry: 0, exit: 0, memory: 1, memoryAccesses: 2, memorySkipped: [] });
    assert.equal(out.kernels.size, 6, "memory capture goes into every kernel");
    const probe = loadObject(compileFixture("nv-cuda/cuda_probe.bpf.c"));
    const only = instrumentPtx(nvccPtx("kernels.cu", 90), insertionsOf(probe), probe.maps);
    assert.deepEqual([...only.kernels.keys()], ["_Z9vectorAddPKfS0_Pfi"]);
  });

  it("instruments the PTX taken out of a fat binary (templated kernels, 15 parameters, a struct by value)", () => {
    const exe = nvccBuild("kernels.cu", "kernels-speed-71", ["-arch=sm_90", "--compress-mode=speed"]);
    const entry = findFatbins(exe).section!.entries.find((e) => e.kind === "ptx" && e.arch === 90)!;
    const ptx = entryPtx(entry);
    const obj = loadObject(compileFixture("nv-cuda/gpu_features.bpf.c"));
    const all = obj.programs.map((p, i): ProgramInsertion => ({ program: p, kind: (["entry", "exit", "memory"] as const)[i % 3]!, kernel: () => true }));
    // A program reading nparams and every parameter slot: the fill loads each at its width.
    const reads = [CUDA_CTX.nparams, ...Array.from({ length: CUDA_CTX.maxParams }, (_, n) => CUDA_CTX.params + 8 * n)];
    const params = prog("params", `${reads.map((o) => `ldxdw %r2, [%r1+${o}]`).join("\n")}\nmov %r0, 0\nexit`);
    const out = instrumentPtx(ptx, [...all, { program: params, kind: "entry", kernel: () => true }], obj.maps);
    assert.equal(out.kernels.size, 6);
    const many = parsePtxModule(out.ptx).entries.find((e) => e.name.startsWith("_Z10manyParams"))!;
    assert.equal(many.params.length, 15);
    // The context gets each parameter at its width: u8 (char), u16 (short), f64, a pointer.
    const body = out.ptx.slice(many.bodyStart, many.bodyEnd);
    assert.match(body, new RegExp(`st\\.u64 \\[%bh0\\+${CUDA_CTX.nparams}\\], 15;`));
    assert.match(body, /ld\.param\.u8 %bhh, \[_Z10manyParams\w+_param_5\];/);
    assert.match(body, /ld\.param\.b16 %bhh, \[_Z10manyParams\w+_param_6\];/);
    assert.match(body, /ld\.param\.b64 %bh1, \[_Z10manyParams\w+_param_4\];/);
    // Several ways out (an early return and a PTX exit): the exit probe before each.
    const early = parsePtxModule(out.ptx).entries.find((e) => e.name.startsWith("_Z12earlyReturns"))!;
    const earlyBody = out.ptx.slice(early.bodyStart, early.bodyEnd);
    assert.equal((earlyBody.match(/^\t(ret|exit);$/gm) ?? []).length, 2);
    assert.equal((earlyBody.match(/call \(bhr\), bh_guard_1/g) ?? []).length, 2);
    const byValue = parsePtxModule(out.ptx).entries.find((e) => e.name.startsWith("_Z7byValue"))!;
    assert.equal(byValue.params[0]!.arraySize, 16);
    const r = ptxasCheck(out.ptx, 90, "from-fatbin");
    assert.equal(r.status, 0, `ptxas ${r.file}:\n${r.output}`);
  });

  it("-lineinfo and debug (-G) builds: instrumented and assembled", () => {
    const obj = loadObject(compileFixture("nv-cuda/gpu_features.bpf.c"));
    const all = obj.programs.map((p, i): ProgramInsertion => ({ program: p, kind: (["entry", "exit", "memory"] as const)[i % 3]!, kernel: () => true }));
    for (const flag of ["-lineinfo", "-G"]) {
      const ptx = readFileSync(nvccBuild("kernels.cu", `kernels${flag}.ptx`, ["-arch=sm_80", "-ptx", flag]), "utf8");
      const out = instrumentPtx(ptx, all, obj.maps);
      const accesses = [...out.kernels.values()].reduce((n, k) => n + k.memoryAccesses, 0);
      // -G keeps generic ld/st (no .global): memory capture sees none there (README).
      if (flag === "-G") assert.equal(accesses, 0);
      else assert.ok(accesses > 10, `${accesses} global accesses captured`);
      const r = ptxasCheck(out.ptx, 80, `kernels${flag}`);
      assert.equal(r.status, 0, `ptxas ${r.file}:\n${r.output}`);
    }
  });

  it("exit probes before every ret and exit, predicates and labels kept; memory capture under the predicate", () => {
    const kernel = [
      ".version 7.0",
      ".target sm_80",
      ".address_size 64",
      "",
      ".visible .entry multiRet(",
      "\t.param .u64 multiRet_param_0,",
      "\t.param .u32 multiRet_param_1",
      ")",
      "{",
      "\t.reg .pred \t%p<3>;",
      "\t.reg .b32 \t%r<8>;",
      "\t.reg .b64 \t%rd<4>;",
      "",
      "\tld.param.u64 \t%rd1, [multiRet_param_0];",
      "\tld.param.u32 \t%r1, [multiRet_param_1];",
      "\tcvta.to.global.u64 \t%rd2, %rd1;",
      "\tmov.u32 \t%r2, %tid.x;",
      "\tsetp.ge.u32 \t%p1, %r2, %r1;",
      "\t@%p1 ret;",
      "\tsetp.eq.s32 \t%p2, %r2, 7;",
      "\t@!%p2 bra \t$L__BB0_2;",
      "\tld.global.v4.u32 \t{%r3, %r4, %r5, %r6}, [%rd2+16];",
      "\t@%p2 st.global.u32 \t[%rd2], %r3; // predicated store",
      "\tld.global.u64 \t%rd2, [%rd2];",
      "\texit;",
      "$L__BB0_2: ret;",
      "}",
      "",
    ].join("\n");
    const exitProg = prog("on_exit", "mov %r0, 0\nexit");
    const memProg = prog("on_mem", "ldxdw %r0, [%r1+112]\nexit");
    const out = instrumentPtx(kernel, [
      { program: exitProg, kind: "exit", kernel: (n) => n === "multiRet" },
      { program: memProg, kind: "memory", kernel: (n) => n === "multiRet" },
    ]);
    assert.deepEqual(out.kernels.get("multiRet"), { entry: 0, exit: 1, memory: 1, memoryAccesses: 3, memorySkipped: [] });
    const calls = (out.ptx.match(/call \(bhr\), bh_guard_0/g) ?? []).length;
    assert.equal(calls, 3, "one exit probe per ret/exit");
    assert.match(out.ptx, /@!%p1 bra (\$__bh_skip\d+);\n(?:.*\n){6}\tret;\n\1:/, "a predicated ret: the probe and ret skipped together");
    assert.match(out.ptx, /\$L__BB0_2: \n(?:.*\n){6}\tret;/, "the label stays on the ret's path");
    // A vector load of 16 bytes at rd2+16; the address taken before a load that overwrites its own register.
    assert.match(out.ptx, /add\.s64 %bh2, %bh2, 16;\n\tld\.global\.v4\.u32/);
    assert.match(out.ptx, new RegExp(`st\\.u64 \\[%bh0\\+${CUDA_CTX.memSize}\\], 16;`));
    assert.match(out.ptx, /mov\.b64 %bh2, %rd2;\n\tld\.global\.u64 \t%rd2, \[%rd2\];/);
    assert.match(out.ptx, /@%p2 st\.global\.u32 \t\[%rd2\], %r3;\n\t@!%p2 bra \$__bh_skip\d+;/);
    assertAssembles(out.ptx, "multi-ret");
  });

  it("every program of the bpf_conformance suite compiles and assembles (one module)", function () {
    const dir = conformanceDir();
    if (dir === undefined) {
      console.log("      skipped: bpf_conformance not found (set BPFHOOK_CONFORMANCE_DIR or add shared/conformance)");
      this.skip();
    }
    const programs: { name: string; insns: Uint8Array }[] = [];
    const refused: string[] = [];
    for (const file of conformanceFiles(dir!)) {
      const c = parseDataFile(readFileSync(file, "utf8"), path.basename(file));
      const asm = c.sections.get("asm");
      if (c.error !== undefined || asm === undefined) continue; // programs meant to be refused
      const p = { name: path.basename(file, ".data"), insns: assembleBytes(asm.text, { file: c.file, firstLine: asm.firstLine }) };
      try {
        compileProgram(p);
        programs.push(p);
      } catch (e) {
        refused.push(`${c.file}: ${(e as Error).message}`);
      }
    }
    assert.ok(programs.length > 200, `${programs.length} programs`);
    // Only a call by register has no GPU form.
    assert.deepEqual(refused, ["callx.data: prog 'callx': insn 2: callx (call by register) is not supported on the GPU"]);
    assertAssembles(standaloneModule(programs, { arch: "sm_80" }), "conformance");
  });

  it("signed division, modulo and byte swaps follow the ISA's corner cases (text of the translation)", () => {
    const c = compileProgram(prog("sdiv", "mov %r0, 7\nmov %r1, -1\nsdiv %r0, %r1\nsmod %r0, %r1\nbe64 %r0\nbe16 %r0\nexit"));
    assert.match(c.ptx, /setp\.ne\.s64 %p0, %r1, 0;\n\tsetp\.ne\.s64 %p1, %r1, -1;/, "divisor 0 and -1 tested before div.s64");
    assert.match(c.ptx, /@!%p1 neg\.s64 %t2, %r0;/, "x / -1 is -x (INT_MIN stays INT_MIN)");
    assert.match(c.ptx, /@!%p1 mov\.b64 %r0, 0;/, "x % -1 is 0");
    assert.match(c.ptx, /prmt\.b32 %w0, %w0, 0, 0x0123;\n\tprmt\.b32 %w1, %w1, 0, 0x0123;\n\tmov\.b64 %r0, \{%w1, %w0\};/);
    assert.match(c.ptx, /prmt\.b32 %w0, %w0, 0, 0x4401;/);
  });

  it("refuses what has no GPU form, naming the instruction", () => {
    expectCompileError(() => compileProgram(prog("tail", "call 12\nexit")), /prog 'tail': insn 0: helper 12 is not available on the GPU/);
    expectCompileError(() => compileProgram(prog("jump", "ja +5\nexit")), /insn 0: jump to 6 leaves the function \(0\.\.1\)/);
    expectCompileError(() => compileProgram({ name: "abs", insns: Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]) }), /insn 0: opcode 0x20 \(legacy packet access\)/);
    expectCompileError(() => compileProgram({ name: "fn", insns: Buffer.from([0x18, 0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]) }), /insn 0: lddw src 4/);
  });

  it("finds the context bytes a program reads, so that kernels fill only those", () => {
    const reads = (asm: string) => compileProgram(prog("p", asm)).contextReads;
    assert.deepEqual(reads("mov %r0, 0\nexit"), { all: false, ranges: [] });
    assert.deepEqual(reads("ldxdw %r0, [%r1+112]\nexit"), { all: false, ranges: [{ offset: 112, size: 8 }] });
    assert.deepEqual(reads("mov %r6, %r1\ncall 502\nldxw %r0, [%r6+48]\nldxb %r1, [%r6+120]\nexit"), {
      all: false,
      ranges: [
        { offset: 48, size: 4 },
        { offset: 120, size: 1 },
      ],
    });
    // perf_event_output's context argument is ignored on the GPU: no escape.
    assert.equal(reads("mov %r4, %r10\nadd %r4, -8\nstdw [%r10-8], 0\nmov %r5, 8\ncall 25\nexit").all, false);
    // The pointer escapes: arithmetic, a store of it, a helper or subprogram argument.
    assert.equal(reads("add %r1, 8\nldxdw %r0, [%r1+0]\nexit").all, true);
    assert.equal(reads("stxdw [%r10-8], %r1\nmov %r0, 0\nexit").all, true);
    assert.equal(reads("mov %r3, %r1\ncall 503\nexit").all, true);
    // Joins merge: r1 may still be the context after the branch.
    assert.deepEqual(reads("jeq %r2, 0, +1\nmov %r1, %r10\nldxdw %r0, [%r1-8]\nexit"), { all: false, ranges: [{ offset: -8, size: 8 }] });

    const kernel = nvccPtx("kernels.cu", 80);
    const empty = instrumentPtx(kernel, [{ program: prog("empty", "mov %r0, 0\nexit"), kind: "entry", kernel: (n) => n.startsWith("_Z9vectorAdd") }]);
    const vec = parsePtxModule(empty.ptx).entries.find((e) => e.name.startsWith("_Z9vectorAdd"))!;
    assert.doesNotMatch(empty.ptx.slice(vec.bodyStart, vec.bodyEnd), /st\.u64 \[%bh0/, "an empty probe: no context fill at all");
    const tid = instrumentPtx(kernel, [{ program: prog("tid", "ldxdw %r0, [%r1+48]\nexit"), kind: "entry", kernel: (n) => n.startsWith("_Z9vectorAdd") }]);
    const body = tid.ptx.slice(parsePtxModule(tid.ptx).entries.find((e) => e.name.startsWith("_Z9vectorAdd"))!.bodyStart);
    assert.deepEqual(body.match(/st\.u64 \[%bh0\+\d+\]/g)?.slice(0, 2), ["st.u64 [%bh0+48]"], "thread_idx.x alone");
    for (const arch of ARCHS) {
      const r = ptxasCheck(tid.ptx.replace(/^\.target sm_80/m, `.target sm_${arch}`), arch, "tid-only");
      assert.equal(r.status, 0, r.output);
    }
  });

  it("map references read the map table; an index past the object's maps is refused", () => {
    const insns = Buffer.from([0x18, 0x51, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x18, 0x62, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    const maps = [0, 1, 2].map((i) => ({ name: `m${i}`, type: 2, keySize: 4, valueSize: 8, maxEntries: 1 }));
    const c = compileProgram({ name: "maps", insns }, { maps });
    assert.equal(c.mapSlots, 3);
    assert.match(c.ptx, /ld\.global\.u64 %r1, \[bh_map_table\+16\];/);
    assert.match(c.ptx, /ld\.global\.u64 %r2, \[bh_map_table\+8\];\n\tld\.u64 %r2, \[%r2\+32\];\n\tadd\.s64 %r2, %r2, 16;/);
    expectCompileError(() => compileProgram({ name: "maps", insns }, { maps: maps.slice(0, 2) }), /insn 0: map index 2 is outside the object's 2 maps/);
  });

  it("kernel names: base names of the Itanium mangling, globs over either form", () => {
    assert.equal(kernelBaseName("_Z9vectorAddPKfS0_Pfi"), "vectorAdd");
    assert.equal(kernelBaseName("_Z5scaleIfEvPT_S0_i"), "scale");
    assert.equal(kernelBaseName("_ZN2ns6kernelEPf"), "ns::kernel");
    assert.equal(kernelBaseName("plain_c_kernel"), "plain_c_kernel");
    assert.ok(kernelMatches("vectorAdd", "_Z9vectorAddPKfS0_Pfi"));
    assert.ok(kernelMatches("_Z9vectorAddPKfS0_Pfi", "_Z9vectorAddPKfS0_Pfi"));
    assert.ok(kernelMatches("vec*", "_Z9vectorAddPKfS0_Pfi"));
    assert.ok(kernelMatches("ns::*", "_ZN2ns6kernelEPf"));
    assert.ok(!kernelMatches("vector", "_Z9vectorAddPKfS0_Pfi"));
    assert.ok(!kernelMatches("scale", "_Z9vectorAddPKfS0_Pfi"));
  });

  it("bpfhook ptx prints a module ptxas accepts; bad arguments are named", () => {
    const file = compileFixture("nv-cuda/gpu_features.bpf.c");
    const cli = path.join(repoRoot, "core", "bin", "bpfhook.js");
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, "ptx", ...args], { encoding: "utf8", timeout: 60_000 });
    for (const arch of ARCHS) {
      const r = run(file, "--arch", `sm_${arch}`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^\\.target sm_${arch}$`, "m"));
      assert.match(r.stdout, /\.visible \.func \(\.param \.b64 ret\) bpf_prog_features\(\.param \.b64 ctx\)/);
      const a = ptxasCheck(r.stdout, arch, `cli-${arch}`);
      assert.equal(a.status, 0, a.output);
    }
    const one = run(file, "-p", "on_exit");
    assert.equal(one.status, 0, one.stderr);
    assert.doesNotMatch(one.stdout, /bpf_prog_features/);
    const missing = run(file, "-p", "nope");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no program 'nope' \(programs: features, on_exit, memory\)/);
    const badArch = run(file, "--arch", "volta");
    assert.equal(badArch.status, 1);
    assert.match(badArch.stderr, /--arch: arch 'volta' is not sm_<number>/);
  });
});

describe("71 nv-cuda plugin", () => {
  before(function () {
    skipWithoutClang(this);
  });

  it("declares types 8 and 9, bpftime's sections and ours, the context layout and the GPU helpers", () => {
    assert.deepEqual(
      plugin.attachTypes.map((t) => [t.id, t.name, [...t.sectionPrefixes], [...(t.sharedPrefixes ?? [])]]),
      [
        [8, "cuda_probe", ["cuda"], ["kprobe"]],
        [9, "cuda_retprobe", ["cudaret"], ["kretprobe"]],
      ],
    );
    assert.equal(CUDA_PROBE_TYPE.contextLayout!.size, CUDA_CTX.size);
    assert.deepEqual(plugin.helpers!.map((h) => h.id), [501, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511]);
    assert.deepEqual(parseCudaSection(CUDA_PROBE_TYPE, "_Z9vectorAddPKfS0_Pfi", "kprobe/_Z9vectorAddPKfS0_Pfi"), {
      kernel: "_Z9vectorAddPKfS0_Pfi",
      match: "exact",
      at: "entry",
    });
    assert.deepEqual(parseCudaSection(CUDA_RETPROBE_TYPE, "vec*", "cudaret/vec*"), { kernel: "vec*", match: "pattern", at: "exit" });
    assert.equal(parseCudaSection(CUDA_PROBE_TYPE, "__memcapture", "kprobe/__memcapture").at, "memory");
  });

  it("the SDK header's struct bh_cuda_ctx has the layout the insertion pass fills", () => {
    const fields: [string, number][] = [
      ["block_idx", CUDA_CTX.blockIdx],
      ["block_dim", CUDA_CTX.blockDim],
      ["thread_idx", CUDA_CTX.threadIdx],
      ["grid_dim", CUDA_CTX.gridDim],
      ["nparams", CUDA_CTX.nparams],
      ["mem_addr", CUDA_CTX.memAddr],
      ["mem_size", CUDA_CTX.memSize],
      ["mem_flags", CUDA_CTX.memFlags],
      ["params", CUDA_CTX.params],
    ];
    const source = [
      "#include <stddef.h>",
      "#include <bpfhook/cuda.h>",
      ...fields.map(([f, off]) => `_Static_assert(offsetof(struct bh_cuda_ctx, ${f}) == ${off}, "${f}");`),
      `_Static_assert(sizeof(struct bh_cuda_ctx) == ${CUDA_CTX.size} && BH_CUDA_CTX_SIZE == ${CUDA_CTX.size}, "size");`,
      `_Static_assert(sizeof(((struct bh_cuda_ctx *)0)->params) / 8 == ${CUDA_CTX.maxParams}, "params");`,
    ].join("\n");
    const r = spawnSync(process.env["CLANG"] ?? "clang", ["-fsyntax-only", "-x", "c", "-I", path.join(repoRoot, "sdk", "include"), "-"], {
      input: source,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
  });

  it("kprobe/ and kretprobe/ coexist with a kernel-kprobe plugin: node has no CUDA kernel, so they are the other plugin's", async () => {
    const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-nv-cuda"], resolveFrom: repoRoot });
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
      for (const section of ["kprobe/_Z9vectorAddPKfS0_Pfi", "kretprobe/_Z9vectorAddPKfS0_Pfi", "kprobe/__memcapture", "kprobe/do_sys_openat2"]) {
        assert.equal(rt.registry.matchSection(section)?.plugin.name, "kernel-kprobe", section);
      }
      assert.equal(rt.registry.matchSection("cuda/vectorAdd")?.type.id, 8, "cuda/ stays nv-cuda's alone");
      assert.equal(rt.registry.matchSection("cudaret/vectorAdd")?.type.id, 9);
      // A plugin sharing a prefix must say which sections it takes.
      assert.throws(
        () =>
          rt.use(
            definePlugin({
              name: "greedy",
              abiVersion: PLUGIN_ABI_VERSION,
              attachTypes: [{ id: 4102, name: "greedy", sectionPrefixes: ["greedy"], sharedPrefixes: ["kprobe"] }],
              privateDataSchema: z.object({}),
              nativeLibrary: "/nonexistent/libgreedy.so",
              parseSection: () => ({}),
              encode: () => new Uint8Array(0),
            }),
          ),
        /\[greedy\] attach type 'greedy' shares prefixes \(kprobe\) but the plugin has no claimsSection/,
      );
    } finally {
      rt.close();
    }
  });

  it("attaching in a process without CUDA kernels (node itself) fails naming the executable, and never pretends", async () => {
    const rt = await Runtime.create({ plugins: ["@bpfhook/plugin-nv-cuda"], resolveFrom: repoRoot });
    try {
      // kprobe/ is shared: with no plugin owning it, nv-cuda takes it (and its attach refuses what is not a kernel of the target).
      assert.equal(rt.registry.matchSection("kprobe/_Z9vectorAddPKfS0_Pfi")?.type.id, 8);
      assert.equal(rt.registry.matchSection("cudaret/vectorAdd")?.type.id, 9);
      const obj = rt.load(compileFixture("nv-cuda/plain_probe.bpf.c"));
      await assert.rejects(obj.program("count_threads").attach(), /\[nv-cuda\] .*prog 'count_threads' on kernel 'vectorAdd': \S+ has no PTX in its fat binaries/);
      // Programs calling GPU helpers load: the plugin's native piece, opened for them, registers 501-511.
      const gpu = rt.load(compileFixture("nv-cuda/cuda_probe.bpf.c"));
      assert.ok(gpu.program("probe__cuda").helperIds.includes(505));
      await assert.rejects(gpu.program("probe__cuda").attach(), /\[nv-cuda\] .*has no PTX in its fat binaries/);
    } finally {
      rt.close();
    }
  });
});

describe("71 nv-cuda: insertion into hand-written PTX (forms nvcc does not emit)", () => {
  const PROBE = ".func (.param .b64 r) probe_exit(.param .b64 c)\n{\n\tst.param.b64 [r], 0;\n\tret;\n}\n";
  const exitProbe = { symbol: "probe_exit", kind: "exit" as const, kernel: () => true };
  const header = ".version 7.8\n.target sm_90\n.address_size 64\n";
  const ODD = `//
// hand-written /* with comments */
//
${header}
.visible .entry odd(
	.param .u64 arg
)
{
	.reg .pred 	q;
	.reg .b32 	%r<4>;
	/* a block comment
	   ret; in it is no return */
	mov.u32 	%r1, %tid.x;
	setp.eq.u32 	q, %r1, 0;
	@q ret;
	setp.eq.u32 	q, %r1, 1;
	@!q bra 	$L_two;
	add.s32 	%r2, %r1, 1; ret; // two statements on one line
$L_two:
	setp.eq.u32 	q, %r1, 2;
	@q bra 	exit_label;
	{ ret; }
exit_label:
	ret; /* a comment after it
	        that runs on */
}

.visible .entry noparams
{
	ret;
}
`;
  const calls = (ptx: string) => ptx.split("call (bhr), probe_exit, (bhc);").length - 1;
  const ptxasHere = () => spawnSync(process.env["PTXAS"] ?? "ptxas", ["--version"]).status === 0;

  it("exit probes before each ret: predicates named without %, several statements on a line, braces, comments around it; entries without parameters", () => {
    assert.deepEqual(
      parsePtxModule(ODD).entries.map((e) => [e.name, e.params.length]),
      [
        ["odd", 1],
        ["noparams", 0],
      ],
    );
    const out = instrumentModule(ODD, { probes: [exitProbe], functions: PROBE });
    assert.equal(out.kernels.get("odd")?.exit, 1);
    assert.ok(out.kernels.has("noparams"), "the entry without a parameter list is instrumented");
    const odd = out.ptx.slice(0, out.ptx.indexOf(".entry noparams"));
    // 4 returns in odd (the one in the block comment is not one), 1 in noparams.
    assert.equal(calls(odd), 4, odd);
    assert.equal(calls(out.ptx), 5);
    assert.match(odd, /@!q bra \$__bh_skip0;\n(?:.*\n){6}\tret;\n\$__bh_skip0:/, "the predicated ret: probes skipped when it does not return");
    assert.match(odd, /\/\* a comment after it\n\s+that runs on \*\//, "the comment after the last ret stays whole");
    assert.match(odd, /\/\* a block comment\n\s+ret; in it is no return \*\//);
    if (ptxasHere()) {
      for (const [ptx, name] of [
        [ODD, "odd-original"],
        [out.ptx, "odd-instrumented"],
      ] as const) {
        const r = ptxasCheck(ptx, 90, name);
        assert.equal(r.status, 0, `${name}: ${r.output}`);
      }
    } else {
      console.log("      (ptxas not found: the output is checked as text only)");
    }
  });

  it("a ret it cannot place probes around is refused, naming the kernel and line, not skipped", () => {
    const odd = `${header}.visible .entry split_ret()\n{\n\tret\n\t;\n}\n`;
    assert.throws(
      () => instrumentModule(odd, { probes: [exitProbe], functions: PROBE }),
      (e: Error & { code?: string }) => e.code === "PTX_INSERT" && /\.entry split_ret: line 6: cannot place exit probes around 'ret'/.test(e.message),
    );
    // Labels and branch targets named like the instructions are not returns.
    const labels = `${header}.visible .entry labels()\n{\n\tbra exit_l;\nexit_l:\n\tret;\n}\n`;
    assert.equal(calls(instrumentModule(labels, { probes: [exitProbe], functions: PROBE }).ptx), 1);
  });

  it("a global access whose size the pass cannot tell is reported, not silently left without memory probes", () => {
    const memProbe = { symbol: "probe_exit", kind: "memory" as const, kernel: () => true };
    const mem = `${header}.visible .entry mem(\n\t.param .u64 p\n)\n{\n\t.reg .b64 %rd<3>;\n\t.reg .b32 %r<3>;\n\tld.param.u64 %rd1, [p];\n\tld.global.u32 %r1, [%rd1];\n\tld.global.e4m3x2 %r2, [%rd1+4];\n\tret;\n}\n`;
    const out = instrumentModule(mem, { probes: [memProbe], functions: PROBE });
    const k = out.kernels.get("mem")!;
    assert.equal(k.memoryAccesses, 1, "the u32 load is captured");
    assert.deepEqual(k.memorySkipped, [".entry mem: line 12: ld.global.e4m3x2 %r2, [%rd1+4];"]);
  });
});
