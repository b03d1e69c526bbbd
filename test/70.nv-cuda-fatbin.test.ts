import { strict as assert } from "node:assert";
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
