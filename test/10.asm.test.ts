import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  assemble,
  assembleBytes,
  BpfhookError,
  decodeInsns,
  disassemble,
  disassembleLines,
  encodeInsns,
  formatRaw,
  parseDataFile,
  parseRaw,
} from "@bpfhook/core";
import { conformanceDir } from "./helpers/conformance-dir.js";

/** Bytes as the spaced hex the table uses. */
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString("hex").replace(/(..)(?!$)/g, "$1 ");

// One instruction per row: source, expected bytes (opcode, dst|src<<4, off
// LE16, imm LE32; lddw has two slots), and the disassembly where it differs
// from the source (decimal small immediates, aliases, explicit +0 offsets).
const TABLE: [source: string, bytes: string, disasm?: string][] = [
  ["mov %r0, 1", "b7 00 00 00 01 00 00 00"], // ALU64|MOV|K
  ["mov32 %r1, %r2", "bc 21 00 00 00 00 00 00"], // ALU|MOV|X, src in high nibble
  ["add32 %r1, %r2", "0c 21 00 00 00 00 00 00"], // ALU|ADD|X
  ["add %r0, -3", "07 00 00 00 fd ff ff ff"], // negative imm, two's complement
  ["sub %r3, 0x10", "17 03 00 00 10 00 00 00", "sub %r3, 16"], // hex imm
  ["mul32 %r4, 7", "24 04 00 00 07 00 00 00"], // ALU|MUL|K
  ["div %r0, %r1", "3f 10 00 00 00 00 00 00"], // ALU64|DIV|X
  ["sdiv32 %r0, -2", "34 00 01 00 fe ff ff ff"], // signed divide: off = 1
  ["smod %r2, %r3", "9f 32 01 00 00 00 00 00"], // signed modulo: off = 1
  ["mod32 %r1, 3", "94 01 00 00 03 00 00 00"], // ALU|MOD|K
  ["or %r0, 0xa0", "47 00 00 00 a0 00 00 00", "or %r0, 160"], // ALU64|OR|K
  ["and %r0, 0xffffff", "57 00 00 00 ff ff ff 00"], // large imm prints in hex
  ["lsh %r0, 32", "67 00 00 00 20 00 00 00"], // ALU64|LSH|K
  ["rsh32 %r1, %r2", "7c 21 00 00 00 00 00 00"], // ALU|RSH|X
  ["arsh %r1, 4", "c7 01 00 00 04 00 00 00"], // ALU64|ARSH|K
  ["xor32 %r5, %r5", "ac 55 00 00 00 00 00 00"], // ALU|XOR|X
  ["neg %r0", "87 00 00 00 00 00 00 00"], // ALU64|NEG
  ["neg32 %r2", "84 02 00 00 00 00 00 00"], // ALU|NEG
  ["mov32 %r1, 0x87654321", "b4 01 00 00 21 43 65 87"], // unsigned spelling of a negative imm
  ["movsx832 %r2, %r1", "bc 12 08 00 00 00 00 00"], // sign-extending move: off = 8
  ["movsx1664 %r8, %r7", "bf 78 10 00 00 00 00 00"], // 64-bit, from 16 bits
  ["movsx3264 %r0, %r9", "bf 90 20 00 00 00 00 00"], // 64-bit, from 32 bits
  ["le16 %r0", "d4 00 00 00 10 00 00 00"], // ALU|END|K (to little-endian)
  ["be32 %r1", "dc 01 00 00 20 00 00 00"], // ALU|END|X (to big-endian)
  ["bswap64 %r2", "d7 02 00 00 40 00 00 00"], // ALU64|END|K
  ["swap16 %r0", "d7 00 00 00 10 00 00 00", "bswap16 %r0"], // the suite's alias
  ["lddw %r0, 0x1122334455667788", "18 00 00 00 88 77 66 55 00 00 00 00 44 33 22 11"], // two slots
  ["lddw %r1, map_fd 3", "18 11 00 00 03 00 00 00 00 00 00 00 00 00 00 00"], // pseudo form src 1
  ["lddw %r2, map_value 4, 16", "18 22 00 00 04 00 00 00 00 00 00 00 10 00 00 00"], // src 2, offset in slot 2
  ["ldxw %r0, [%r1+4]", "61 10 04 00 00 00 00 00"], // LDX|MEM|W
  ["ldxdw %r0, [%r10-8]", "79 a0 f8 ff 00 00 00 00"], // negative offset
  ["ldxh %r3, [%r1+12]", "69 13 0c 00 00 00 00 00"], // LDX|MEM|H
  ["ldxb %r0, [%r1]", "71 10 00 00 00 00 00 00", "ldxb %r0, [%r1+0]"], // offset may be left out
  ["ldxsb %r0, [%r1+2]", "91 10 02 00 00 00 00 00"], // LDX|MEMSX|B
  ["ldxsh %r0, [%r10-2]", "89 a0 fe ff 00 00 00 00"], // LDX|MEMSX|H
  ["ldxsw %r0, [%r10-4]", "81 a0 fc ff 00 00 00 00"], // LDX|MEMSX|W
  ["stb [%r10-1], 0xff", "72 0a ff ff ff 00 00 00", "stb [%r10-1], 255"], // ST|MEM|B
  ["sth [%r1+2], 0x2211", "6a 01 02 00 11 22 00 00", "sth [%r1+2], 8721"], // ST|MEM|H
  ["stw [%r10-4], 1", "62 0a fc ff 01 00 00 00"], // ST|MEM|W
  ["stdw [%r10-8], 0x11223344", "7a 0a f8 ff 44 33 22 11"], // ST|MEM|DW
  ["stxdw [%r10-8], %r1", "7b 1a f8 ff 00 00 00 00"], // STX|MEM|DW: base in dst
  ["stxb [%r1+0], %r2", "73 21 00 00 00 00 00 00"], // STX|MEM|B
  ["lock add [%r1+0], %r2", "db 21 00 00 00 00 00 00"], // STX|ATOMIC|DW, imm ADD
  ["lock add32 [%r10-4], %r1", "c3 1a fc ff 00 00 00 00"], // STX|ATOMIC|W
  ["lock fetch add [%r10-8], %r1", "db 1a f8 ff 01 00 00 00"], // ADD|FETCH
  ["lock fetch or32 [%r10-4], %r3", "c3 3a fc ff 41 00 00 00"], // OR|FETCH
  ["lock and [%r10-8], %r1", "db 1a f8 ff 50 00 00 00"], // AND
  ["lock fetch xor [%r10-8], %r3", "db 3a f8 ff a1 00 00 00"], // XOR|FETCH
  ["lock xchg [%r10-8], %r1", "db 1a f8 ff e1 00 00 00"], // XCHG (always fetches)
  ["lock cmpxchg32 [%r10-8], %r1", "c3 1a f8 ff f1 00 00 00"], // CMPXCHG (compares with r0)
  ["ja +2", "05 00 02 00 00 00 00 00"], // JMP|JA, offset in off
  ["ja -1", "05 00 ff ff 00 00 00 00"], // backward
  ["ja32 +3", "06 00 00 00 03 00 00 00"], // JMP32|JA: offset in imm (gotol)
  ["jeq %r1, 5, +1", "15 01 01 00 05 00 00 00"], // JMP|JEQ|K
  ["jne32 %r0, %r1, +2", "5e 10 02 00 00 00 00 00"], // JMP32|JNE|X
  ["jsgt %r1, -1, +4", "65 01 04 00 ff ff ff ff"], // signed compare, negative imm
  ["jset %r1, 0x80000000, +1", "45 01 01 00 00 00 00 80"], // JMP|JSET|K
  ["jlt %r2, %r3, -3", "ad 32 fd ff 00 00 00 00"], // JMP|JLT|X
  ["jsle32 %r1, 7, +0", "d6 01 00 00 07 00 00 00"], // JMP32|JSLE|K
  ["call 5", "85 00 00 00 05 00 00 00"], // helper call: id in imm
  ["call local +3", "85 10 00 00 03 00 00 00"], // bpf-to-bpf: src 1, pc-relative imm
  ["call %r2", "8d 02 00 00 00 00 00 00"], // callx: register in dst
  ["exit", "95 00 00 00 00 00 00 00"], // JMP|EXIT
  [".raw 0x00000000000000ff", "ff 00 00 00 00 00 00 00"], // any slot, as a -- raw word
];

