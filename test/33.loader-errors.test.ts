import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BpfhookError, loadObject } from "@bpfhook/core";
import { clangUnavailable, compileFixture, FIXTURES_DIR, skipWithoutClang } from "./support/clang.js";

/** Asserts that fn throws a BpfhookError with this code whose message passes `message`. */
function throwsLoader(fn: () => unknown, code: string, message: string | RegExp): BpfhookError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof BpfhookError, `expected a BpfhookError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (typeof message === "string") assert.equal(caught.message, message);
  else assert.match(caught.message, message);
  return caught;
}

/** File offset and entry size of the section named `name`, read straight from the ELF headers. */
function sectionOf(elf: Buffer, name: string): { offset: number; size: number } {
  const shoff = Number(elf.readBigUInt64LE(40));
  const shnum = elf.readUInt16LE(60);
  const strtab = shoff + elf.readUInt16LE(62) * 64;
  const strOffset = Number(elf.readBigUInt64LE(strtab + 24));
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * 64;
    const nameAt = strOffset + elf.readUInt32LE(h);
    if (elf.subarray(nameAt, elf.indexOf(0, nameAt)).toString() === name) {
      return { offset: Number(elf.readBigUInt64LE(h + 24)), size: Number(elf.readBigUInt64LE(h + 32)) };
    }
  }
  throw new Error(`no section ${name}`);
}

describe("33 loader: errors", () => {
  let dir: string;
  before(function () {
    skipWithoutClang(this);
    dir = mkdtempSync(join(tmpdir(), "bpfhook-loader-errors-"));
  });
  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** A patched copy of a fixture's object, written to a file so errors name it. */
  function patched(fixture: string, file: string, patch: (elf: Buffer) => Buffer | void): string {
    let elf: Buffer = Buffer.from(readFileSync(compileFixture(fixture)));
    elf = patch(elf) ?? elf;
    const path = join(dir, file);
    writeFileSync(path, elf);
    return path;
  }

  describe("objects that clang builds but bpfhook cannot honour (test/fixtures/errors)", () => {
    // Each fixture's first line says what loading it must throw:
    // "// expect CODE: message after the file name".
    const cases = readdirSync(join(FIXTURES_DIR, "errors")).filter((f) => f.endsWith(".bpf.c"));
    it("has cases", () => assert.ok(cases.length >= 5));
    for (const file of cases) {
      const first = readFileSync(join(FIXTURES_DIR, "errors", file), "utf8").split("\n")[0]!;
      const m = /^\/\/ expect ([A-Z_]+): (.*)$/.exec(first);
      it(`${file}: ${m?.[2] ?? "(no expect line)"}`, () => {
        assert.ok(m, `${file} must start with '// expect CODE: message'`);
        const path = compileFixture(`errors/${file}`);
        const err = throwsLoader(() => loadObject(path), m[1]!, new RegExp(`^${escape(`${path}, ${m[2]!}`)}`));
        assert.equal(err.detail.file, path);
        const section = /section '([^']+)'/.exec(m[2]!)?.[1];
        assert.equal(err.detail.section, section);
        const symbol = /(?:symbol|map) '([^']+)'/.exec(m[2]!)?.[1];
        if (symbol !== undefined) assert.equal(err.detail.symbol, symbol);
      });
    }
  });

  describe("input that is not a usable eBPF object", () => {
    it("names the machine of a non-BPF ELF object", () => {
      const path = patched("malloc_count.bpf.c", "x.o", (elf) => void elf.writeUInt16LE(62, 18));
      const err = throwsLoader(() => loadObject(path), "ELF_UNSUPPORTED", `${path}: not an eBPF ELF object (e_machine 62, expected 247)`);
      assert.equal(err.detail.file, path);
      const bytes = readFileSync(path);
      throwsLoader(() => loadObject(bytes, { name: "x.o" }), "ELF_UNSUPPORTED", "x.o: not an eBPF ELF object (e_machine 62, expected 247)");
      throwsLoader(() => loadObject(bytes), "ELF_UNSUPPORTED", "eBPF object: not an eBPF ELF object (e_machine 62, expected 247)");
    });

    it("refuses a real x86-64 object built by clang", function () {
      if (clangUnavailable() !== undefined) this.skip();
      const source = join(dir, "host.c");
      const path = join(dir, "host.o");
      writeFileSync(source, "int host_function(int x) { return x + 1; }\n");
      execFileSync(process.env["CLANG"] ?? "clang", ["-c", source, "-o", path]);
      const machine = readFileSync(path).readUInt16LE(18);
      throwsLoader(() => loadObject(path), "ELF_UNSUPPORTED", `${path}: not an eBPF ELF object (e_machine ${machine}, expected 247)`);
    });

    it("refuses files that are not ELF", () => {
      const path = join(dir, "notes.txt");
      writeFileSync(path, "just some text, long enough to hold an ELF header if it were one.\n");
      throwsLoader(() => loadObject(path), "ELF_INVALID", `${path}: not an ELF file (bad magic)`);
      throwsLoader(() => loadObject(new Uint8Array(0)), "ELF_INVALID", "eBPF object: not an ELF file (bad magic)");
    });

    it("reports truncated files as ELF_INVALID, never a RangeError", () => {
      const whole = readFileSync(compileFixture("subprogs.bpf.c"));
      throwsLoader(() => loadObject(whole.subarray(0, 3), { name: "t.o" }), "ELF_INVALID", "t.o: not an ELF file (bad magic)");
      throwsLoader(() => loadObject(whole.subarray(0, 40), { name: "t.o" }), "ELF_INVALID", "t.o: truncated ELF header (40 of 64 bytes)");
      // Every shorter prefix fails cleanly (the section headers sit at the end).
      for (const keep of [64, 200, whole.length / 2, whole.length - 64, whole.length - 1]) {
        throwsLoader(() => loadObject(whole.subarray(0, Math.floor(keep)), { name: "t.o" }), "ELF_INVALID", /^t\.o: truncated or corrupt ELF: /);
      }
    });

    it("reports a section whose contents lie past the end of the file", () => {
      const path = patched("subprogs.bpf.c", "lying.o", (elf) => {
        const shoff = Number(elf.readBigUInt64LE(40));
        elf.writeBigUInt64LE(BigInt(elf.length), shoff + 2 * 64 + 24); // section 2's sh_offset
      });
      throwsLoader(() => loadObject(path), "ELF_INVALID", new RegExp(`^${escape(path)}: truncated or corrupt ELF: contents of section 2`));
    });

    it("refuses 32-bit, big-endian and non-relocatable ELF files", () => {
      const elf = readFileSync(compileFixture("subprogs.bpf.c"));
      const variant = (at: number, value: number, size: 1 | 2): Buffer => {
        const copy = Buffer.from(elf);
        if (size === 1) copy.writeUInt8(value, at);
        else copy.writeUInt16LE(value, at);
        return copy;
      };
      throwsLoader(() => loadObject(variant(4, 1, 1), { name: "v.o" }), "ELF_UNSUPPORTED", "v.o: not a 64-bit ELF (EI_CLASS 1)");
      throwsLoader(() => loadObject(variant(5, 2, 1), { name: "v.o" }), "ELF_UNSUPPORTED", /^v\.o: big-endian eBPF objects/);
      throwsLoader(() => loadObject(variant(16, 2, 2), { name: "v.o" }), "ELF_UNSUPPORTED", /^v\.o: not a relocatable object \(e_type 2, expected 1\)/);
    });

    it("names file, section, symbol and offset of an unknown relocation type", () => {
      let relOffset = 0;
      const path = patched("legacy_maps.bpf.c", "reloc.o", (elf) => {
        const rel = sectionOf(elf, ".relsimple/legacy");
        relOffset = Number(elf.readBigUInt64LE(rel.offset));
        elf.writeUInt32LE(42, rel.offset + 8); // low half of r_info: the type
      });
      const err = throwsLoader(
        () => loadObject(path),
        "ELF_UNSUPPORTED",
        `${path}, section 'simple/legacy', offset 0x${relOffset.toString(16)}, symbol 'legacy_counts': relocation type 42 is not supported in code (only R_BPF_64_64 on lddw and R_BPF_64_32 on calls)`,
      );
      assert.deepEqual([err.detail.file, err.detail.section, err.detail.symbol], [path, "simple/legacy", "legacy_counts"]);
    });

    it("reports a relocation whose symbol does not exist", () => {
      const path = patched("legacy_maps.bpf.c", "nosym.o", (elf) => {
        const rel = sectionOf(elf, ".relsimple/legacy");
        elf.writeUInt32LE(9999, rel.offset + 12); // high half of r_info: the symbol
      });
      throwsLoader(() => loadObject(path), "ELF_INVALID", new RegExp(`^${escape(path)}, section '.relsimple/legacy': relocation at 0x[0-9a-f]+ uses symbol 9999`));
    });

    it("reports a relocation on an instruction that is neither lddw nor a call", () => {
      const path = patched("legacy_maps.bpf.c", "misplaced.o", (elf) => {
        const rel = sectionOf(elf, ".relsimple/legacy");
        elf.writeBigUInt64LE(0n, rel.offset); // move it to instruction 0 (not an lddw here)
      });
      throwsLoader(
        () => loadObject(path),
        "ELF_INVALID",
        `${path}, section 'simple/legacy', function 'use_legacy', offset 0x0, symbol 'legacy_counts': relocation type 1 on an instruction that is neither lddw nor a call`,
      );
    });

    it("answers corrupted objects with BpfhookError or a result, never another exception", () => {
      // Seeded, so a failure reproduces; 400 objects with 1-4 bytes changed,
      // half of them in the headers where lengths and offsets live.
      let seed = 0x5eed;
      const random = (n: number): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
        return seed % n;
      };
      for (const fixture of ["subprogs.bpf.c", "globals.bpf.c", "btf_maps.bpf.c", "legacy_maps.bpf.c"]) {
        const original = readFileSync(compileFixture(fixture));
        const shoff = Number(original.readBigUInt64LE(40));
        for (let round = 0; round < 100; round++) {
          const bytes = Buffer.from(original);
          for (let k = 0; k <= random(4); k++) {
            const at = random(2) === 0 ? shoff + random(bytes.length - shoff) : random(bytes.length);
            bytes[at] = random(256);
          }
          try {
            loadObject(bytes, { name: "fuzz.o" });
          } catch (e) {
            if (!(e instanceof BpfhookError)) assert.fail(`${fixture} round ${round}: ${(e as Error).stack}`);
          }
        }
      }
    });

    it("refuses what is not a regular file before reading it (devices, FIFOs, directories)", () => {
      const fifo = join(dir, "fifo");
      execFileSync("mkfifo", [fifo]);
      for (const [path, kind] of [["/dev/zero", "a character device"], [fifo, "a FIFO"], [dir, "a directory"]] as const) {
        // A blocking read of the FIFO or an endless one of /dev/zero would hang here instead.
        const err = throwsLoader(() => loadObject(path), "BAD_ARGUMENT", `${path}: not a regular file (${kind}); give an ELF object file`);
        assert.equal(err.detail.file, path);
      }
    });

    it("reports a missing file as NOT_FOUND", () => {
      const path = join(dir, "missing.bpf.o");
      const err = throwsLoader(() => loadObject(path), "NOT_FOUND", new RegExp(`^${escape(path)}: cannot read: `));
      assert.equal(err.detail.file, path);
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
