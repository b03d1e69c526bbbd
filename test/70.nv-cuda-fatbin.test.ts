import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  decompressNvLz,
  entryData,
  entryPtx,
  FatbinError,
  fatbinSectionBytes,
  findFatbins,
  parseFatbin,
  type ElfFatbins,
  type FatbinEntry,
} from "@bpfhook/plugin-nv-cuda";
import { normalizePtx, nvccBuild, nvccPtx, skipWithoutCuda } from "./support/cuda.js";
import { testTempDir } from "./support/tmp.js";

// One PTX for sm_80 (with its cubin) and one for sm_90, as a multi-arch build embeds them.
const GENCODE = ["-gencode", "arch=compute_80,code=[sm_80,compute_80]", "-gencode", "arch=compute_90,code=compute_90"];

const builds: Record<string, readonly string[]> = {
  "default (static cudart)": [...GENCODE],
  "--compress-mode=default": [...GENCODE, "--compress-mode=default"],
  "--compress-mode=speed": [...GENCODE, "--compress-mode=speed"],
  "--compress-mode=none": [...GENCODE, "--compress-mode=none"],
  "-cudart shared": [...GENCODE, "-cudart", "shared"],
  "shared object": [...GENCODE, "-Xcompiler", "-fPIC", "-shared", "-cudart", "shared"],
};
const expectedCompression: Record<string, string> = {
  "--compress-mode=speed": "lz",
  "--compress-mode=none": "none",
};

function ptxEntries(f: ElfFatbins): FatbinEntry[] {
  return f.section!.entries.filter((e) => e.kind === "ptx");
}