describe("10 asm", () => {
  describe("encodings", () => {
    for (const [source, bytes] of TABLE) {
      it(`${source} -> ${bytes}`, () => {
        assert.equal(hexOf(assembleBytes(source)), bytes);
      });
    }
  });

  describe("disassembly", () => {
    for (const [source, bytes, disasm] of TABLE) {
      it(`${bytes} -> ${disasm ?? source}`, () => {
        assert.equal(disassemble(Buffer.from(bytes.replace(/ /g, ""), "hex")), disasm ?? source);
      });
    }
  });

  describe("labels", () => {
    it("resolves forward and backward labels to slot offsets, counting lddw as two", () => {
      const insns = assemble(["top:", "lddw %r0, 1", "jeq %r0, 1, out", "ja top", "out: exit"].join("\n"));
      assert.equal(insns[2]!.off, 1); // jeq at 2 -> out at 4
      assert.equal(insns[3]!.off, -4); // ja at 3 -> top at 0
    });

    it("puts call local targets in imm", () => {
      const insns = assemble("call local f\nexit\nf:\nmov %r0, 1\nexit");
      assert.equal(insns[0]!.imm, 1);
      assert.equal(insns[0]!.src, 1);
    });

    it("lets `exit` name the first exit instruction unless a label takes the name", () => {
      assert.equal(assemble("jne %r0, 0, exit\nmov %r0, 1\nexit\nexit")[0]!.off, 1);
      assert.equal(assemble("jne %r0, 0, exit\nexit\nexit:\nexit")[0]!.off, 1);
    });

    it("skips comments and blank lines and accepts a statement after a label", () => {
      const src = "# header\n\n  mov %r0, 1 # one\nend: exit\n";
      assert.equal(hexOf(assembleBytes(src)), hexOf(assembleBytes("mov %r0, 1\nexit")));
    });

    it("prints labels on request and reads them back", () => {
      const code = assembleBytes("mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 10, loop\ncall local f\nexit\nf:\nexit");
      const text = disassemble(code, { labels: true });
      assert.match(text, /^L1:$/m);
      assert.match(text, /^jlt %r0, 10, L1$/m);
      assert.match(text, /^call local fn5$/m);
      assert.ok(assembleBytes(text).equals(code));
    });
  });

  describe("round trip", () => {
    it("disassemble -> assemble is exact for random bytes (invalid slots become .raw)", () => {
      for (let n = 0; n < 500; n++) {
        const code = randomBytes(8 * (1 + (n % 6)));
        for (const labels of [false, true]) {
          assert.ok(assembleBytes(disassemble(code, { labels })).equals(code), disassemble(code));
        }
      }
    });

    it("is exact for random instructions of every valid opcode", () => {
      const opcodes = [...new Set(TABLE.map(([, b]) => parseInt(b.slice(0, 2), 16)))];
      for (let n = 0; n < 2000; n++) {
        const words = randomBytes(8);
        words[0] = opcodes[n % opcodes.length]!;
        const code = Buffer.concat([words, assembleBytes("exit")]);
        const back = assembleBytes(disassemble(code));
        assert.ok(back.equals(code), disassemble(code));
      }
    });

    it("prints every valid instruction without .raw and reads the suite's programs back", function () {
      const dir = conformanceDir();
      if (!dir) {
        console.log("    (skipped: bpf_conformance directory not found)");
        this.skip();
      }
      for (const f of readdirSync(dir).filter((f) => f.endsWith(".data"))) {
        const asm = parseDataFile(readFileSync(path.join(dir, f), "utf8"), f).sections.get("asm");
        if (!asm) continue;
        const code = assembleBytes(asm.text, { file: f, firstLine: asm.firstLine });
        const lines = disassembleLines(code);
        assert.ok(!lines.some((l) => l.text.startsWith(".raw")), `${f}: ${disassemble(code)}`);
        for (const labels of [false, true]) assert.ok(assembleBytes(disassemble(code, { labels })).equals(code), f);
      }
    });

    it("encode/decode are inverses", () => {
      const code = assembleBytes("lddw %r1, 0x8000000000000001\nstxdw [%r10-8], %r1\nexit");
      assert.ok(encodeInsns(decodeInsns(code)).equals(code));
    });
  });

  describe("-- raw", () => {
    it("reads u64 words as little-endian slots (lddw.data)", () => {
      const raw = parseRaw("0x5566778800000018\n0x1122334400000000\n# exit\n0x0000000000000095\n");
      assert.ok(raw.equals(assembleBytes("lddw %r0, 0x1122334455667788\nexit")));
      assert.equal(formatRaw(raw), "0x5566778800000018\n0x1122334400000000\n0x0000000000000095");
    });

    it("names the bad line", () => {
      assert.throws(
        () => parseRaw("0x95\n0xnothex", { firstLine: 10 }),
        (e: unknown) => e instanceof BpfhookError && e.code === "ASM_SYNTAX" && /line 11/.test(e.message),
      );
    });
  });

  describe("syntax errors", () => {
    const cases: [source: string, line: number, why: RegExp][] = [
      ["mov %r0, 1\nfoo %r1\nexit", 2, /unknown mnemonic 'foo'/],
      ["mov %r16, 1", 1, /register/],
      ["exit\n\nmov %r0, 0x100000000", 3, /out of range/],
      ["ldxw %r0, [%r1+40000]", 1, /offset 40000 out of range/],
      ["ldxw %r0, %r1", 1, /memory reference/],
      ["ja nowhere\nexit", 1, /undefined label 'nowhere'/],
      ["a:\nexit\na:\nexit", 3, /duplicate label 'a'/],
      ["exit %r0", 1, /'exit' takes 0 operand/],
      ["add %r0", 1, /'add' takes 2 operand/],
      ["lock nand [%r1+0], %r2", 1, /lock \[fetch\]/],
      ["call local", 1, /'call local' needs a label/],
      ["call 1, 2", 1, /'call' takes one operand/],
      ["lddw %r0, map_bogus 1", 1, /unknown lddw form/],
      ["jeq %r1, 1, +40000", 1, /jump offset/],
    ];
    for (const [source, line, why] of cases) {
      it(`line ${line} of ${JSON.stringify(source)}: ${why.source}`, () => {
        assert.throws(
          () => assemble(source),
          (e: unknown) => {
            assert.ok(e instanceof BpfhookError);
            assert.equal(e.code, "ASM_SYNTAX");
            assert.equal(e.detail.line, line);
            assert.match(e.message, new RegExp(`^line ${line}: `));
            assert.match(e.message, why);
            // The offending text is quoted at the end.
            assert.ok(e.message.endsWith(`'${source.split("\n")[line - 1]!.trim()}'`), e.message);
            return true;
          },
        );
      });
    }

    it("reports file lines when given the section's position", () => {
      assert.throws(
        () => assemble("exit\nbad", { file: "x.data", firstLine: 4 }),
        /^BpfhookError: x\.data:5: unknown mnemonic 'bad'/,
      );
    });
  });
});
