/**
 * The SDK's ELF layer (sdk/src/elf), which core's loader and the symbol
 * service both read through: bounds-checked reads that end in an
 * ElfFormatError, the same records from a buffer and from a file read at
 * offsets, and the file reader's refusal to allocate what a lying header
 * asks for. The loader's and the symbol service's own wording of these
 * errors is tested in 33 and 40.
 */
import { strict as assert } from "node:assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ByteReader,
  ElfFormatError,
  ELFCLASS64,
  ELFDATA2LSB,
  EM_X86_64,
  FileSource,
  PT_LOAD,
  SHT_DYNSYM,
  SHT_REL,
  SHT_RELA,
  STT_FUNC,
  StringTable,
  SymbolTable,
  hasElfMagic,
  programCount,
  readElfHeader,
  readElfImage,
  readProgramHeaders,
  readRelocationEntry,
  readSectionHeaders,
  sectionCounts,
} from "@bpfhook/sdk";
import type { ElfHeader, SymbolError } from "@bpfhook/sdk";

const LIBC = fs.realpathSync("/lib/x86_64-linux-gnu/libc.so.6");

/** Runs fn, expecting an ElfFormatError; returns it. */
function elfError(fn: () => unknown): ElfFormatError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ElfFormatError, `expected an ElfFormatError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected an ElfFormatError");
}

function withSource<T>(file: string, use: (source: FileSource) => T): T {
  const source = FileSource.open(file);
  try {
    return use(source);
  } finally {
    source.close();
  }
}

describe("34 ELF layer (sdk/src/elf)", () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "bpfhook-elf-layer-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe("ByteReader", () => {
    const bytes = Uint8Array.from([1, 2, 3, 4, 0x61, 0x62, 0, 0x63, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

    it("reads little-endian fields and names what falls outside", () => {
      const r = new ByteReader(bytes);
      assert.equal(r.u32(0), 0x04030201);
      assert.equal(r.cstring(4), "ab");
      const err = elfError(() => r.u64big(12, "st_value"));
      assert.equal(err.code, "ELF_INVALID");
      assert.equal(err.message, "st_value (bytes 12..20 of 16)");
      assert.deepEqual(err.detail, { what: "st_value", offset: 12, length: 8 });
      assert.equal(elfError(() => r.cstring(7, "name")).message, "name (no terminating NUL)");
      assert.equal(elfError(() => r.u64(8, "sh_size")).message, "sh_size (value 18446744073709551615 too large)");
    });

    it("hands problems to the caller's handler, through slices too", () => {
      const seen: string[] = [];
      const r = new ByteReader(bytes, (what) => {
        seen.push(what);
        throw new Error(`mine: ${what}`);
      });
      assert.throws(() => r.slice(4, 4, "part").u32(2, "field"), /^Error: mine: field \(bytes 2\.\.6 of 4\)$/);
      assert.throws(() => r.read(10, 7, "region"), /mine: region \(bytes 10\.\.17 of 16\)/);
      assert.equal(seen.length, 2);
    });
  });

  describe("StringTable", () => {
    const table = new StringTable(Uint8Array.from([0, 0x66, 0x6f, 0x6f, 0, 0x62, 0x61, 0x72]));

    it("name() refuses what nameOrEmpty() takes as found", () => {
      assert.equal(table.name(1), "foo");
      assert.equal(table.nameOrEmpty(1), "foo");
      assert.equal(elfError(() => table.name(5, "symbol name")).message, "symbol name (no terminating NUL)");
      assert.equal(table.nameOrEmpty(5), "bar");
      assert.match(elfError(() => table.name(9, "section name")).message, /^section name \(bytes 9\.\.9 of 8\)$/);
      assert.equal(table.nameOrEmpty(9), "");
    });
  });

  describe("headers and tables, from a buffer and from a file", () => {
    it("reads the same records both ways", () => {
      const whole = fs.readFileSync(LIBC);
      const inMemory = new ByteReader(whole);
      withSource(LIBC, (file) => {
        const header = readElfHeader(file);
        assert.deepEqual(header, readElfHeader(inMemory));
        assert.ok(hasElfMagic(header.ident));
        assert.deepEqual([header.class, header.data, header.machine], [ELFCLASS64, ELFDATA2LSB, EM_X86_64]);
        const { count, namesIndex } = sectionCounts(inMemory, header, Number(header.shoff));
        assert.deepEqual([count, namesIndex], [header.shnum, header.shstrndx]);
        const sections = readSectionHeaders(file, Number(header.shoff), count, "section headers");
        assert.deepEqual(sections, readSectionHeaders(inMemory, Number(header.shoff), count, "section headers"));
        const phnum = programCount(inMemory, header, Number(header.shoff));
        const programs = readProgramHeaders(file, Number(header.phoff), phnum, "program headers");
        assert.deepEqual(programs, readProgramHeaders(inMemory, Number(header.phoff), phnum, "program headers"));
        assert.ok(programs.some((p) => p.type === PT_LOAD));

        // .dynsym through SymbolTable and its string table: malloc is a defined function.
        const dynsym = sections.find((s) => s.type === SHT_DYNSYM)!;
        const strtab = sections[dynsym.link]!;
        const table = new SymbolTable(new ByteReader(file.read(Number(dynsym.offset), Number(dynsym.size), ".dynsym")));
        const names = new StringTable(file.read(Number(strtab.offset), Number(strtab.size), ".dynstr"));
        let malloc;
        for (let i = 1; i < table.count && malloc === undefined; i++) {
          if (names.nameOrEmpty(table.nameOffset(i)) === "malloc") malloc = table.entry(i);
        }
        assert.ok(malloc, "malloc in .dynsym");
        assert.equal(malloc.type, STT_FUNC);
        assert.ok(malloc.value > 0n && malloc.size > 0n);
      });
    });

    it("takes counts that overflow 16 bits from section header 0", () => {
      const sh0 = new Uint8Array(64);
      const view = new DataView(sh0.buffer);
      view.setBigUint64(32, 70000n, true); // sh_size: section count
      view.setUint32(40, 69999, true); // sh_link: section-name table index
      view.setUint32(44, 65536, true); // sh_info: program header count
      const header = { shnum: 0, shstrndx: 0xffff, phnum: 0xffff } as ElfHeader;
      assert.deepEqual(sectionCounts(new ByteReader(sh0), header, 0), { count: 70000, namesIndex: 69999 });
      assert.equal(programCount(new ByteReader(sh0), header, 0), 65536);
    });

    it("decodes REL and RELA entries", () => {
      const bytes = new Uint8Array(24);
      const view = new DataView(bytes.buffer);
      view.setBigUint64(0, 0x18n, true);
      view.setBigUint64(8, (7n << 32n) | 1n, true);
      view.setBigInt64(16, -8n, true);
      const r = new ByteReader(bytes);
      assert.deepEqual(readRelocationEntry(r, 0, SHT_REL), { offset: 0x18n, symbol: 7, type: 1 });
      assert.deepEqual(readRelocationEntry(r, 0, SHT_RELA), { offset: 0x18n, symbol: 7, type: 1, addend: -8n });
    });
  });

  describe("FileSource", () => {
    it("reports a short file as ELF_INVALID, naming what was read, and reads nothing at any offset", () => {
      const file = path.join(dir, "short.bin");
      fs.writeFileSync(file, Buffer.alloc(100));
      withSource(file, (source) => {
        assert.equal(source.read(90, 10, "tail").length, 10);
        const err = elfError(() => source.read(90, 20, "section headers"));
        assert.equal(err.code, "ELF_INVALID");
        assert.equal(err.message, "truncated (section headers at offset 90, 20 bytes)");
        assert.deepEqual(err.detail, { what: "section headers", offset: 90, length: 20 });
        assert.equal(source.read(2 ** 60, 0, "empty").length, 0);
      });
    });

    it("refuses what a lying header asks for before allocating it", () => {
      withSource(LIBC, (source) => {
        assert.match(elfError(() => source.read(0, 2 ** 45, "section headers")).message, /^truncated \(section headers at offset 0, /);
        assert.match(elfError(() => source.read(2 ** 62, 64, "section header 0")).message, /^truncated \(section header 0 at offset /);
      });
    });

    it("lets readElfImage name the file in a SymbolError, not a RangeError from readSync", () => {
      const file = path.join(dir, "lying.so");
      const bytes = fs.readFileSync(LIBC);
      bytes.writeBigUInt64LE(1n << 62n, 40); // e_shoff far past the end (and past 2^53)
      fs.writeFileSync(file, bytes);
      let caught: unknown;
      try {
        readElfImage(file);
      } catch (err) {
        caught = err;
      }
      const err = caught as SymbolError;
      assert.ok(err instanceof Error && !(err instanceof ElfFormatError), String(err));
      assert.equal(err.code, "ELF_INVALID");
      assert.match(err.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: truncated \\(section headers at offset \\d+, \\d+ bytes\\)$`));
      assert.equal(err.detail.file, file);
    });
  });
});