function expectFatbinError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FatbinError, `a FatbinError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

describe("70 nv-cuda fat binaries", function () {
  this.timeout(300_000);
  const files = new Map<string, string>();
  const reference = new Map<number, string>();
  before(function () {
    skipWithoutCuda(this);
    for (const arch of [80, 90]) reference.set(arch, normalizePtx(nvccPtx("kernels.cu", arch)));
    Object.entries(builds).forEach(([label, args], i) => {
      files.set(label, nvccBuild("kernels.cu", label === "shared object" ? `libkernels${i}.so` : `kernels${i}`, args));
    });
  });

  for (const label of Object.keys(builds)) {
    it(`finds and decompresses the PTX of a ${label} build, equal to nvcc -ptx`, () => {
      const f = findFatbins(files.get(label)!);
      assert.ok(f.section, ".nv_fatbin found");
      const ptx = ptxEntries(f);
      assert.deepEqual(ptx.map((e) => e.arch).sort(), [80, 90]);
      for (const e of ptx) {
        assert.equal(e.compression, expectedCompression[label] ?? "zstd", `${e.where} compression`);
        assert.equal(e.version.major, 9, "PTX ISA 9.x from nvcc 13");
        const text = entryPtx(e);
        assert.match(text, new RegExp(`^\\.target sm_${e.arch}$`, "m"));
        assert.equal(normalizePtx(text), reference.get(e.arch), `${e.where}: same PTX as nvcc -ptx -arch=sm_${e.arch}`);
      }
      const elf = f.section!.entries.filter((e) => e.kind === "elf");
      assert.ok(elf.some((e) => e.arch === 80), "the sm_80 cubin");
      for (const e of elf) assert.deepEqual([...entryData(e).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${e.where} is an ELF`);
      // The registration wrappers name the same containers.
      assert.ok(f.wrappers.length >= 1);
      const viaWrappers = f.wrappers.flatMap((w) => w.fatbin.entries.filter((e) => e.kind === "ptx").map((e) => normalizePtx(entryPtx(e))));
      assert.deepEqual(viaWrappers.sort(), [...reference.values()].sort());
    });
  }

  it("gives an empty result for an ELF without CUDA code", () => {
    const f = findFatbins(process.execPath);
    assert.equal(f.section, undefined);
    assert.deepEqual(f.wrappers, []);
  });

  describe("refusals name the entry and the field", () => {
    let section: Uint8Array;
    let lzEntry: FatbinEntry;
    let zstdEntry: FatbinEntry;
    before(function () {
      skipWithoutCuda(this);
      const f = findFatbins(files.get("--compress-mode=default")!);
      section = fatbinSectionBytes(files.get("--compress-mode=default")!)!;
      zstdEntry = ptxEntries(f)[0]!;
      lzEntry = ptxEntries(findFatbins(files.get("--compress-mode=speed")!))[0]!;
    });
    const corrupt = (edit: (b: Buffer, v: DataView) => void): Buffer => {
      const b = Buffer.from(section);
      edit(b, new DataView(b.buffer, b.byteOffset, b.byteLength));
      return b;
    };
    const secondContainer = (): number => {
      const v = new DataView(section.buffer, section.byteOffset, section.byteLength);
      return 16 + Number(v.getBigUint64(8, true));
    };

    it("parses the untouched section", () => {
      assert.equal(parseFatbin(section).containers, 2);
    });
    it("magic", () => {
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt32LE(0x12345678, 0))), /container 0: magic is 0x12345678/);
    });
    it("version", () => {
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt16LE(7, 4))), /container 0: version is 7/);
    });
    it("fat size past the end", () => {
      expectFatbinError(() => parseFatbin(corrupt((_b, v) => v.setBigUint64(8, 1n << 40n, true))), /container 0: fat size \d+ runs past the end/);
    });
    it("truncated container and entry headers", () => {
      expectFatbinError(() => parseFatbin(section.subarray(0, 10)), /container 0: header \(16 bytes at 0\) is truncated/);
      expectFatbinError(() => parseFatbin(section.subarray(0, 40)), /container 0: fat size \d+ runs past the end/);
      // A second container cut inside its first entry's header.
      const at = secondContainer();
      expectFatbinError(() => parseFatbin(section.subarray(0, at + 40)), /container 1: fat size \d+ runs past the end/);
    });
    it("entry kind, header size and payload size", () => {
      const entry = 16;
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt16LE(9, entry))), /container 0 entry 0: kind is 9/);
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt32LE(8, entry + 4))), /container 0 entry 0: header size 8 is out of bounds/);
      expectFatbinError(
        () => parseFatbin(corrupt((_b, v) => v.setBigUint64(entry + 8, 1n << 33n, true))),
        /container 0 entry 0: payload size \d+ runs past the container/,
      );
    });
    it("compressed and uncompressed sizes of a PTX entry", () => {
      const at = zstdEntry.offset;
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt32LE(0, at + 16))), new RegExp(`${zstdEntry.where.replace(/.*: /, "")}: compressed size 0 is out of bounds`));
      expectFatbinError(() => parseFatbin(corrupt((b) => b.writeUInt32LE(0xffffff, at + 16))), /compressed size 16777215 is out of bounds/);
      expectFatbinError(() => parseFatbin(corrupt((_b, v) => v.setBigUint64(at + 56, 1n << 40n, true))), /uncompressed size \d+ is out of bounds/);
      expectFatbinError(() => parseFatbin(corrupt((_b, v) => v.setBigUint64(at + 40, v.getBigUint64(at + 40, true) | 0x2000n, true))), /name two compressions/);
    });
    it("corrupt zstd and LZ payloads, and sizes that do not match", () => {
      const badZstd: FatbinEntry = { ...zstdEntry, payload: Buffer.concat([zstdEntry.payload.subarray(0, 20), Buffer.alloc(40, 0xee)]) };
      expectFatbinError(() => entryData(badZstd), /entry \d+: zstd payload is corrupt/);
      const badMagic = Buffer.from(zstdEntry.payload);
      badMagic[0] = 0;
      expectFatbinError(() => entryData({ ...zstdEntry, payload: badMagic }), /zstd payload is corrupt \(magic 0xfd2fb500\)/);
      const shortZstd: FatbinEntry = { ...zstdEntry, uncompressedSize: zstdEntry.uncompressedSize + 5 };
      expectFatbinError(() => entryData(shortZstd), /zstd payload gives \d+ bytes, the header says \d+/);
      const badLz = Buffer.from(lzEntry.payload);
      badLz.writeUInt16LE(0xffff, 1 + (badLz[0]! >> 4)); // first match offset: before the start
      expectFatbinError(() => entryData({ ...lzEntry, payload: badLz }), /LZ stream is corrupt \(match offset 65535/);
      expectFatbinError(() => entryData({ ...lzEntry, payload: lzEntry.payload.subarray(0, 50) }), /LZ stream (is corrupt|gives \d+ bytes)/);
      expectFatbinError(() => entryData({ ...lzEntry, uncompressedSize: 100 }), /LZ stream is corrupt \((literals|match) past the uncompressed size/);
      expectFatbinError(() => entryPtx({ ...lzEntry, kind: "elf" }), /is an ELF \(cubin\) entry, not PTX/);
    });
  });

  it("decodes LZ sequences: literals, overlapping matches, long lengths", () => {
    // "ab" then a match of 10 at offset 2 ("ababababab"), then 20 literal "x" (length 15 + 5), end.
    const stream = Buffer.from([0x26, 0x61, 0x62, 0x02, 0x00, 0xf0, 0x05, ...Buffer.alloc(20, 0x78)]);
    assert.equal(Buffer.from(decompressNvLz(stream, 32, "t")).toString(), `${"ab".repeat(6)}${"x".repeat(20)}`);
    // A match length past 19 continues in the next bytes: 4 + 15 + 255 + 1 = 275.
    const long = Buffer.from([0x1f, 0x41, 0x01, 0x00, 0xff, 0x01]);
    assert.equal(Buffer.from(decompressNvLz(long, 276, "t")).toString(), "A".repeat(276));
    assert.throws(() => decompressNvLz(long, 275, "t"), /match past the uncompressed size/);
  });
});

/** A synthetic entry: kind 1 PTX / 2 ELF; flags 0x2000 LZ, 0x8000 zstd; sizes as the header states them. */
interface SyntheticEntry {
  kind?: number;
  flags?: bigint;
  payload: Uint8Array;
  compressed?: number;
  uncompressed?: number;
}

/** One container as nvcc lays it out (container.ts), holding `entries`. */
function container(entries: readonly SyntheticEntry[]): Buffer {
  const body = Buffer.concat(
    entries.map((e) => {
      const h = Buffer.alloc(64);
      h.writeUInt16LE(e.kind ?? 1, 0);
      h.writeUInt16LE(0x0101, 2);
      h.writeUInt32LE(64, 4);
      h.writeBigUInt64LE(BigInt(e.payload.length), 8);
      h.writeUInt32LE(e.compressed ?? 0, 16);
      h.writeUInt32LE(64, 20);
      h.writeUInt16LE(0, 24);
      h.writeUInt16LE(8, 26);
      h.writeUInt32LE(90, 28);
      h.writeBigUInt64LE(0x11n | (e.flags ?? 0n), 40);
      h.writeBigUInt64LE(BigInt(e.uncompressed ?? 0), 56);
      return Buffer.concat([h, e.payload]);
    }),
  );
  const head = Buffer.alloc(16);
  head.writeUInt32LE(0xba55ed50, 0);
  head.writeUInt16LE(1, 4);
  head.writeUInt16LE(16, 6);
  head.writeBigUInt64LE(BigInt(body.length), 8);
  return Buffer.concat([head, body]);
}

describe("70 nv-cuda fat binaries: adversarial containers (no CUDA needed)", () => {
  it("refuses an entry claiming more output than its compression can give, before allocating it", () => {
    // 16 stored bytes can give at most 16 * 255 bytes of LZ and 16 * 2^16 of zstd.
    const lz = container([{ flags: 0x2000n, payload: Buffer.alloc(16, 0xff), compressed: 16, uncompressed: 100 << 20 }]);
    expectFatbinError(() => parseFatbin(lz), /container 0 entry 0: uncompressed size 104857600 is more than lz can give from compressed size 16 \(at most 4080\)/);
    const zstd = container([{ flags: 0x8000n, payload: Buffer.alloc(16), compressed: 16, uncompressed: 500 << 20 }]);
    expectFatbinError(() => parseFatbin(zstd), /container 0 entry 0: uncompressed size 524288000 is more than zstd can give from compressed size 16 \(at most 1048576\)/);
    // At the bound it parses, and the decoder still checks the stream.
    const ok = container([{ flags: 0x2000n, payload: Buffer.from([0x1f, 0x41, 0x01, 0x00, 0xff, 0x01]), compressed: 6, uncompressed: 276 }]);
    assert.equal(Buffer.from(entryData(parseFatbin(ok).entries[0]!)).toString(), "A".repeat(276));
  });

  it("zero sizes: empty containers and entries, many of them, end", () => {
    const many = Buffer.concat(Array.from({ length: 1000 }, () => container([])));
    const f = parseFatbin(many);
    assert.equal(f.containers, 1000);
    assert.equal(f.entries.length, 0);
    const empty = parseFatbin(container([{ payload: new Uint8Array(0) }]));
    assert.equal(empty.entries.length, 1);
    assert.equal(entryPtx(empty.entries[0]!), "");
    expectFatbinError(() => parseFatbin(container([{ flags: 0x2000n, payload: new Uint8Array(0), compressed: 0, uncompressed: 10 }])), /compressed size 0 is out of bounds/);
    // A stored PTX entry up to its first NUL, and trailing zero padding after the last container.
    const padded = Buffer.concat([container([{ payload: Buffer.from("ret;\0\0\0\0") }]), Buffer.alloc(12)]);
    assert.equal(entryPtx(parseFatbin(padded).entries[0]!), "ret;");
  });

  it("reads each section once however many wrappers point into it (a library of many translation units)", function () {
    if (spawnSync("gcc", ["--version"]).status !== 0) {
      console.log("      skipped: gcc not found");
      this.skip();
    }
    // N empty containers at the start of a 2 MiB .nv_fatbin and N wrappers
    // naming them by link-time address (-no-pie, as nvcc's executables).
    const N = 300;
    const dir = testTempDir("bpfhook-fatbin-");
    const src = path.join(dir, "many.c");
    const heads = Array.from({ length: N }, () => "{0xba55ed50u, 1, 16, 0}").join(",\n");
    const wraps = Array.from({ length: N }, (_, i) => `{0x466243b1u, 1, &fat.h[${i}], 0}`).join(",\n");
    writeFileSync(
      src,
      `#include <stdint.h>
struct hdr { uint32_t magic; uint16_t version, size; uint64_t fat_size; };
struct wrapper { uint32_t magic, version; const void *data; const void *unused; };
__attribute__((section(".nv_fatbin"), used, aligned(8))) const struct { struct hdr h[${N}]; char pad[2 << 20]; } fat = {{${heads}}, {0}};
__attribute__((section(".nvFatBinSegment"), used, aligned(8))) const struct wrapper wrappers[${N}] = {${wraps}};
int main(void) { return 0; }
`,
    );
    const exe = path.join(dir, "many");
    const cc = spawnSync("gcc", ["-O0", "-no-pie", "-o", exe, src], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    const fs = require("node:fs") as typeof import("node:fs");
    const realRead = fs.readSync;
    let bytes = 0;
    fs.readSync = ((...args: Parameters<typeof realRead>) => {
      const n = (realRead as (...a: unknown[]) => number)(...args);
      bytes += n;
      return n;
    }) as typeof realRead;
    let found;
    try {
      found = findFatbins(exe);
    } finally {
      fs.readSync = realRead;
    }
    assert.equal(found.wrappers.length, N);
    assert.ok(found.wrappers.every((w) => w.fatbin.containers === 1 && w.fatbin.entries.length === 0));
    assert.equal(found.section?.containers, N);
    const size = fs.statSync(exe).size;
    assert.ok(bytes <= 2 * size, `read ${bytes} bytes of a ${size}-byte file`);
  });
});
